import EventLoop
import HTTP1
import TLS

/// Keep-alive connections to one upstream, owned by one loop.
///
/// Each loop has its own pool (see `UpstreamPoolGroup`), so a client connection and the
/// upstream connection serving it share a queue and nothing needs a lock; one TLS handshake
/// serves many requests.
public final class UpstreamPool: @unchecked Sendable {
    public let loop: EventLoop
    public let endpoint: UpstreamEndpoint
    private let maxConnections: Int
    private let timeouts: UpstreamTimeouts
    private let limits: HTTP1Limits
    private let stats: UpstreamStats
    /// Idle connections, oldest first; `since` is in nanoseconds of the loop's clock (the clock
    /// its timers run on, so a test that moves the loop's clock moves idle eviction with it).
    private var idle: [(connection: HTTP1ClientConnection, since: UInt64)] = []
    /// Connections counted against `maxConnections`: connecting (counted by `connecting`) or live.
    /// Held strongly, so an identifier cannot be reused while it is counted.
    private var live: [ObjectIdentifier: HTTP1ClientConnection] = [:]
    private var connecting = 0
    private var open: Int { live.count + connecting }
    private var waiters: [Waiter] = []
    private var idleTimer: LoopTimer!
    private var isShutdown = false

    public typealias Acquired = (connection: HTTP1ClientConnection, reused: Bool)

    private final class Waiter {
        let completion: (Result<Acquired, UpstreamError>) -> Void
        var timer: LoopTimer?
        init(_ completion: @escaping (Result<Acquired, UpstreamError>) -> Void) { self.completion = completion }
    }

    init(endpoint: UpstreamEndpoint, loop: EventLoop, maxConnections: Int, timeouts: UpstreamTimeouts, limits: HTTP1Limits, stats: UpstreamStats) {
        self.endpoint = endpoint
        self.loop = loop
        self.maxConnections = max(1, maxConnections)
        self.timeouts = timeouts
        self.limits = limits
        self.stats = stats
        idleTimer = LoopTimer(loop: loop) { [weak self] in self?.closeExpiredIdle() }
    }

    public var openConnections: Int { open }
    public var idleConnections: Int { idle.count }

    /// A connection for one exchange: an idle one if any (newest first, the likeliest to be
    /// alive), else a new one, else wait for one to be released, bounded by the connect timeout.
    public func acquire(_ completion: @escaping (Result<Acquired, UpstreamError>) -> Void) {
        loop.assertInLoop()
        guard !isShutdown else { return completion(.failure(.shutdown)) }
        while let entry = idle.popLast() {
            if entry.connection.isOpen {
                completion(.success((entry.connection, true)))
                return
            }
            connectionGone(entry.connection)   // closed while idle: its slot is free again
        }
        if open < maxConnections {
            connect(completion)
            return
        }
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
                self.release(acquired.connection, reusable: true)
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
        idleTimer.cancel()
        let pending = waiters
        waiters.removeAll()
        for waiter in pending { waiter.timer?.cancel(); waiter.completion(.failure(.shutdown)) }
    }

    // MARK: Internals

    private func connect(_ completion: @escaping (Result<Acquired, UpstreamError>) -> Void) {
        connecting += 1
        stats.connectionOpened()
        var finished = false
        var deadline: LoopTimer?
        // Exactly one outcome: the first of success, failure or the deadline wins; a
        // connection that arrives after the deadline is closed.
        let finish: (Result<Acquired, UpstreamError>) -> Void = { [weak self] result in
            guard !finished else {
                if case .success(let acquired) = result { acquired.connection.close() }
                return
            }
            finished = true
            deadline?.cancel()
            deadline = nil   // the deadline's handler holds this closure
            if let self {
                self.connecting -= 1
                switch result {
                case .success(let acquired): self.live[ObjectIdentifier(acquired.connection)] = acquired.connection
                case .failure: self.slotFreed()
                }
            }
            completion(result)
        }
        let timeouts = self.timeouts
        deadline = loop.schedule(after: timeouts.connect) { finish(.failure(.timedOut(phase: "connecting to the upstream"))) }
        let endpoint = self.endpoint
        Connector.connect(host: endpoint.host, port: endpoint.port, loop: loop, timeout: timeouts.connect) { [weak self] result in
            guard let self else { return }
            switch result {
            case .failure(let error):
                finish(.failure(.connectFailed(error.description)))
            case .success(let socket):
                guard let tls = endpoint.tls else {
                        finish(.success((self.makeConnection(socket), false)))
                    return
                }
                TLSStream.connect(over: socket, context: tls, serverName: endpoint.host) { result in
                        switch result {
                    case .success(let stream):
                        self.stats.handshakeCompleted()
                        finish(.success((self.makeConnection(stream), false)))
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
    private func connectionGone(_ connection: HTTP1ClientConnection) {
        guard live.removeValue(forKey: ObjectIdentifier(connection)) != nil else { return }
        slotFreed()
    }

    private func slotFreed() {
        stats.connectionClosed()
        if !waiters.isEmpty && open < maxConnections && !isShutdown {
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
    private let state = Locked((open: 0, handshakes: 0, lastHandshake: ContinuousClock.Instant?.none))
    public init() {}
    func connectionOpened() { state.withLock { $0.open += 1 } }
    func connectionClosed() { state.withLock { $0.open -= 1 } }
    func handshakeCompleted() { state.withLock { $0.handshakes += 1; $0.lastHandshake = .now } }
    public var openConnections: Int { state.withLock { $0.open } }
    public var handshakes: Int { state.withLock { $0.handshakes } }
    public var lastHandshake: ContinuousClock.Instant? { state.withLock { $0.lastHandshake } }
}

/// One pool per loop for the same upstream.
public final class UpstreamPoolGroup: @unchecked Sendable {
    public let endpoint: UpstreamEndpoint
    public let stats = UpstreamStats()
    private let pools: [ObjectIdentifier: UpstreamPool]

    public init(endpoint: UpstreamEndpoint, group: EventLoopGroup, maxConnections: Int, timeouts: UpstreamTimeouts, limits: HTTP1Limits = HTTP1Limits()) {
        self.endpoint = endpoint
        let perLoop = max(1, maxConnections / group.loops.count)
        var pools: [ObjectIdentifier: UpstreamPool] = [:]
        let stats = self.stats
        for loop in group.loops {
            pools[ObjectIdentifier(loop)] = UpstreamPool(endpoint: endpoint, loop: loop, maxConnections: perLoop, timeouts: timeouts, limits: limits, stats: stats)
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
    public static func standalone(endpoint: UpstreamEndpoint, loop: EventLoop, maxConnections: Int, timeouts: UpstreamTimeouts) -> UpstreamPool {
        UpstreamPool(endpoint: endpoint, loop: loop, maxConnections: maxConnections, timeouts: timeouts, limits: HTTP1Limits(), stats: UpstreamStats())
    }
}
