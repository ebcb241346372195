import EventLoop
import HTTP1
import TLS

/// Connections to one upstream, owned by one loop: keep-alive HTTP/1.1 connections, one
/// exchange each at a time, and HTTP/2 connections (ALPN `h2`), many exchanges each as streams.
///
/// Each loop has its own pool (see `UpstreamPoolGroup`), so a client connection and the
/// upstream connection serving it share a queue and nothing needs a lock; one TLS handshake
/// serves many requests. With HTTP/2 a new connection opens only when every open one carries
/// as many streams as it may (the server's SETTINGS_MAX_CONCURRENT_STREAMS, at most
/// `http2StreamCap`), so under load one connection per loop is the normal state.
public final class UpstreamPool: @unchecked Sendable {
    public let loop: EventLoop
    public let endpoint: UpstreamEndpoint
    private let maxConnections: Int
    private let timeouts: UpstreamTimeouts
    private let limits: HTTP1Limits
    private let stats: UpstreamStats
    private let http2Mode: UpstreamHTTP2Mode
    private let http2StreamCap: Int
    /// The protocol the last connection settled on (nil before the first): while it is h2, a
    /// connection on its way is expected to carry many exchanges, so no second one opens for them.
    private var learnedProtocol: UpstreamProtocol?
    /// HTTP/2 connections that may still carry streams (open, no GOAWAY), oldest first.
    private var http2Connections: [HTTP2ClientConnection] = []
    /// Idle connections, oldest first; `since` is in nanoseconds of the loop's clock (the clock
    /// its timers run on, so a test that moves the loop's clock moves idle eviction with it).
    private var idle: [(connection: HTTP1ClientConnection, since: UInt64)] = []
    /// Connections counted against `maxConnections`: connecting (counted by `connecting`) or live.
    /// Held strongly, so an identifier cannot be reused while it is counted.
    private var live: [ObjectIdentifier: (connection: AnyObject, protocol: UpstreamProtocol)] = [:]
    private var connecting = 0
    private var open: Int { live.count + connecting }
    private var waiters: [Waiter] = []
    private var idleTimer: LoopTimer!
    private var isShutdown = false

    /// `connection` carries one exchange: an HTTP/1.1 connection or a stream of an HTTP/2 one.
    public typealias Acquired = (connection: UpstreamChannel, reused: Bool)

    private final class Waiter {
        let completion: (Result<Acquired, UpstreamError>) -> Void
        var timer: LoopTimer?
        init(_ completion: @escaping (Result<Acquired, UpstreamError>) -> Void) { self.completion = completion }
    }

    init(endpoint: UpstreamEndpoint, loop: EventLoop, maxConnections: Int, timeouts: UpstreamTimeouts, limits: HTTP1Limits, stats: UpstreamStats,
         http2Mode: UpstreamHTTP2Mode = .auto, http2StreamCap: Int = 100) {
        self.endpoint = endpoint
        self.http2Mode = http2Mode
        self.http2StreamCap = max(1, http2StreamCap)
        self.loop = loop
        self.maxConnections = max(1, maxConnections)
        self.timeouts = timeouts
        self.limits = limits
        self.stats = stats
        idleTimer = LoopTimer(loop: loop) { [weak self] in self?.closeExpiredIdle() }
    }

    public var openConnections: Int { open }
    public var idleConnections: Int { idle.count }
    /// Open HTTP/2 connections (GOAWAY'd ones still finishing their streams included).
    public var http2ConnectionCount: Int { live.values.filter { $0.protocol == .http2 }.count }

    /// HTTP/2 is expected of the next connection: offered, and not refused so far.
    private var expectsHTTP2: Bool {
        endpoint.tls != nil && http2Mode != .never && learnedProtocol != .http1
    }

