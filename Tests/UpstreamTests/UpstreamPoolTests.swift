import EventLoop
import Foundation
import HTTP1
import Sandbox
import TestSupport
import Testing
import TLS
import Upstream

/// The keep-alive pool against real sockets (the sandbox's API, or a listener that never
/// answers), on a loop whose clock the test moves: idle eviction, waiting for a free
/// connection and the connect deadline are tested without waiting for them.
@Suite struct UpstreamPoolTests {
    /// A pool on a one-loop group with a hand-moved clock.
    final class Fixture: @unchecked Sendable {
        let clock = ManualClock()
        let group: EventLoopGroup
        var loop: EventLoop { group.loops[0] }
        let pool: UpstreamPool

        init(port: Int, tls: TLSContext? = nil, maxConnections: Int, configure: (inout UpstreamTimeouts) -> Void = { _ in }) {
            ignoreSIGPIPE()
            group = EventLoopGroup(loopCount: 1, clock: clock)
            var timeouts = UpstreamTimeouts()
            timeouts.connect = .seconds(5)
            timeouts.idle = .seconds(30)
            configure(&timeouts)
            pool = UpstreamPool.standalone(endpoint: UpstreamEndpoint(host: "127.0.0.1", port: port, tls: tls), loop: group.loops[0],
                                           maxConnections: maxConnections, timeouts: timeouts)
        }

        func advance(by duration: Duration) { TestSupport.advance(clock, by: duration, firingTimersOn: [loop]) }

        /// Asks for a connection; the outcome arrives later, in the returned box.
        func acquire() -> Outcome {
            let outcome = Outcome()
            let pool = self.pool
            onLoop(loop) { pool.acquire { outcome.set($0) } }
            return outcome
        }

        /// One GET on `connection` (the sandbox answers 404, a complete response on a connection
    /// that stays open); when its response has ended the pool takes the connection back.
        func exchange(on connection: HTTP1ClientConnection) -> Bool {
            let done = DispatchSemaphore(value: 0)
            let handler = OneResponse { done.signal() }
            onLoop(loop) {
                connection.sendRequest(HTTPRequestHead(method: "GET", target: Array("/nothing-here".utf8),
                                                       headers: HTTPHeaders([("Host", "127.0.0.1")])), handler: handler)
                connection.endRequest()
            }
            return done.wait(timeout: .now() + 30) == .success && handler.ended
        }

        var openConnections: Int { onLoop(loop) { self.pool.openConnections } }
        var idleConnections: Int { onLoop(loop) { self.pool.idleConnections } }
    }

    final class Outcome: @unchecked Sendable {
        let result = Locked<Result<UpstreamPool.Acquired, UpstreamError>?>(nil)
        func set(_ value: Result<UpstreamPool.Acquired, UpstreamError>) { result.withLock { $0 = value } }
        var pending: Bool { result.withLock { $0 == nil } }
        var connection: HTTP1ClientConnection? {
            result.withLock { if case .success(let acquired) = $0 { return acquired.connection as? HTTP1ClientConnection } else { return nil } }
        }
        var reused: Bool? {
            result.withLock { if case .success(let acquired) = $0 { return acquired.reused } else { return nil } }
        }
        var error: UpstreamError? {
            result.withLock { if case .failure(let error) = $0 { return error } else { return nil } }
        }
    }

    final class OneResponse: UpstreamResponseHandler {
        let done: () -> Void
        var ended = false
        init(_ done: @escaping () -> Void) { self.done = done }
        func upstreamResponseHead(_ head: HTTPResponseHead) {}
        func upstreamResponseBody(_ bytes: UnsafeRawBufferPointer) {}
        func upstreamResponseEnd() { ended = true; done() }
        func upstreamFailed(_ error: UpstreamError) { done() }
        func upstreamWritable() {}
    }

    private func sandbox() throws -> SandboxServer {
        try SandboxServer(address: SocketAddress(ip: "127.0.0.1", port: 0)!, tls: false)
    }

