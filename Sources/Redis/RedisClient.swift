import CHiredis
import EventLoop
import TLS

/// A Redis connection on one event loop: hiredis's asynchronous context, driven by the loop.
///
/// hiredis builds the commands, parses the replies and does the socket reads and writes; it
/// says through its `ev` hooks when it wants to read or write, and the loop watches the
/// descriptor (`DescriptorWatch`) and calls `redisAsyncHandleRead`/`Write` when it is ready.
///
/// - Connects on the first command, and again on the next command after the connection was
///   lost. The host is resolved off the loop (hiredis would call `getaddrinfo` itself, which
///   blocks), then hiredis connects to the address, non-blocking.
/// - Every command has `timeout`: a command without its reply by then fails with `.timeout`
///   and the connection is dropped (the replies are in order, so a stuck one blocks all after
///   it); hiredis has no timeouts of its own in its asynchronous mode.
/// - After a failed connect, commands within `reconnectDelay` fail at once with the same
///   error instead of each trying to connect.
/// - Completions run on the loop, never inside a hiredis call, so they may send commands or
///   close the client.
///
/// Loop-confined: create it, send and close on `loop`.
public final class RedisClient {
    public let endpoint: RedisEndpoint
    public let loop: EventLoop
    public let timeout: Duration
    public let reconnectDelay: Duration

    /// For `rediss://`: the client context that verifies the server (system store plus any extra CA).
    public let tls: TLSContext?

    private var connection: Connection?
    /// Resolving the host, or (for TLS) connecting and handshaking: no hiredis context yet.
    private var resolving = false
    /// Counts connection attempts, so that a TLS connect finishing after its deadline is dropped.
    private var attempt = 0
    private var attemptTimer: LoopTimer?
    /// Commands sent while no hiredis context exists yet (the host is being resolved).
    private var waiting: [PendingCommand] = []
    private var lastConnectFailure: RedisError?
    private var reconnectNotBefore: UInt64 = 0
    private var closed = false

    /// `tls` is used for `rediss://` endpoints; without one, the system trust store verifies the server.
    public init(endpoint: RedisEndpoint, loop: EventLoop, timeout: Duration = .seconds(5), reconnectDelay: Duration = .seconds(1),
                tls: TLSContext? = nil) {
        self.endpoint = endpoint
        self.loop = loop
        self.timeout = timeout
        self.reconnectDelay = reconnectDelay
        self.tls = endpoint.tls ? (tls ?? (try? TLSContext.client(alpn: []))) : nil
    }

    deinit {
        // Possibly off the loop: the context and the timers belong to it.
        let connection = self.connection, stranded = waiting
        guard connection != nil || !stranded.isEmpty else { return }
        loop.execute {
            for command in stranded { command.finish(.failure(.closed)) }
            connection?.free(because: .closed)
        }
    }

    /// True while a hiredis context exists and has connected.
    public var isConnected: Bool { connection?.connected ?? false }

    /// Sends one command (`["SET", "k", "v"]`); `completion` runs on the loop with the reply
    /// (an error reply is `.success(.error(…))`) or why there is none.
    public func send(_ arguments: [String], completion: @escaping (Result<RedisReply, RedisError>) -> Void) {
        send(bytes: arguments.map { Array($0.utf8) }, completion: completion)
    }

    public func send(bytes arguments: [[UInt8]], completion: @escaping (Result<RedisReply, RedisError>) -> Void) {
        loop.assertInLoop()
        let command = PendingCommand(arguments: arguments, loop: loop, completion: completion)
        if closed {
            command.finish(.failure(.closed))
            return
        }
        command.startTimer(timeout) { [weak self] in
            // Replies come in order: one that is stuck holds up every later one.
            self?.connection?.free(because: .timeout)
        }
        if let connection {
            connection.submit(command)
            return
        }
        if !resolving, let lastConnectFailure, loop.clock.nanoseconds < reconnectNotBefore {
            command.finish(.failure(lastConnectFailure))
            return
        }
        waiting.append(command)
        if !resolving { connect() }
    }