    /// An HTTP/2 connection with room for one more stream: the busiest one that has room, so
    /// exchanges pack onto few connections and the others can go idle.
    private func http2WithCapacity() -> HTTP2ClientConnection? {
        var best: HTTP2ClientConnection?
        for connection in http2Connections where connection.hasCapacity {
            if best == nil || connection.activeChannels > best!.activeChannels { best = connection }
        }
        return best
    }

    /// A connection for one exchange: an idle one if any (newest first, the likeliest to be
    /// alive), else a new one, else wait for one to be released, bounded by the connect timeout.
    public func acquire(_ completion: @escaping (Result<Acquired, UpstreamError>) -> Void) {
        loop.assertInLoop()
        guard !isShutdown else { return completion(.failure(.shutdown)) }
        if let connection = http2WithCapacity() {
            let channel = connection.makeChannel()
            completion(.success((channel, channel.reused)))
            return
        }
        while let entry = idle.popLast() {
            if entry.connection.isOpen {
                completion(.success((entry.connection, true)))
                return
            }
            connectionGone(entry.connection)   // closed while idle: its slot is free again
        }
        if expectsHTTP2 && connecting > 0 && waiters.count < connecting * http2StreamCap {
            // An HTTP/2 connection is on its way and will have room for this exchange too.
            enqueueWaiter(completion)
            return
        }
        if open < maxConnections {
            connect(completion)
            return
        }
        enqueueWaiter(completion)
    }

    private func enqueueWaiter(_ completion: @escaping (Result<Acquired, UpstreamError>) -> Void) {
        let waiter = Waiter(completion)
        let timer = LoopTimer(loop: loop) { [weak self, weak waiter] in
            guard let self, let waiter, let index = self.waiters.firstIndex(where: { $0 === waiter }) else { return }
            self.waiters.remove(at: index)
            waiter.completion(.failure(.timedOut(phase: "waiting for a free upstream connection")))
        }
        waiter.timer = timer
        timer.schedule(after: timeouts.connect)
        waiters.append(waiter)
    }

    /// Checks that the upstream accepts a connection (TLS handshake included): reuses an idle
    /// one when there is one, else connects, and keeps the connection for later requests.
    public func probe(_ completion: @escaping (UpstreamError?) -> Void) {
        acquire { result in
            switch result {
            case .failure(let error):
                completion(error)
            case .success(let acquired):
                if let connection = acquired.connection as? HTTP1ClientConnection {
                    self.release(connection, reusable: true)
                } else {
                    acquired.connection.abandon()   // an unused stream: gives its slot back
                }
                completion(nil)
            }
        }
    }

    /// Closes idle connections (for shutdown or when the upstream changes).
    public func shutdown() {
        loop.assertInLoop()
        isShutdown = true
        for entry in idle {
            entry.connection.close()
            connectionGone(entry.connection)
        }
        idle.removeAll()
        // HTTP/2 connections close once their streams end (GOAWAY now, RFC 9113 §6.8).
        let http2 = http2Connections
        http2Connections.removeAll()
        for connection in http2 { connection.closeWhenIdle() }
        idleTimer.cancel()
        let pending = waiters
        waiters.removeAll()
        for waiter in pending { waiter.timer?.cancel(); waiter.completion(.failure(.shutdown)) }
    }

    // MARK: Internals

    private enum Established {
        case http1(HTTP1ClientConnection)
        case http2(HTTP2ClientConnection)
    }

