import CLinux
/// A non-blocking TCP socket in its loop's epoll set, registered once, edge-triggered.
///
/// Edge-triggered rules this type keeps (an edge not acted upon never comes again):
/// - reads go until the kernel has nothing more (`EAGAIN`, or a short read when the peer has
///   not signalled its end: any later byte raises a new edge) or until the per-wake budget,
///   after which the connection continues in a later turn of the loop by itself;
/// - pausing reads is a flag; resuming reads again at once when the socket was not known to
///   be drained, because no new edge will announce the bytes already waiting;
/// - a write that does not fit keeps its tail and the next `EPOLLOUT` edge continues it;
/// - `EPOLLRDHUP`/`EPOLLHUP`/`EPOLLERR` end the connection after the data before them has
///   been delivered (reading goes on to the end of the stream or the error);
/// - closing deregisters and closes the descriptor at once; events of this socket still
///   waiting in the loop's current batch are dropped by the loop (see `EventLoop.deregister`).
/// `send(MSG_NOSIGNAL)`, so a vanished peer is EPIPE, not SIGPIPE.
public final class SocketConnection: ByteStream, EpollHandler, @unchecked Sendable {
    public let loop: EventLoop
    public var delegate: ByteStreamDelegate?
    public private(set) var remoteAddress: SocketAddress?

    private let fd: Int32
    private var registration: EventLoop.Registration?
    private var outbound = OutboundBuffer()
    private var state = State.open
    private var started = false
    private var readPaused = false
    /// Readable bytes (or the end) may be waiting: set by an `EPOLLIN`-class edge, cleared once a
    /// read finds the socket drained.
    private var readReady = false
    /// The peer signalled its end or an error: read on until the end instead of trusting a short read.
    private var peerEnded = false
    /// A continuation of reading is queued on the loop.
    private var readScheduled = false
    private var lingerTimer: LoopTimer?
    /// Set while a non-blocking connect is in progress.
    private var connectCompletion: ((SocketError?) -> Void)?

    private enum State { case open, closingAfterFlush, lingering, closed }

    /// Reads per wake before the connection yields to the others on its loop.
    static let readsPerWake = 4

    public var isOpen: Bool { state == .open }
    public var pendingWriteBytes: Int { outbound.count }

    /// Wraps an already connected (or accepted) non-blocking socket. It joins its loop's epoll
    /// set when first used on the loop (`start`, `write` or `close`).
    public init(fd: Int32, loop: EventLoop, remoteAddress: SocketAddress?) {
        self.fd = fd
        self.loop = loop
        self.remoteAddress = remoteAddress
    }

    // MARK: Connecting

