import EventLoop
import Foundation
import Proxy
import Sandbox
import Testing

/// What a stop leaves behind.
@Suite struct TeardownTests {
    /// A request body that arrives in pieces leaves the connection idle once answered, so a
    /// graceful stop closes it at once (it used to count as a head under way, and stayed open).
    @Test func aConnectionWhoseBodyCameInPiecesIsIdleAfterTheResponse() throws {
        let h = try Harness()
        let client = try h.client(timeout: 5)
        try client.send("POST /suppliers-api-2024v2/x HTTP/1.1\r\nHost: p\r\nContent-Length: 10\r\n\r\nhello")
        Thread.sleep(forTimeInterval: 0.2)   // the body's first half is read and parsed on its own
        try client.send("world")
        #expect(try client.readResponse().status == 200)
        let stopped = DispatchSemaphore(value: 0)
        h.proxy.shutdown(grace: .seconds(5)) { stopped.signal() }
        #expect(stopped.wait(timeout: .now() + 2) == .success)
        #expect(client.isClosedByPeer())
    }
}