    private func connect(_ completion: @escaping (Result<Acquired, UpstreamError>) -> Void) {
        connecting += 1
        stats.connectionOpened()
        var finished = false
        var deadline: LoopTimer?
        // Exactly one outcome: the first of success, failure or the deadline wins; a
        // connection that arrives after the deadline is closed.
        let finish: (Result<Established, UpstreamError>) -> Void = { [weak self] result in
            guard !finished else {
                switch result {
                case .success(.http1(let connection)): connection.close()
                case .success(.http2(let connection)): connection.close()
                case .failure: break
                }
                return
            }
            finished = true
            deadline?.cancel()
            deadline = nil   // the deadline's handler holds this closure
            guard let self else {
                if case .failure(let error) = result { completion(.failure(error)) } else { completion(.failure(.shutdown)) }
                return
            }
            self.connecting -= 1
            switch result {
            case .success(.http1(let connection)):
                self.learnedProtocol = .http1
                self.live[ObjectIdentifier(connection)] = (connection, .http1)
                self.stats.connectionEstablished(.http1)
                completion(.success((connection, false)))
                self.serveWaiters()
            case .success(.http2(let connection)):
                self.learnedProtocol = .http2
                self.live[ObjectIdentifier(connection)] = (connection, .http2)
                self.http2Connections.append(connection)
                self.stats.connectionEstablished(.http2)
                completion(.success((connection.makeChannel(), false)))
                self.serveWaiters()
            case .failure(let error):
                // The exchanges queued for this connection (as HTTP/2 would have carried them)
                // hear the same failure, rather than each trying again in turn.
                if self.expectsHTTP2 {
                    var failed: [Waiter] = []
                    while self.waiters.count > self.connecting * self.http2StreamCap, failed.count < self.http2StreamCap {
                        failed.append(self.waiters.removeFirst())
                    }
                    for waiter in failed { waiter.timer?.cancel(); waiter.completion(.failure(error)) }
                }
                self.slotFreed()
                completion(.failure(error))
            }
        }
        let timeouts = self.timeouts
        deadline = loop.schedule(after: timeouts.connect) { finish(.failure(.timedOut(phase: "connecting to the upstream"))) }
        let endpoint = self.endpoint
        let http2Mode = self.http2Mode
        Connector.connect(host: endpoint.host, port: endpoint.port, loop: loop, timeout: timeouts.connect) { [weak self] result in
            guard let self else { return }
            switch result {
            case .failure(let error):
                finish(.failure(.connectFailed(error.description)))
            case .success(let socket):
                guard let tls = endpoint.tls else {
                    finish(.success(.http1(self.makeConnection(socket))))
                    return
                }
                TLSStream.connect(over: socket, context: tls, serverName: endpoint.host) { result in
                    switch result {
                    case .success(let stream):
                        self.stats.handshakeCompleted()
                        // ALPN (RFC 7301) decides: "h2" only when offered, so honoured in any mode.
                        let chosen = stream.negotiatedALPN
                        if chosen == "h2" {
                            finish(.success(.http2(self.makeHTTP2Connection(stream))))
                        } else if http2Mode == .always {
                            stream.abort()
                            finish(.failure(.http2NotNegotiated(chosen: chosen)))
                        } else {
                            finish(.success(.http1(self.makeConnection(stream))))
                        }
                    case .failure(let error):
                        if case .tls(let message, let verification) = error {
                            finish(.failure(.tlsFailed(message, verification: verification)))
                        } else {
                            finish(.failure(.tlsFailed(error.description, verification: false)))
                        }
                    }
                }
            }
        }
    }

    private func makeHTTP2Connection(_ stream: ByteStream) -> HTTP2ClientConnection {
        let connection = HTTP2ClientConnection(stream: stream, timeouts: timeouts, authority: endpoint.authority, localStreamCap: http2StreamCap)
        let stats = self.stats
        connection.onStreamCount = { delta in stats.streamsInFlightChanged(by: delta) }
        connection.onStreamBufferPeak = { peak in stats.streamBuffered(peak: peak) }
        connection.onStateChange = { [weak self] connection in
            guard let self else { return }
            if !connection.isOpen {
                self.connectionGone(connection)
            } else if !connection.acceptsStreams {
                // GOAWAY: finishes its streams, takes no new ones; waiting exchanges need another.
                self.http2Connections.removeAll { $0 === connection }
                self.serveWaiters()
            } else {
                self.serveWaiters()
            }
        }
        return connection
    }