    /// Fails every command still waiting with `.closed` and drops the connection.
    public func close() {
        loop.assertInLoop()
        closed = true
        attemptTimer?.cancel()
        let stranded = waiting
        waiting.removeAll()
        for command in stranded { command.finish(.failure(.closed)) }
        connection?.free(because: .closed)
        connection = nil
    }

    // MARK: Connecting

    private func connect() {
        resolving = true
        if endpoint.tls {
            connectTLS()
            return
        }
        Resolver.resolve(host: endpoint.host, port: endpoint.port, on: loop) { [weak self] result in
            guard let self else { return }
            self.resolving = false
            guard !self.closed else { return }
            switch result {
            case .failure(let error):
                self.connectFailed(.connect(error.description))
            case .success(let addresses):
                self.open(addresses[0])
            }
        }
    }

    /// TCP, then the TLS handshake with the project's TLS layer, then hiredis through a
    /// `TLSTunnel`; all of it within `timeout`.
    private func connectTLS() {
        attempt &+= 1
        let current = attempt
        let timer = LoopTimer(loop: loop) { [weak self] in
            guard let self, self.resolving, self.attempt == current else { return }
            self.attempt &+= 1
            self.resolving = false
            self.connectFailed(.connect("TLS connect to \(self.endpoint.host):\(self.endpoint.port) timed out"))
        }
        timer.schedule(after: timeout)
        attemptTimer = timer
        guard let tls else {
            resolving = false
            connectFailed(.connect("no TLS context for rediss://"))
            return
        }
        Connector.connect(host: endpoint.host, port: endpoint.port, loop: loop, timeout: timeout) { [weak self] result in
            guard let self, self.attempt == current, !self.closed else {
                if case .success(let socket) = result { socket.abort() }
                return
            }
            switch result {
            case .failure(let error):
                self.finishAttempt()
                self.connectFailed(.connect(error.description))
            case .success(let socket):
                TLSStream.connect(over: socket, context: tls, serverName: self.endpoint.host) { [weak self] result in
                    guard let self, self.attempt == current, !self.closed else {
                        if case .success(let stream) = result { stream.abort() }
                        return
                    }
                    self.finishAttempt()
                    switch result {
                    case .failure(let error):
                        self.connectFailed(.connect("TLS: \(error)"))
                    case .success(let stream):
                        switch TLSTunnel.open(remote: stream) {
                        case .failure(let error): self.connectFailed(error)
                        case .success(let (tunnel, context)): self.adopt(context, tunnel: tunnel)
                        }
                    }
                }
            }
        }
    }

    private func finishAttempt() {
        resolving = false
        attemptTimer?.cancel()
        attemptTimer = nil
    }

    private func open(_ address: SocketAddress) {
        guard let context = redisAsyncConnect(address.ipString, Int32(endpoint.port)) else {
            connectFailed(.connect("out of memory"))
            return
        }
        if context.pointee.err != 0 {
            let why = Connection.errorText(context)
            redisAsyncFree(context)
            connectFailed(.connect(why))
            return
        }
        adopt(context, tunnel: nil)
    }

    /// Takes a new hiredis context: watches its socket, sends AUTH and SELECT, then what waits.
    private func adopt(_ context: UnsafeMutablePointer<redisAsyncContext>, tunnel: TLSTunnel?) {
        guard let connection = Connection(context: context, client: self, tunnel: tunnel) else {
            redisAsyncFree(context)
            tunnel?.close()
            connectFailed(.connect("the event loop refused the socket"))
            return
        }
        self.connection = connection
        // Sent first, ahead of whatever waits: an error here fails the connection.
        if let password = endpoint.password {
            var auth = ["AUTH"]
            if let user = endpoint.user { auth.append(user) }
            auth.append(password)
            connection.submitSetup(auth, what: "AUTH")
        }
        if endpoint.database != 0 {
            connection.submitSetup(["SELECT", String(endpoint.database)], what: "SELECT \(endpoint.database)")
        }
        let queued = waiting
        waiting.removeAll()
        for command in queued where !command.done { connection.submit(command) }
    }

