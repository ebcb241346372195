import Dispatch
import Glibc

/// One serial queue and the scratch memory its connections share.
///
/// Every socket, timer and protocol state machine belongs to exactly one loop and is only
/// touched on its queue, so connection state needs no locks. Loops target one concurrent
/// queue, so the work of different loops runs on different cores.
public final class EventLoop: @unchecked Sendable {
    public let queue: DispatchQueue
    public let index: Int

    /// Read buffer shared by every connection on this loop: a read is consumed synchronously
    /// by the connection's delegate, so one buffer per loop is enough, and idle connections
    /// cost no buffer memory at all.
    let readBuffer: UnsafeMutableRawBufferPointer

    private let queueKey = DispatchSpecificKey<ObjectIdentifier>()

    /// How often due timers are looked for. Every timeout in the proxy is a second or more,
    /// so a coarse tick costs no precision that matters.
    public static let timerResolution: Duration = .milliseconds(25)
    /// Armed timers (loop-confined). They hold their timer alive until it fires or is disarmed.
    private var armedTimers = Set<LoopTimer>()
    private let tick: DispatchSourceTimer
    private var tickRunning = false
    /// Descriptors whose sources are cancelled, closed a tick or two later rather than at
    /// once. libdispatch on Linux keeps its epoll bookkeeping per descriptor number and may
    /// still hold the old entry for a moment after the cancel handlers ran; a number the
    /// kernel hands straight to a new connection would then meet that stale entry (the
    /// muxnote reuse of libdispatch issue 833, and crashes on its manager thread). Keeping
    /// the number taken for 25–50 ms lets the old entry go first.
    private var descriptorsToClose: [Int32] = []
    private var descriptorsClosingNext: [Int32] = []

    init(index: Int, target: DispatchQueue?, readBufferSize: Int) {
        self.index = index
        self.queue = DispatchQueue(label: "floriday-proxy.loop.\(index)", qos: .userInitiated, target: target)
        self.readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: readBufferSize, alignment: 16)
        self.tick = DispatchSource.makeTimerSource(flags: [], queue: queue)
        queue.setSpecific(key: queueKey, value: ObjectIdentifier(self))
        tick.setEventHandler { [weak self] in self?.fireDueTimers() }
        tick.schedule(deadline: .distantFuture, repeating: .never)
        tick.activate()
    }

    // MARK: Timers (see LoopTimer)

    func arm(_ timer: LoopTimer) {
        assertInLoop()
        armedTimers.insert(timer)
        startTick()
    }

    /// Closes `fd` after the next full tick (see `descriptorsToClose`).
    func closeDescriptorLater(_ fd: Int32) {
        assertInLoop()
        descriptorsClosingNext.append(fd)
        startTick()
    }

    private func startTick() {
        if !tickRunning {
            // The one time the tick source is touched: when the first timer arms.
            tickRunning = true
            tick.schedule(deadline: .now() + Self.timerResolution.dispatchInterval, repeating: Self.timerResolution.dispatchInterval, leeway: .milliseconds(5))
        }
    }

    func disarm(_ timer: LoopTimer) {
        assertInLoop()
        armedTimers.remove(timer)
    }

    private func fireDueTimers() {
        if !descriptorsToClose.isEmpty || !descriptorsClosingNext.isEmpty {
            for fd in descriptorsToClose { Glibc.close(fd) }
            descriptorsToClose = descriptorsClosingNext
            descriptorsClosingNext = []
        }
        guard !armedTimers.isEmpty || !descriptorsToClose.isEmpty else {
            // Nothing armed: park the tick until a timer arms again.
            tickRunning = false
            tick.schedule(deadline: .distantFuture, repeating: .never)
            return
        }
        let now = DispatchTime.now().uptimeNanoseconds
        var due: [LoopTimer] = []
        for timer in armedTimers where timer.deadline <= now { due.append(timer) }
        for timer in due {
            armedTimers.remove(timer)
            timer.fire()
        }
    }

    deinit {
        tick.cancel()
        // Nothing can reach this loop any more, so its armed timers can never fire; their
        // handlers may hold objects that hold the timers: let go of them.
        for timer in armedTimers { timer.loopGone() }
        for fd in descriptorsToClose + descriptorsClosingNext { Glibc.close(fd) }
        readBuffer.deallocate()
    }

    /// True when the caller runs on this loop's queue.
    public var inLoop: Bool { DispatchQueue.getSpecific(key: queueKey) == ObjectIdentifier(self) }

    /// Debug-build check that loop-confined state is touched on its own queue.
    @inline(__always)
    public func assertInLoop(file: StaticString = #fileID, line: UInt = #line) {
        #if DEBUG
        dispatchPrecondition(condition: .onQueue(queue))
        #endif
    }

    /// Enqueues `work` on the loop.
    ///
    /// The closure is not required to be `Sendable`: loop-confined objects are handed
    /// between queues only through this call, and from then on touched on this queue alone
    /// (checked by `assertInLoop` in debug builds). This is the one place the project
    /// steps outside the compiler's sendability checking.
    public func execute(_ work: @escaping () -> Void) {
        let box = UncheckedSendable(work)
        queue.async { box.value() }
    }

    /// Runs `work` now when already on the loop, else enqueues it.
    public func executeSoon(_ work: @escaping () -> Void) {
        if inLoop { work() } else { execute(work) }
    }

    /// A one-shot timer; see `LoopTimer` for a reusable one.
    @discardableResult
    public func schedule(after delay: Duration, _ work: @escaping () -> Void) -> LoopTimer {
        let timer = LoopTimer(loop: self, handler: work)
        timer.schedule(after: delay)
        return timer
    }
}

/// A fixed set of loops, one per core by default.
public final class EventLoopGroup: @unchecked Sendable {
    public let loops: [EventLoop]
    private let counter = AtomicCounter()

    public init(loopCount: Int = System.coreCount, readBufferSize: Int = 64 * 1024) {
        let target = DispatchQueue(label: "floriday-proxy.loops", qos: .userInitiated, attributes: .concurrent)
        loops = (0..<max(1, loopCount)).map { EventLoop(index: $0, target: target, readBufferSize: readBufferSize) }
    }

    /// Round-robin choice of a loop for a new connection.
    public func next() -> EventLoop {
        loops[counter.increment() % loops.count]
    }
}

public enum System {
    public static var coreCount: Int {
        #if os(Linux)
        return Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        #else
        return Int(sysconf(_SC_NPROCESSORS_ONLN))
        #endif
    }
}
