import Dispatch

/// A non-blocking TCP socket watched by one read and one write `DispatchSource`.
///
/// Rules this type keeps (each learned from a libdispatch or Foundation bug):
/// - both sources are created once and live as long as the fd; the write source is armed
///   and disarmed with `resume()`/`suspend()`, kept balanced, and resumed before cancel;
/// - the fd is closed only in the cancel handler, after both sources are cancelled;
/// - on EOF the sources are cancelled at once (an armed source on a dead fd spins);
/// - reads drain the socket until EAGAIN; a short write keeps its tail and arms the
///   write source; `send(MSG_NOSIGNAL)` so a vanished peer is EPIPE, not SIGPIPE.
public final class SocketConnection: ByteStream, @unchecked Sendable {
    public let loop: EventLoop
    public var delegate: ByteStreamDelegate?
    public private(set) var remoteAddress: SocketAddress?

    private let fd: Int32
    private let readSource: DispatchSourceRead
    private let writeSource: DispatchSourceWrite
    private var readState = SourceState.inactive
    private var writeState = SourceState.inactive
    private var outbound = OutboundBuffer()
    private var state = State.open
    private var readPaused = false
    private var pendingCancels = 2
    private var lingerTimer: LoopTimer?
    /// Set while a non-blocking connect is in progress.
    private var connectCompletion: ((SocketError?) -> Void)?

    private enum SourceState { case inactive, running, suspended }
    private enum State { case open, closingAfterFlush, lingering, closed }

    public var isOpen: Bool { state == .open }
    public var pendingWriteBytes: Int { outbound.count }

    /// Wraps an already connected (or accepted) non-blocking socket.
    public init(fd: Int32, loop: EventLoop, remoteAddress: SocketAddress?) {
        self.fd = fd
        self.loop = loop
        self.remoteAddress = remoteAddress
        readSource = DispatchSource.makeReadSource(fileDescriptor: fd, queue: loop.queue)
        writeSource = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: loop.queue)
        // The handlers hold the connection strongly: an open socket keeps its connection
        // alive; libdispatch drops the handlers after cancellation, which breaks the cycle.
        readSource.setEventHandler { self.handleReadable() }
        writeSource.setEventHandler { self.handleWritable() }
        let cancelHandler = { [fd] in
            self.pendingCancels -= 1
            if self.pendingCancels == 0 { self.loop.closeDescriptorLater(fd) }
        }
        readSource.setCancelHandler(handler: cancelHandler)
        writeSource.setCancelHandler(handler: cancelHandler)
    }

    // MARK: Connecting

    /// Opens a TCP connection to one address. `completion` runs on `loop` with the
    /// connection or the error; a connect that does not finish within `timeout` fails with ETIMEDOUT.
    public static func connect(
        to address: SocketAddress, loop: EventLoop, timeout: Duration,
        completion: @escaping (Result<SocketConnection, SocketError>) -> Void
    ) {
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else {
            let error = SocketError("socket", errno: errno)
            loop.execute { completion(.failure(error)) }
            return
        }
        Socket.prepare(fd)
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
            connection.armWrite()
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
        guard state == .open, readState == .inactive else { return }
        readState = .running
        readSource.activate()
    }

    public func write(_ bytes: UnsafeRawBufferPointer) {
        loop.assertInLoop()
        guard state == .open, bytes.count > 0 else { return }
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
                outbound.append(UnsafeRawBufferPointer(rebasing: bytes[written...]))
            }
        } else {
            outbound.append(bytes)
        }
        if !outbound.isEmpty { armWrite() }
    }

    public func pauseReading() {
        loop.assertInLoop()
        guard !readPaused else { return }
        readPaused = true
        if readState == .running {
            readSource.suspend()
            readState = .suspended
        }
    }

    public func resumeReading() {
        loop.assertInLoop()
        guard readPaused else { return }
        readPaused = false
        if readState == .suspended && state == .open {
            readSource.resume()
            readState = .running
            // Bytes (or a reset) that arrived while paused raise no new readiness edge: look now.
            loop.execute { [self] in
                if !readPaused && readState == .running { handleReadable() }
            }
        }
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

    private func handleReadable() {
        guard state == .open || state == .lingering else { return }
        let buffer = loop.readBuffer
        // Read until EAGAIN: the kernel may report readiness as an edge, so a short read is no
        // proof the socket is drained (a reset that lands right after some data would otherwise
        // go unnoticed and the connection would live on). After a few buffers, yield to the
        // other connections on this loop and continue in a later turn.
        for _ in 0..<8 {
            let count = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if count > 0 {
                if state == .lingering { continue }   // discarding after our close
                delegate?.streamDidRead(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
                if state != .open && state != .lingering { return }
                if readPaused { return }   // resumeReading reads again
            } else if count == 0 {
                teardown(error: nil, notify: true)
                return
            } else {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return }
                teardown(error: .socket(SocketError("read", errno: errno)), notify: true)
                return
            }
        }
        loop.execute { [self] in handleReadable() }
    }

    private func handleWritable() {
        if connectCompletion != nil {
            disarmWrite()
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
            finishConnect(error == 0 ? nil : SocketError("connect", errno: error))
            if error == 0 && !outbound.isEmpty { armWrite() }
            return
        }
        guard state == .open || state == .closingAfterFlush else {
            disarmWrite()
            return
        }
        while !outbound.isEmpty {
            let written = outbound.withReadableBytes { Socket.send(fd, $0) }
            if written < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK { return }
                if errno == EINTR { continue }
                fail(SocketError("send", errno: errno))
                return
            }
            outbound.consume(written)
        }
        disarmWrite()
        if state == .closingAfterFlush {
            beginLingeringClose()
        } else {
            delegate?.streamDidDrain()
        }
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
        if readPaused {
            readPaused = false
            if readState == .suspended { readSource.resume(); readState = .running }
        }
        if readState == .inactive { readState = .running; readSource.activate() }
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
        if let completion = connectCompletion {
            connectCompletion = nil
            completion(SocketError("connect", errno: ECONNABORTED))
        }
        // Cancel both sources; a suspended or never-activated source must run again for
        // its cancel handler to fire (and to be released safely).
        readSource.cancel()
        switch readState {
        case .inactive: readSource.activate()
        case .suspended: readSource.resume()
        case .running: break
        }
        readState = .running
        writeSource.cancel()
        switch writeState {
        case .inactive: writeSource.activate()
        case .suspended: writeSource.resume()
        case .running: break
        }
        writeState = .running
        let delegate = self.delegate
        self.delegate = nil
        if notify && !wasLingering { delegate?.streamDidClose(error) }
    }

    private func armWrite() {
        switch writeState {
        case .inactive: writeState = .running; writeSource.activate()
        case .suspended: writeState = .running; writeSource.resume()
        case .running: break
        }
    }

    private func disarmWrite() {
        if writeState == .running && state != .closed {
            writeSource.suspend()
            writeState = .suspended
        }
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