    private func makeConnection(_ stream: ByteStream) -> HTTP1ClientConnection {
        let connection = HTTP1ClientConnection(stream: stream, timeouts: timeouts, limits: limits)
        connection.onExchangeDone = { [weak self] connection, reusable in
            self?.release(connection, reusable: reusable)
        }
        connection.onIdleClose = { [weak self] connection in
            guard let self else { return }
            if let index = self.idle.firstIndex(where: { $0.connection === connection }) {
                self.idle.remove(at: index)
            }
            self.connectionGone(connection)
        }
        return connection
    }

    private func release(_ connection: HTTP1ClientConnection, reusable: Bool) {
        guard reusable, connection.isOpen, !isShutdown else {
            // A connection that was in use when the pool shut down is not kept: close it.
            if isShutdown { connection.close() }
            connectionGone(connection)
            return
        }
        if !waiters.isEmpty {
            let waiter = waiters.removeFirst()
            waiter.timer?.cancel()
            waiter.completion(.success((connection, true)))
            return
        }
        idle.append((connection, loop.clock.nanoseconds))
        if !idleTimer.isArmed { idleTimer.schedule(after: timeouts.idle) }
    }

    /// A connection closed for good: its slot may serve a waiter. Safe to call more than once
    /// for the same connection (closing paths overlap); it counts once.
    private func connectionGone(_ connection: AnyObject) {
        guard let entry = live.removeValue(forKey: ObjectIdentifier(connection)) else { return }
        if entry.protocol == .http2 { http2Connections.removeAll { $0 === connection } }
        stats.connectionGone(entry.protocol)
        slotFreed()
    }

    private func slotFreed() {
        stats.connectionClosed()
        serveWaiters()
    }

    /// Hands waiting exchanges what there is: a stream on an HTTP/2 connection with room, or a
    /// new connection while the limit allows (none while an HTTP/2 connection on its way will
    /// have room for them).
    private func serveWaiters() {
        while !waiters.isEmpty && !isShutdown {
            if let connection = http2WithCapacity() {
                let waiter = waiters.removeFirst()
                waiter.timer?.cancel()
                let channel = connection.makeChannel()
                waiter.completion(.success((channel, channel.reused)))
                continue
            }
            if expectsHTTP2 && connecting > 0 && waiters.count <= connecting * http2StreamCap { return }
            guard open < maxConnections else { return }
            let waiter = waiters.removeFirst()
            waiter.timer?.cancel()
            connect(waiter.completion)
        }
    }

    private func closeExpiredIdle() {
        let now = loop.clock.nanoseconds
        let idleTimeout = timeouts.idle.clampedNanoseconds
        var kept: [(connection: HTTP1ClientConnection, since: UInt64)] = []
        for entry in idle {
            if now &- entry.since >= idleTimeout {
                entry.connection.close()
                connectionGone(entry.connection)
            } else {
                kept.append(entry)
            }
        }
        idle = kept
        if let oldest = idle.first {
            idleTimer.schedule(afterNanoseconds: idleTimeout - (now &- oldest.since))
        }
    }
}

