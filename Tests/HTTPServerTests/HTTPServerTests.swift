import Config
import EventLoop
import Foundation
import HTTP1
import HTTPServer
import Proxy
import TestSupport
import Testing

/// Answers every request with the number of body bytes it received; counts bytes as they come.
final class CountingHandler: HTTPServerHandler, @unchecked Sendable {
    let bodyBytes = Locked(0)
    let aborts = Locked<[String]>([])

    func handle(_ exchange: ServerExchange) {
        var received = 0
        exchange.onBody = { [bodyBytes] bytes in
            received += bytes.count
            bodyBytes.withLock { $0 += bytes.count }
        }
        exchange.onEnd = { exchange.respond(status: 200, body: Array("\(received)".utf8)) }
        exchange.onAbort = { [aborts] error in aborts.withLock { $0.append("\(error)") } }
    }

    func errorResponse(status: Int, code: String, detail: String) -> (HTTPHeaders, [UInt8]) {
        (HTTPHeaders([("Content-Type", "text/plain")]), Array(code.utf8))
    }
}

/// The server's own timeouts, on a loop whose clock the test moves: real sockets, no waiting.
@Suite struct HTTPServerTimeoutTests {
    final class Fixture {
        let clock = ManualClock()
        let group: EventLoopGroup
        let handler = CountingHandler()
        let server: HTTPServer
        var port: Int { server.localAddress.port }

        init(configure: (inout HTTPServerSettings) -> Void) throws {
            ignoreSIGPIPE()
            group = EventLoopGroup(loopCount: 1, clock: clock)
            var settings = HTTPServerSettings()
            configure(&settings)
            server = try HTTPServer(address: SocketAddress(ip: "127.0.0.1", port: 0)!, group: group, settings: settings, handler: handler)
            server.start()
        }

        /// Moves time, fires what came due, and lets the loop finish the turn's writes.
        func advance(by duration: Duration) {
            TestSupport.advance(clock, by: duration, firingTimersOn: group.loops)
            onLoop(group.loops[0]) {}
        }

        deinit {
            server.stopAccepting()
            server.closeConnectionsWhenIdle()
        }
    }

    @Test func aKeepAliveConnectionClosesQuietlyAfterTheIdleTimeout() throws {
        let f = try Fixture { $0.idleTimeout = .seconds(30) }
        let client = try Client(port: f.port)
        #expect(try client.get("/a").status == 200)
        // Just short of the timeout the connection still serves, and the timeout starts over.
        f.advance(by: .seconds(29))
        #expect(try client.get("/b").status == 200)
        f.advance(by: .seconds(29))
        #expect(client.bytesWaiting == 0)
        #expect(f.server.activeConnections == 1)
        // 30 s after the last response: closed, without a word (no 408 for an idle connection).
        f.advance(by: .seconds(1))
        #expect(client.isClosedQuietly())
        #expect(eventually { f.server.activeConnections == 0 })
    }

    @Test func aStalledRequestBodyGets408() throws {
        let f = try Fixture { $0.bodyStallTimeout = .seconds(10) }
        let client = try Client(port: f.port)
        // Each piece of the body restarts the stall timeout: 18 s in all, never 10 s silent.
        try client.send("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello")
        #expect(eventually { f.handler.bodyBytes.withLock { $0 } == 5 })
        f.advance(by: .seconds(9))
        try client.send("abc")
        #expect(eventually { f.handler.bodyBytes.withLock { $0 } == 8 })
        f.advance(by: .seconds(9))
        try client.send("de")
        let complete = try client.readResponse()
        #expect(complete.status == 200)
        #expect(complete.body == "10")
        // Now a body that stops halfway.
        try client.send("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello")
        #expect(eventually { f.handler.bodyBytes.withLock { $0 } == 15 })
        f.advance(by: .milliseconds(9900))
        #expect(client.bytesWaiting == 0, "answered before the body stalled for 10 s")
        f.advance(by: .milliseconds(200))
        let stalled = try client.readResponse()
        #expect(stalled.status == 408)
        #expect(stalled.headers.firstString("connection")?.lowercased() == "close")
        #expect(client.isClosedQuietly())
        #expect(f.handler.aborts.withLock { $0 }.count == 1)
    }
}

/// The server's limits and graceful stop, through the proxy in front of the sandbox.
@Suite struct HTTPServerThroughTheProxyTests {
    @Test func maxConnectionsHoldsFurtherClientsInTheBacklog() throws {
        let h = try ProxyOnSandbox { $0.limits.maxConnections = 2 }
        var a: Client? = try Client(port: h.port)
        let b = try Client(port: h.port)
        #expect(try a!.get("/suppliers-api-2026v1/_sandbox/echo/a").status == 200)
        #expect(try b.get("/suppliers-api-2026v1/_sandbox/echo/b").status == 200)
        #expect(eventually { h.proxy.activeClientConnections == 2 })
        // A third client: connected by the kernel, its request sent, but not served...
        let c = try Client(port: h.port)
        try c.send("GET /suppliers-api-2026v1/_sandbox/echo/c HTTP/1.1\r\nHost: test\r\n\r\n")
        // ...while the two admitted ones keep being served (so the proxy had every chance).
        #expect(try a!.get("/suppliers-api-2026v1/_sandbox/echo/a2").status == 200)
        #expect(try b.get("/suppliers-api-2026v1/_sandbox/echo/b2").status == 200)
        #expect(h.proxy.activeClientConnections == 2)
        #expect(c.bytesWaiting == 0, "the third client was served past max_connections")
        #expect(h.state.apiRequests == 4)
        // One leaves: the waiting client is accepted and served.
        a = nil
        let response = try c.readResponse()
        #expect(response.status == 200)
        #expect(h.state.apiRequests == 5)
    }

    /// The stop's grace period runs out with a request still in flight: the stop completes
    /// anyway, once the grace period has passed and not before. The proxy's clock is moved by
    /// hand; the API would take a minute to answer.
    @Test func theGracePeriodExpiresWithARequestInFlight() throws {
        let clock = ManualClock()
        let h = try ProxyOnSandbox(clock: clock) { $0.timeouts.request = .seconds(600) }
        let busy = try Client(port: h.port)
        try busy.send("GET /suppliers-api-2026v1/_sandbox/delay?ms=60000 HTTP/1.1\r\nHost: test\r\n\r\n")
        #expect(eventually { h.proxy.stats.requestsInFlight == 1 && h.state.apiRequests == 1 })
        let inFlightAtCompletion = Locked<Int?>(nil)
        let stats = h.proxy.stats
        h.proxy.shutdown(grace: .seconds(10)) { inFlightAtCompletion.withLock { $0 = stats.requestsInFlight } }
        // The stop checks every 50 ms of the clock: every check so far found work left.
        advance(clock, by: .milliseconds(9900), firingTimersOn: h.proxy.group.loops)
        onLoop(h.proxy.group.loops[0]) {}
        #expect(inFlightAtCompletion.withLock { $0 } == nil, "the stop completed before its grace period")
        #expect(eventually { !canConnect(port: h.port) }, "still accepting during the stop")
        advance(clock, by: .milliseconds(200), firingTimersOn: h.proxy.group.loops)
        #expect(eventually { inFlightAtCompletion.withLock { $0 } != nil }, "the stop never completed")
        #expect(inFlightAtCompletion.withLock { $0 } == 1)
    }
}