    private func connectFailed(_ error: RedisError) {
        lastConnectFailure = error
        reconnectNotBefore = loop.clock.nanoseconds &+ UInt64(reconnectDelay.components.seconds) * 1_000_000_000
            &+ UInt64(reconnectDelay.components.attoseconds / 1_000_000_000)
        let stranded = waiting
        waiting.removeAll()
        for command in stranded { command.finish(.failure(error)) }
    }

    /// hiredis freed the context (error, end of stream, or `free`).
    fileprivate func connectionGone(_ gone: Connection, neverConnected: Bool, reason: RedisError) {
        if connection === gone { connection = nil }
        if neverConnected, case .connect = reason { connectFailed(reason) }
    }
}

/// One command on its way: its completion runs once, on the loop, from a later turn.
final class PendingCommand {
    let arguments: [[UInt8]]
    let loop: EventLoop
    private var completion: ((Result<RedisReply, RedisError>) -> Void)?
    private var timer: LoopTimer?
    private(set) var done = false
    /// Runs inside hiredis's reply callback, before the replies after this one are handled.
    var onReply: ((RedisReply) -> Void)?

    init(arguments: [[UInt8]], loop: EventLoop, completion: @escaping (Result<RedisReply, RedisError>) -> Void) {
        self.arguments = arguments
        self.loop = loop
        self.completion = completion
    }

    func startTimer(_ timeout: Duration, onTimeout: @escaping () -> Void) {
        let timer = LoopTimer(loop: loop) { [weak self] in
            guard let self, !self.done else { return }
            self.finish(.failure(.timeout))
            onTimeout()
        }
        timer.schedule(after: timeout)
        self.timer = timer
    }

    func finish(_ result: Result<RedisReply, RedisError>) {
        guard !done, let completion else { return }
        done = true
        self.completion = nil
        timer?.cancel()
        timer = nil
        loop.execute { completion(result) }
    }
}

/// One hiredis asynchronous context and the watch on its socket.
private final class Connection {
    let context: UnsafeMutablePointer<redisAsyncContext>
    weak var client: RedisClient?
    /// For `rediss://`: the relay between hiredis's socket and the TLS stream.
    private let tunnel: TLSTunnel?
    private var watch: DescriptorWatch!
    var connected = false
    /// hiredis has freed the context: it must not be touched again.
    private var gone = false
    /// Given to the commands that hiredis fails while freeing the context.
    private var reason: RedisError?

    init?(context: UnsafeMutablePointer<redisAsyncContext>, client: RedisClient, tunnel: TLSTunnel?) {
        self.context = context
        self.client = client
        self.tunnel = tunnel
        let loop = client.loop
        guard let watch = DescriptorWatch(
            descriptor: context.pointee.c.fd, loop: loop,
            onReadable: { [weak self] in self?.handleRead() },
            onWritable: { [weak self] in self?.handleWrite() }
        ) else { return nil }
        self.watch = watch
        let me = Unmanaged.passUnretained(self).toOpaque()
        context.pointee.data = me
        context.pointee.ev.data = me
        context.pointee.ev.addRead = { Connection.from($0)?.setInterest(read: true, write: nil) }
        context.pointee.ev.delRead = { Connection.from($0)?.setInterest(read: false, write: nil) }
        context.pointee.ev.addWrite = { Connection.from($0)?.setInterest(read: nil, write: true) }
        context.pointee.ev.delWrite = { Connection.from($0)?.setInterest(read: nil, write: false) }
        context.pointee.ev.cleanup = { Connection.from($0)?.cleanedUp() }
        redisAsyncSetConnectCallback(context) { context, status in
            guard let context, let connection = Connection.from(context.pointee.data) else { return }
            if status == REDIS_OK {
                connection.connected = true
            } else {
                connection.reason = .connect(Connection.errorText(UnsafeMutablePointer(mutating: context)))
            }
        }
    }