/// Counters shared by the pools of all loops.
public final class UpstreamStats: @unchecked Sendable {
    private struct State {
        var open = 0
        var handshakes = 0
        var lastHandshake: ContinuousClock.Instant?
        var http1 = 0
        var http2 = 0
        var streamsInFlight = 0
        var streamBufferPeak = 0
    }
    private let state = Locked(State())
    public init() {}
    func connectionOpened() { state.withLock { $0.open += 1 } }
    func connectionClosed() { state.withLock { $0.open -= 1 } }
    func handshakeCompleted() { state.withLock { $0.handshakes += 1; $0.lastHandshake = .now } }
    func connectionEstablished(_ kind: UpstreamProtocol) {
        state.withLock { if kind == .http2 { $0.http2 += 1 } else { $0.http1 += 1 } }
    }
    func connectionGone(_ kind: UpstreamProtocol) {
        state.withLock { if kind == .http2 { $0.http2 -= 1 } else { $0.http1 -= 1 } }
    }
    func streamsInFlightChanged(by delta: Int) { state.withLock { $0.streamsInFlight += delta } }
    func streamBuffered(peak: Int) { state.withLock { $0.streamBufferPeak = max($0.streamBufferPeak, peak) } }
    /// Connections counted against the limit: connecting or open.
    public var openConnections: Int { state.withLock { $0.open } }
    /// Established connections by protocol.
    public var http1Connections: Int { state.withLock { $0.http1 } }
    public var http2Connections: Int { state.withLock { $0.http2 } }
    /// HTTP/2 streams open on the upstream connections.
    public var http2StreamsInFlight: Int { state.withLock { $0.streamsInFlight } }
    /// The most body bytes one HTTP/2 stream held in the proxy at once, since the start:
    /// response bytes received for a client that is not reading (at most the stream window),
    /// or request bytes queued for the stream's send window.
    public var http2StreamBufferPeak: Int { state.withLock { $0.streamBufferPeak } }
    /// The protocol of the established connections: "h2", "http/1.1", both, or nil for none.
    public var protocolSummary: String? {
        state.withLock { s in
            switch (s.http2 > 0, s.http1 > 0) {
            case (true, true): return "h2, http/1.1"
            case (true, false): return "h2"
            case (false, true): return "http/1.1"
            case (false, false): return nil
            }
        }
    }
    public var handshakes: Int { state.withLock { $0.handshakes } }
    public var lastHandshake: ContinuousClock.Instant? { state.withLock { $0.lastHandshake } }
}

/// One pool per loop for the same upstream.
public final class UpstreamPoolGroup: @unchecked Sendable {
    public let endpoint: UpstreamEndpoint
    public let http2Mode: UpstreamHTTP2Mode
    public let stats = UpstreamStats()
    private let pools: [ObjectIdentifier: UpstreamPool]

    public init(endpoint: UpstreamEndpoint, group: EventLoopGroup, maxConnections: Int, timeouts: UpstreamTimeouts, limits: HTTP1Limits = HTTP1Limits(),
                http2Mode: UpstreamHTTP2Mode = .auto, http2StreamCap: Int = 100) {
        self.endpoint = endpoint
        self.http2Mode = http2Mode
        let perLoop = max(1, maxConnections / group.loops.count)
        var pools: [ObjectIdentifier: UpstreamPool] = [:]
        let stats = self.stats
        for loop in group.loops {
            pools[ObjectIdentifier(loop)] = UpstreamPool(endpoint: endpoint, loop: loop, maxConnections: perLoop, timeouts: timeouts, limits: limits, stats: stats,
                                                        http2Mode: http2Mode, http2StreamCap: http2StreamCap)
        }
        self.pools = pools
    }

    /// The pool of `loop` (which must belong to the group the pools were made for).
    public func pool(for loop: EventLoop) -> UpstreamPool {
        pools[ObjectIdentifier(loop)]!
    }

    public func shutdown() {
        for pool in pools.values { pool.loop.execute { pool.shutdown() } }
    }
}

extension UpstreamPool {
    /// A pool on its own (not part of a group), for control-plane traffic such as the IDM.
    public static func standalone(endpoint: UpstreamEndpoint, loop: EventLoop, maxConnections: Int, timeouts: UpstreamTimeouts,
                                  http2Mode: UpstreamHTTP2Mode = .auto, http2StreamCap: Int = 100, stats: UpstreamStats = UpstreamStats()) -> UpstreamPool {
        UpstreamPool(endpoint: endpoint, loop: loop, maxConnections: maxConnections, timeouts: timeouts, limits: HTTP1Limits(), stats: stats,
                     http2Mode: http2Mode, http2StreamCap: http2StreamCap)
    }
}
