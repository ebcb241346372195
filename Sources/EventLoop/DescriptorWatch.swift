import CLinux

/// Watches a descriptor that something else owns (reads, writes and closes it: a C library's
/// socket, for instance), and tells that owner when the descriptor is readable or writable.
///
/// Unlike `SocketConnection`, the registration is level-triggered and carries only the
/// interest the owner asked for: an owner that reads a bounded amount per call (hiredis
/// reads 16 KiB) is told again while bytes remain, and an owner that wants nothing written
/// is not woken by a writable socket. Changing the interest is one `epoll_ctl(MOD)`.
///
/// An error or hang-up is reported even without interest (the kernel always reports those),
/// to the writable side when writing is wanted (a failed connect), otherwise to the readable
/// side, so that the owner finds the error and stops watching; it must, since a
/// level-triggered hang-up repeats until the descriptor leaves the set.
///
/// Loop-confined; `cancel()` before the owner closes the descriptor.
public final class DescriptorWatch: EpollHandler {
    public let descriptor: Int32
    public let loop: EventLoop
    public private(set) var wantsRead = false
    public private(set) var wantsWrite = false
    private var registration: EventLoop.Registration?
    private let onReadable: () -> Void
    private let onWritable: () -> Void

    /// Adds `descriptor` to `loop`'s epoll set with no interest yet; nil when epoll refuses it.
    public init?(descriptor: Int32, loop: EventLoop, onReadable: @escaping () -> Void, onWritable: @escaping () -> Void) {
        loop.assertInLoop()
        self.descriptor = descriptor
        self.loop = loop
        self.onReadable = onReadable
        self.onWritable = onWritable
        guard let registration = loop.register(descriptor, handler: self, events: 0) else { return nil }
        self.registration = registration
    }

    public var isWatching: Bool { registration != nil }

    /// Sets what the owner waits for.
    public func setInterest(read: Bool, write: Bool) {
        loop.assertInLoop()
        guard let registration, read != wantsRead || write != wantsWrite else { return }
        wantsRead = read
        wantsWrite = write
        var mask: UInt32 = 0
        if read { mask |= EPOLLIN.rawValue | EPOLLRDHUP.rawValue }
        if write { mask |= EPOLLOUT.rawValue }
        loop.modify(descriptor, registration, events: mask)
    }

    /// Leaves the epoll set; events of this descriptor still waiting in the loop's current
    /// batch are dropped. The owner may close the descriptor afterwards.
    public func cancel() {
        loop.assertInLoop()
        guard let registration else { return }
        self.registration = nil
        wantsRead = false
        wantsWrite = false
        loop.deregister(descriptor, registration)
    }

    func handleEpollEvents(_ events: UInt32) {
        let failed = events & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0
        let readable = events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue) != 0
        if wantsWrite && (events & EPOLLOUT.rawValue != 0 || failed) {
            onWritable()
        }
        // The write handler may have ended the watch.
        guard registration != nil else { return }
        if (wantsRead && readable) || (failed && !wantsWrite) {
            onReadable()
        }
    }
}