    static func from(_ pointer: UnsafeMutableRawPointer?) -> Connection? {
        pointer.map { Unmanaged<Connection>.fromOpaque($0).takeUnretainedValue() }
    }

    static func errorText(_ context: UnsafeMutablePointer<redisAsyncContext>) -> String {
        context.pointee.errstr.map { String(cString: $0) } ?? "error \(context.pointee.err)"
    }

    private func setInterest(read: Bool?, write: Bool?) {
        watch.setInterest(read: read ?? watch.wantsRead, write: write ?? watch.wantsWrite)
    }

    private func handleRead() { if !gone { redisAsyncHandleRead(context) } }
    private func handleWrite() { if !gone { redisAsyncHandleWrite(context) } }

    func submit(_ command: PendingCommand) {
        guard !gone else {
            command.finish(.failure(reason ?? .connectionLost("closed")))
            return
        }
        let box = Unmanaged.passRetained(command).toOpaque()
        let status = withArgv(command.arguments) { argc, argv, lengths in
            redisAsyncCommandArgv(context, { context, reply, privdata in
                guard let privdata else { return }
                let command = Unmanaged<PendingCommand>.fromOpaque(privdata).takeRetainedValue()
                if let reply {
                    let value = RedisReply(reply.assumingMemoryBound(to: redisReply.self))
                    command.onReply?(value)
                    command.finish(.success(value))
                } else {
                    let connection = context.flatMap { Connection.from($0.pointee.data) }
                    let fallback = context.map { RedisError.connectionLost(Connection.errorText($0)) } ?? .connectionLost("closed")
                    command.finish(.failure(connection?.reason ?? fallback))
                }
            }, box, argc, argv, lengths)
        }
        if status != REDIS_OK {
            Unmanaged<PendingCommand>.fromOpaque(box).release()
            command.finish(.failure(reason ?? .connectionLost(Self.errorText(context))))
        }
    }

    /// AUTH and SELECT: their error ends the connection and is what the waiting commands get.
    func submitSetup(_ arguments: [String], what: String) {
        let command = PendingCommand(arguments: arguments.map { Array($0.utf8) }, loop: client!.loop) { _ in }
        // At once, inside hiredis's callback: the commands behind it must not get their
        // NOAUTH replies first. hiredis frees the context when the callback returns.
        command.onReply = { [weak self] reply in
            if case .error(let message) = reply { self?.free(because: .connect("\(what) refused: \(message)")) }
        }
        submit(command)
    }

    /// Frees the context; the commands still outstanding fail with `reason`.
    func free(because reason: RedisError) {
        guard !gone else { return }
        if self.reason == nil { self.reason = reason }
        redisAsyncFree(context)
    }

    /// hiredis's cleanup hook: called once, while it frees the context.
    private func cleanedUp() {
        gone = true
        watch.cancel()
        tunnel?.close()
        let reason = self.reason ?? .connectionLost(Self.errorText(context))
        client?.connectionGone(self, neverConnected: !connected, reason: reason)
    }
}

/// Calls `body` with C argument vectors for `arguments` (valid only during the call).
private func withArgv<R>(_ arguments: [[UInt8]], _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> R) -> R {
    let buffers = arguments.map { bytes -> UnsafeMutableBufferPointer<CChar> in
        let buffer = UnsafeMutableBufferPointer<CChar>.allocate(capacity: max(1, bytes.count))
        bytes.withUnsafeBytes { raw in
            if !raw.isEmpty { UnsafeMutableRawPointer(buffer.baseAddress!).copyMemory(from: raw.baseAddress!, byteCount: raw.count) }
        }
        return buffer
    }
    defer { for buffer in buffers { buffer.deallocate() } }
    var pointers: [UnsafePointer<CChar>?] = buffers.map { UnsafePointer($0.baseAddress) }
    let lengths = arguments.map { $0.count }
    return pointers.withUnsafeMutableBufferPointer { argv in
        lengths.withUnsafeBufferPointer { body(Int32(arguments.count), argv.baseAddress!, $0.baseAddress!) }
    }
}