    @Test func idleConnectionsAreClosedAfterTheIdleTimeout() throws {
        let api = try sandbox()
        defer { api.stop() }
        let f = Fixture(port: api.port, maxConnections: 2)
        let first = f.acquire()
        #expect(eventually { !first.pending })
        let connection = try #require(first.connection)
        #expect(first.reused == false)
        #expect(f.exchange(on: connection))
        #expect(f.idleConnections == 1)
        // Just short of the idle timeout: kept, and handed out again.
        f.advance(by: .seconds(29))
        #expect(f.idleConnections == 1)
        let again = f.acquire()
        #expect(again.reused == true)
        #expect(again.connection === connection)
        #expect(f.exchange(on: connection))
        // The timeout counts from the last release: 30 s of silence close it.
        f.advance(by: .seconds(29))
        #expect(f.idleConnections == 1)
        f.advance(by: .seconds(1))
        #expect(f.idleConnections == 0)
        #expect(f.openConnections == 0)
        #expect(!connection.isOpen)
        // The next request connects anew.
        let fresh = f.acquire()
        #expect(eventually { !fresh.pending })
        #expect(fresh.reused == false)
    }

    @Test func aWaiterOnAFullPoolGetsTheReleasedConnection() throws {
        let api = try sandbox()
        defer { api.stop() }
        let f = Fixture(port: api.port, maxConnections: 1)
        let holder = f.acquire()
        #expect(eventually { !holder.pending })
        let connection = try #require(holder.connection)
        let waiter = f.acquire()
        // The pool is full: the second caller waits (the loop has run the request by now).
        #expect(waiter.pending)
        #expect(f.openConnections == 1)
        #expect(f.exchange(on: connection))
        #expect(eventually { !waiter.pending })
        #expect(waiter.connection === connection)
        #expect(waiter.reused == true)
        #expect(f.openConnections == 1)
    }

    @Test func aWaiterGivesUpAfterTheConnectTimeout() throws {
        let api = try sandbox()
        defer { api.stop() }
        let f = Fixture(port: api.port, maxConnections: 1)
        let holder = f.acquire()
        #expect(eventually { !holder.pending })
        let connection = try #require(holder.connection)
        let waiter = f.acquire()
        f.advance(by: .milliseconds(4900))
        #expect(waiter.pending)
        f.advance(by: .milliseconds(200))
        guard case .timedOut(let phase) = waiter.error else {
            Issue.record("expected a timeout, got \(String(describing: waiter.result.withLock { $0 }))")
            return
        }
        #expect(phase == "waiting for a free upstream connection")
        // The holder is unaffected, and its connection goes idle when released (no waiter left).
        #expect(f.exchange(on: connection))
        #expect(f.idleConnections == 1)
    }

    /// A listener that completes TCP handshakes (the kernel does) and never says anything:
    /// the TLS handshake cannot finish, and only the connect deadline ends the attempt.
    @Test func connectingGivesUpAfterTheConnectTimeout() throws {
        let silent = try SilentListener()
        let f = Fixture(port: silent.port, tls: try TLSContext.client(alpn: ["http/1.1"]), maxConnections: 1)
        let attempt = f.acquire()
        f.advance(by: .milliseconds(4900))
        #expect(attempt.pending)
        #expect(f.openConnections == 1)   // the attempt holds the only slot
        f.advance(by: .milliseconds(200))
        guard case .timedOut(let phase) = attempt.error else {
            Issue.record("expected a timeout, got \(String(describing: attempt.result.withLock { $0 }))")
            return
        }
        #expect(phase == "connecting to the upstream")
        #expect(f.openConnections == 0)   // the slot is free again
    }

    @Test func shutdownFailsTheWaitersAndLaterRequests() throws {
        let api = try sandbox()
        defer { api.stop() }
        let f = Fixture(port: api.port, maxConnections: 1)
        let holder = f.acquire()
        #expect(eventually { !holder.pending })
        let connection = try #require(holder.connection)
        let waiters = [f.acquire(), f.acquire()]
        #expect(waiters.allSatisfy { $0.pending })
        onLoop(f.loop) { f.pool.shutdown() }
        for waiter in waiters {
            guard case .shutdown = waiter.error else {
                Issue.record("expected .shutdown, got \(String(describing: waiter.result.withLock { $0 }))")
                continue
            }
        }
        let late = f.acquire()
        guard case .shutdown = late.error else {
            Issue.record("expected .shutdown, got \(String(describing: late.result.withLock { $0 }))")
            return
        }
        // The connection in use finishes its exchange, and is then closed rather than kept.
        #expect(f.exchange(on: connection))
        #expect(eventually { !connection.isOpen })
        #expect(f.idleConnections == 0)
        #expect(f.openConnections == 0)
    }
}

/// A listening socket nobody accepts on; connections wait in its backlog.
final class SilentListener {
    let fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr)
        let bound = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(fd, 16) == 0 else {
            close(fd)
            throw SocketError("listen", errno: errno)
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        port = Int(UInt16(bigEndian: sin.sin_port))
    }

    deinit { close(fd) }
}
