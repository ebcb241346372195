import Dispatch

/// Accepts TCP connections and hands each to a loop of the group.
///
/// At `maxConnections` it stops accepting (connections wait in the kernel's backlog), and on
/// EMFILE/ENFILE it pauses for a moment instead of spinning: the process never dies of
/// running out of descriptors.
public final class Listener: @unchecked Sendable {
    public let address: SocketAddress
    private let fd: Int32
    private let group: EventLoopGroup
    private let acceptLoop: EventLoop
    private let source: DispatchSourceRead
    private let maxConnections: Int
    /// Dropped on `close()`: the handler often reaches back to the listener's owner.
    private var onAccept: ((SocketConnection) -> Void)?
    private let active = Locked(0)
    private var suspended = false
    private var closed = false
    private var started = false
    private var retryTimer: LoopTimer?

    /// `onAccept` runs on the new connection's loop; the receiver must call `connectionClosed()`
    /// when that connection ends, so the count of active connections stays right.
    public init(
        bindTo address: SocketAddress, group: EventLoopGroup, maxConnections: Int = 4096, backlog: Int32 = 511,
        onAccept: @escaping (SocketConnection) -> Void
    ) throws(SocketError) {
        let fd = try Socket.listen(on: address, backlog: backlog)
        self.fd = fd
        self.address = Socket.localAddress(fd) ?? address
        self.group = group
        self.acceptLoop = group.loops[0]
        self.maxConnections = maxConnections
        self.onAccept = onAccept
        source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: acceptLoop.queue)
        source.setEventHandler { [weak self] in self?.acceptPending() }
        source.setCancelHandler { Glibc.close(fd) }
    }

    public func start() {
        acceptLoop.executeSoon { [self] in
            guard !started, !closed else { return }
            started = true
            source.activate()
        }
    }

    public var activeConnections: Int { active.withLock { $0 } }

    /// Call once for every connection handed out, when it closes.
    public func connectionClosed() {
        let wasFull = active.withLock { count -> Bool in
            count -= 1
            return count + 1 >= maxConnections
        }
        if wasFull {
            acceptLoop.execute { [self] in
                if suspended && !closed && retryTimer == nil {
                    suspended = false
                    source.resume()
                }
            }
        }
    }

    /// Stops accepting and closes the listening socket; open connections are not touched.
    public func close() {
        acceptLoop.executeSoon { [self] in
            guard !closed else { return }
            closed = true
            onAccept = nil
            retryTimer?.cancel()
            retryTimer = nil
            source.cancel()
            if !started { started = true; source.activate() }
            if suspended { suspended = false; source.resume() }
        }
    }

    private func acceptPending() {
        while !closed, let onAccept {
            if active.withLock({ $0 >= maxConnections }) {
                pause(retryAfter: nil)
                return
            }
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let client = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(fd, $0, &length) }
            }
            if client < 0 {
                switch errno {
                case EAGAIN, EWOULDBLOCK: return
                case EINTR, ECONNABORTED: continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    // Out of descriptors or memory: back off and let connections close.
                    pause(retryAfter: .milliseconds(100))
                    return
                default:
                    return
                }
            }
            Socket.prepare(client)
            active.withLock { $0 += 1 }
            let loop = group.next()
            let connection = SocketConnection(fd: client, loop: loop, remoteAddress: SocketAddress(storage: storage, length: length))
            loop.execute { onAccept(connection) }
        }
    }

    private func pause(retryAfter delay: Duration?) {
        guard !suspended else { return }
        suspended = true
        source.suspend()
        if let delay {
            let timer = LoopTimer(loop: acceptLoop) { [weak self] in
                guard let self, !self.closed else { return }
                self.retryTimer = nil
                if self.suspended { self.suspended = false; self.source.resume() }
            }
            retryTimer = timer
            timer.schedule(after: delay)
        }
    }

    deinit {
        // The source must be cancelled (and running) before it is released.
        if !closed {
            closed = true
            source.cancel()
            if !started { source.activate() }   // an inactive source must not be released
            if suspended { source.resume() }
        }
    }
}
