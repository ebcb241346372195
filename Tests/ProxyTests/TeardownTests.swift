import EventLoop
import Foundation
import Proxy
import Sandbox
import TestSupport
import Testing

/// A stopped proxy and sandbox leave nothing behind: no reference cycle keeps the servers, their
/// listeners, pools, token provider or event loops alive once the last owner lets go.
@Suite struct TeardownTests {
    @Test func stoppedServersAndTheirLoopsAreDeallocated() throws {
        weak var proxy: ProxyServer?
        weak var sandbox: SandboxServer?
        weak var proxyLoop: EventLoop?
        weak var sandboxLoop: EventLoop?
        do {
            let h = try Harness()
            proxy = h.proxy
            sandbox = h.sandbox
            proxyLoop = h.proxy.group.loops[0]
            sandboxLoop = h.sandbox.group.loops[0]
            // Exercise what holds closures and timers: the listener and a client connection, the
            // token fetch (its own pool), an upstream connection left idle in the pool, a
            // streamed response.
            let client = try h.client()
            #expect(try client.request("GET", "/suppliers-api-2024v2/auth/key").status == 200)
            var received = 0
            try client.send("GET /suppliers-api-2024v2/_sandbox/bytes?size=300000 HTTP/1.1\r\nHost: p\r\n\r\n")
            #expect(try client.readResponse { received += $0.count }.status == 200)
            #expect(received == 300_000)
            #expect(h.proxy.pools.stats.openConnections > 0)
        }
        // The harness is gone (it stopped both servers); closing and lingering sockets let go of
        // the loops within a few seconds.
        #expect(eventually(timeout: 10) { proxy == nil && sandbox == nil },
                "still alive: \(proxy == nil ? "" : "proxy ")\(sandbox == nil ? "" : "sandbox")")
        #expect(eventually(timeout: 10) { proxyLoop == nil && sandboxLoop == nil },
                "still alive: \(proxyLoop == nil ? "" : "proxy loop ")\(sandboxLoop == nil ? "" : "sandbox loop")")
    }

    /// A request body that arrives in pieces leaves the connection idle once answered, so a
    /// graceful stop closes it at once (it used to count as a head under way, and stayed open).
    @Test func aConnectionWhoseBodyCameInPiecesIsIdleAfterTheResponse() throws {
        let h = try Harness()
        let client = try h.client(timeout: 5)
        try client.send("POST /suppliers-api-2024v2/_sandbox/echo/x HTTP/1.1\r\nHost: p\r\nContent-Length: 10\r\n\r\nhello")
        // The body's first half is read and parsed on its own: it came with the head, and the
        // head has been parsed once the request counts as in flight.
        #expect(eventually { h.proxy.stats.requestsInFlight == 1 })
        try client.send("world")
        #expect(try client.readResponse().status == 200)
        let stopped = DispatchSemaphore(value: 0)
        // Far longer than the wait below: the stop must not need the grace period.
        h.proxy.shutdown(grace: .seconds(120)) { stopped.signal() }
        #expect(stopped.wait(timeout: .now() + 20) == .success)
        #expect(client.isClosedByPeer())
    }
}
