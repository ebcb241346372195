import CLinux
/// Accepts TCP connections and hands each to a loop of the group.
///
/// The listening socket sits in the first loop's epoll set (edge-triggered: every accept round
/// goes until `EAGAIN`, or until its budget and then on in a later turn). At `maxConnections`
/// it stops accepting (connections wait in the kernel's backlog), and on EMFILE/ENFILE it
/// pauses for a moment instead of spinning: the process never dies of running out of descriptors.
public final class Listener: @unchecked Sendable {
    public let address: SocketAddress
    private let fd: Int32
    private let group: EventLoopGroup
    private let acceptLoop: EventLoop
    private let maxConnections: Int
    /// Dropped on `close()`: the handler often reaches back to the listener's owner.
    private var onAccept: ((SocketConnection) -> Void)?
    private let active = Locked(0)
    /// The loop-confined part: registration and accepting. The loop holds it while it is
    /// registered; it holds the listener weakly, so the owner of the listener decides its life.
    private var events: ListenerEvents?
    private var paused = false
    private var closed = false
    private var started = false
    private var acceptScheduled = false
    private var retryTimer: LoopTimer?

    /// Accepts per round before the accept loop yields to its other work.
    static let acceptsPerRound = 64

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
    }

    public func start() {
        acceptLoop.executeSoon { [self] in
            guard !started, !closed else { return }
            started = true
            let events = ListenerEvents(self)
            guard let registration = acceptLoop.register(fd, handler: events, events: EventLoop.listenerEvents) else { return }
            events.registration = registration
            self.events = events
            // Connections already in the backlog are reported by the registration itself.
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
                if paused && !closed && retryTimer == nil {
                    paused = false
                    // Connections that waited in the backlog raise no new edge: accept them now.
                    acceptPending()
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
            if let events, let registration = events.registration {
                acceptLoop.deregister(fd, registration)
                events.registration = nil
            }
            events = nil
            Glibc.close(fd)
        }
    }

    fileprivate func acceptPending() {
        var accepted = 0
        while !closed, !paused, let onAccept {
            if active.withLock({ $0 >= maxConnections }) {
                paused = true
                return
            }
            if accepted == Self.acceptsPerRound {
                scheduleAccept()
                return
            }
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let client = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    accept4(fd, $0, &length, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
                }
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
            accepted += 1
            Socket.disableNagle(client)
            active.withLock { $0 += 1 }
            let loop = group.next()
            let connection = SocketConnection(fd: client, loop: loop, remoteAddress: SocketAddress(storage: storage, length: length))
            loop.executeSoon { onAccept(connection) }
        }
    }

    private func scheduleAccept() {
        guard !acceptScheduled else { return }
        acceptScheduled = true
        acceptLoop.execute { [self] in
            acceptScheduled = false
            acceptPending()
        }
    }

    private func pause(retryAfter delay: Duration) {
        guard !paused else { return }
        paused = true
        let timer = LoopTimer(loop: acceptLoop) { [weak self] in
            guard let self, !self.closed else { return }
            self.retryTimer = nil
            if self.paused {
                self.paused = false
                self.acceptPending()
            }
        }
        retryTimer = timer
        timer.schedule(after: delay)
    }

    deinit {
        guard !closed else { return }
        // Never closed: leave the loop's set and close, on the loop that owns the registration.
        let fd = self.fd
        let loop = acceptLoop
        let registration = events?.registration
        loop.execute {
            if let registration { loop.deregister(fd, registration) }
            Glibc.close(fd)
        }
    }
}

/// The listener's entry in its loop's epoll set.
private final class ListenerEvents: EpollHandler {
    weak var listener: Listener?
    var registration: EventLoop.Registration?
    init(_ listener: Listener) { self.listener = listener }
    func handleEpollEvents(_ events: UInt32) { listener?.acceptPending() }
}