    /// Opens a TCP connection to one address. `completion` runs on `loop` with the
    /// connection or the error; a connect that does not finish within `timeout` fails with ETIMEDOUT.
    public static func connect(
        to address: SocketAddress, loop: EventLoop, timeout: Duration,
        completion: @escaping (Result<SocketConnection, SocketError>) -> Void
    ) {
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            let error = SocketError("socket", errno: errno)
            loop.execute { completion(.failure(error)) }
            return
        }
        Socket.disableNagle(fd)
        let result = address.withSockaddr { Glibc.connect(fd, $0, $1) }
        let connectErrno = errno
        let connection = SocketConnection(fd: fd, loop: loop, remoteAddress: address)
        loop.execute {
            if result == 0 {
                completion(.success(connection))
                return
            }
            guard connectErrno == EINPROGRESS else {
                connection.abort()
                completion(.failure(SocketError("connect", errno: connectErrno)))
                return
            }
            let timer = LoopTimer(loop: loop) {
                guard connection.connectCompletion != nil else { return }
                connection.finishConnect(SocketError("connect", errno: ETIMEDOUT))
            }
            connection.connectCompletion = { error in
                timer.cancel()
                if let error {
                    connection.abort()
                    completion(.failure(error))
                } else {
                    completion(.success(connection))
                }
            }
            timer.schedule(after: timeout)
            // Registration reports writability (the connect finished) or an error as its first event.
            guard connection.ensureRegistered() else {
                connection.finishConnect(SocketError("epoll_ctl", errno: errno))
                return
            }
        }
    }

    private func finishConnect(_ error: SocketError?) {
        guard let completion = connectCompletion else { return }
        connectCompletion = nil
        completion(error)
    }

    // MARK: ByteStream

    public func start() {
        loop.assertInLoop()
        guard state == .open, !started else { return }
        started = true
        guard ensureRegistered() else {
            fail(SocketError("epoll_ctl", errno: errno))
            return
        }
        // Registered earlier (a write came first) with bytes already announced: read them.
        if readReady { scheduleRead() }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) {
        loop.assertInLoop()
        guard state == .open, bytes.count > 0 else { return }
        guard ensureRegistered() else {
            fail(SocketError("epoll_ctl", errno: errno))
            return
        }
        if outbound.isEmpty && connectCompletion == nil {
            // Fast path: straight to the kernel, buffer only the tail.
            let written = Socket.send(fd, bytes)
            if written < 0 {
                if errno != EAGAIN && errno != EWOULDBLOCK {
                    fail(SocketError("send", errno: errno))
                    return
                }
                outbound.append(bytes)
            } else if written < bytes.count {
                // A short send means the socket buffer filled up: the kernel raises an
                // `EPOLLOUT` edge when room appears.
                outbound.append(UnsafeRawBufferPointer(rebasing: bytes[written...]))
            }
        } else {
            outbound.append(bytes)
        }
    }

    public func pauseReading() {
        loop.assertInLoop()
        readPaused = true
    }

    public func resumeReading() {
        loop.assertInLoop()
        guard readPaused else { return }
        readPaused = false
        // Bytes (or the end) that arrived while paused raise no new edge: read them now. In a
        // later turn, not from inside the caller (often another stream's delegate callback).
        if readReady { scheduleRead() }
    }

    public func close() {
        loop.assertInLoop()
        guard state == .open else { return }
        if outbound.isEmpty {
            beginLingeringClose()
        } else {
            state = .closingAfterFlush
        }
    }

    public func abort() {
        loop.assertInLoop()
        teardown(error: .aborted, notify: false)
    }

    // MARK: Events

    func handleEpollEvents(_ events: UInt32) {
        if events & (EPOLLOUT.rawValue | EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 {
            if connectCompletion != nil || !outbound.isEmpty { handleWritable() }
        }
        if events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
            readReady = true
            if events & (EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 { peerEnded = true }
            if started && !readPaused && !readScheduled { handleReadable() }
        }
    }

    private func scheduleRead() {
        guard !readScheduled else { return }
        readScheduled = true
        loop.execute { [self] in
            readScheduled = false
            if started && !readPaused && readReady { handleReadable() }
        }
    }

    private func handleReadable() {
        guard state == .open || state == .lingering else { return }
        let buffer = loop.readBuffer
        var reads = 0
        while true {
            let count = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if count > 0 {
                if state == .open {
                    delegate?.streamDidRead(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
                    if state != .open && state != .lingering { return }
                }
                // else lingering: discard what the peer still sends after our close.
                if count < buffer.count && !peerEnded {
                    // Drained: a later byte raises a new edge.
                    readReady = false
                    return
                }
                if readPaused { return }   // resumeReading reads again
                reads += 1
                if reads == Self.readsPerWake {
                    // Yield to the other connections of this loop; no new edge will come for
                    // what is left, so continue by ourselves.
                    scheduleRead()
                    return
                }
            } else if count == 0 {
                readReady = false
                teardown(error: nil, notify: true)
                return
            } else {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    readReady = false
                    return
                }
                teardown(error: .socket(SocketError("read", errno: errno)), notify: true)
                return
            }
        }
    }

    private func handleWritable() {
        if connectCompletion != nil {
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
            finishConnect(error == 0 ? nil : SocketError("connect", errno: error))
            // The edge that announced the connection will not come again: send what waits now.
            if error != 0 || state == .closed || outbound.isEmpty { return }
        }
        guard state == .open || state == .closingAfterFlush else { return }
        while !outbound.isEmpty {
            let written = outbound.withReadableBytes { Socket.send(fd, $0) }
            if written < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK { return }
                if errno == EINTR { continue }
                fail(SocketError("send", errno: errno))
                return
            }
            let wasPartial = written < outbound.count
            outbound.consume(written)
            if wasPartial { return }   // the buffer filled again: wait for the next edge
        }
        if state == .closingAfterFlush {
            beginLingeringClose()
        } else {
            delegate?.streamDidDrain()
        }
    }

    // MARK: Registration

    /// Joins the loop's epoll set on first use; false when the kernel refused.
    private func ensureRegistered() -> Bool {
        if registration != nil { return true }
        registration = loop.register(fd, handler: self)
        return registration != nil
    }

    // MARK: Closing

    /// Half-closes our side and discards what the peer still sends for a moment before the
    /// real close: closing a socket with unread input sends a RST, which can destroy the
    /// response (say, a 400) the peer has not read yet (the "lingering close" of nginx and Apache).
    private func beginLingeringClose() {
        state = .lingering
        shutdown(fd, Int32(SHUT_WR))
        let delegate = self.delegate
        self.delegate = nil
        delegate?.streamDidClose(nil)
        guard state == .lingering else { return }
        guard ensureRegistered() else {
            teardown(error: nil, notify: false)
            return
        }
        started = true
        readPaused = false
        readReady = true   // not known to be drained: look once
        scheduleRead()
        let timer = LoopTimer(loop: loop) { [weak self] in self?.teardown(error: nil, notify: false) }
        timer.schedule(after: .seconds(2))
        lingerTimer = timer
    }

    private func fail(_ error: SocketError) {
        teardown(error: .socket(error), notify: true)
    }

    private func teardown(error: StreamError?, notify: Bool) {
        guard state != .closed else { return }
        let wasLingering = state == .lingering
        state = .closed
        lingerTimer?.cancel()
        lingerTimer = nil
        outbound = OutboundBuffer()
        if let registration {
            loop.deregister(fd, registration)
            self.registration = nil
        }
        Glibc.close(fd)
        if let completion = connectCompletion {
            connectCompletion = nil
            completion(SocketError("connect", errno: ECONNABORTED))
        }
        let delegate = self.delegate
        self.delegate = nil
        if notify && !wasLingering { delegate?.streamDidClose(error) }
    }

    deinit {
        // Only a connection never used on its loop (and never closed) gets here with its
        // descriptor open: a registered one is held by its loop until teardown.
        if state != .closed { Glibc.close(fd) }
    }
}

/// Bytes waiting for the kernel: one growable array with a read offset, compacted lazily.
struct OutboundBuffer {
    private var storage: [UInt8] = []
    private var start = 0

    var count: Int { storage.count - start }
    var isEmpty: Bool { start == storage.count }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        if start > 0 && start == storage.count {
            storage.removeAll(keepingCapacity: true)
            start = 0
        }
        storage.append(contentsOf: bytes)
    }

    mutating func consume(_ n: Int) {
        start += n
        if start == storage.count {
            storage.removeAll(keepingCapacity: storage.capacity <= 256 * 1024)
            start = 0
        } else if start > 64 * 1024 && start * 2 > storage.count {
            storage.removeFirst(start)
            start = 0
        }
    }

    func withReadableBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        storage.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[start...])) }
    }
}
