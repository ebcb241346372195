import CLinux
import Dispatch
import Glibc
#if EVENTLOOP_THREAD_DRIVEN
import Foundation
#endif

/// One serial queue, the epoll set of its sockets, its timers, and the scratch memory its
/// connections share.
///
/// Every socket, timer and protocol state machine belongs to exactly one loop and is only
/// touched on its queue, so connection state needs no locks. Loops target one concurrent
/// queue, so the work of different loops runs on different cores.
///
/// **How events arrive.** Dispatch drives the loop, but it never sees a socket: the loop owns
/// an epoll set (every socket registered once, edge-triggered) and watches the epoll
/// descriptor with a single `DispatchSourceRead` on its queue. An epoll descriptor is readable
/// while any socket in its set is ready; the source's handler drains the set with
/// `epoll_wait(…, 0)` under a budget. libdispatch keeps its own registration of that one
/// descriptor level-triggered and re-arms it after the handler, so events left over when the
/// budget runs out fire the source again. Why not a source per socket: libdispatch's Linux
/// backend pays a manager-thread wake-up, an `ioctl`, a worker hand-off and one or two
/// `epoll_ctl` re-arms for every event of every source, and its per-descriptor bookkeeping
/// breaks when descriptor numbers are reused quickly (swift-corelibs-libdispatch issues 833
/// and 949). With one source per loop it sees a fixed handful of descriptors for the life of
/// the process.
public final class EventLoop: @unchecked Sendable {
    public let queue: DispatchQueue
    public let index: Int

    /// Read buffer shared by every connection on this loop: a read is consumed synchronously
    /// by the connection's delegate, so one buffer per loop is enough, and idle connections
    /// cost no buffer memory at all.
    let readBuffer: UnsafeMutableRawBufferPointer

    private let queueKey = DispatchSpecificKey<ObjectIdentifier>()

    // MARK: epoll state (loop-confined)

    let epollDescriptor: Int32
    #if EVENTLOOP_THREAD_DRIVEN
    /// The measured alternative (see bench/NOTES.md; not shipped): a thread per loop blocks in
    /// `epoll_wait` itself and runs what it finds on the loop's queue with `queue.sync` (on
    /// the calling thread, as the queue is otherwise idle); work from other threads comes
    /// through a locked list and an eventfd in the set.
    private let wakeDescriptor: Int32
    private let pendingWork = Locked<(work: [() -> Void], sleeping: Bool)>(([], false))
    #else
    private let epollSource: DispatchSourceRead
    #endif
    /// Registered sockets by slot. `epoll_data` carries the slot and its generation, so an
    /// event that was read from the kernel before its socket was deregistered (later in the
    /// same batch) finds another generation, or an empty slot, and is dropped: it can neither
    /// reach a freed object nor a new connection that got the same descriptor number.
    private var slots: [Slot] = []
    private var freeSlots: [Int32] = []
    /// Handlers deregistered during the current batch stay alive until it ends.
    private var retiredDuringBatch: [EpollHandler] = []
    private let events: UnsafeMutablePointer<epoll_event>
    private static let eventsPerWait: Int32 = 256
    /// Events handled per wake of the source before the loop yields to queued work
    /// (`execute`, timers); what is left still makes the epoll descriptor readable.
    static let eventsPerWake = 1024
    /// Registered sockets now, and the most since memory was last given back (see `trimMemoryIfQuiet`).
    private var registeredCount = 0
    private var registeredPeak = 0

    struct Slot {
        var generation: UInt32 = 0
        var handler: EpollHandler?
    }

    /// Names a registration: the slot and its generation, as stored in `epoll_data.u64`.
    struct Registration {
        let slot: Int32
        let generation: UInt32
        var token: UInt64 { UInt64(generation) << 32 | UInt64(UInt32(bitPattern: slot)) }
    }

    // MARK: Timers (loop-confined)

    /// How often due timers are looked for. Every timeout in the proxy is a second or more,
    /// so a coarse tick costs no precision that matters.
    public static let timerResolution: Duration = .milliseconds(25)
    /// Armed timers; each knows its index here, so arming and disarming cost O(1).
    /// The array holds each armed timer alive until it fires or is disarmed.
    private var armedTimers: [LoopTimer] = []
    private let tick: DispatchSourceTimer
    private var tickRunning = false
    /// Where "now" comes from for this loop's timers.
    public let clock: any MonotonicClock

    init(index: Int, target: DispatchQueue?, readBufferSize: Int, clock: any MonotonicClock = SystemClock()) {
        self.index = index
        self.clock = clock
        self.queue = DispatchQueue(label: "floriday-proxy.loop.\(index)", qos: .userInitiated, target: target)
        self.readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: readBufferSize, alignment: 16)
        self.events = .allocate(capacity: Int(Self.eventsPerWait))
        let epollDescriptor = epoll_create1(Int32(EPOLL_CLOEXEC))
        precondition(epollDescriptor >= 0, "epoll_create1 failed: errno \(errno)")
        self.epollDescriptor = epollDescriptor
        self.tick = DispatchSource.makeTimerSource(flags: [], queue: queue)
        #if EVENTLOOP_THREAD_DRIVEN
        wakeDescriptor = eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC))
        var wake = epoll_event()
        wake.events = EPOLLIN.rawValue
        wake.data.u64 = UInt64.max
        _ = epoll_ctl(epollDescriptor, EPOLL_CTL_ADD, wakeDescriptor, &wake)
        queue.setSpecific(key: queueKey, value: ObjectIdentifier(self))
        let thread = Thread { [weak self] in
            while let loop = self { loop.waitAndRun() }
        }
        thread.name = "floriday-proxy.loop.\(index)"
        thread.start()
        #else
        self.epollSource = DispatchSource.makeReadSource(fileDescriptor: epollDescriptor, queue: queue)
        queue.setSpecific(key: queueKey, value: ObjectIdentifier(self))
        // Weak: a handler may already be on its way when the last reference goes (deinit cancels
        // the source, but cannot stop an invocation that started on another thread).
        epollSource.setEventHandler { [weak self] in self?.drainEvents() }
        // The descriptor closes only after libdispatch has let go of it.
        epollSource.setCancelHandler { Glibc.close(epollDescriptor) }
        epollSource.activate()
        #endif
        tick.setEventHandler { [weak self] in self?.fireDueTimers() }
        tick.schedule(deadline: .distantFuture, repeating: .never)
        tick.activate()
    }

    deinit {
        #if !EVENTLOOP_THREAD_DRIVEN
        epollSource.cancel()
        #endif
        tick.cancel()
        // Nothing can reach this loop any more, so its armed timers can never fire; their
        // handlers may hold objects that hold the timers: let go of them.
        for timer in armedTimers { timer.loopGone() }
        events.deallocate()
        readBuffer.deallocate()
    }

    // MARK: Registering sockets

    /// Adds `fd` to the loop's epoll set, edge-triggered for reading, writing and the peer's
    /// end (`EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET`, as nginx registers connections).
    /// Registration reports the descriptor's current readiness as a first event. The loop
    /// holds `handler` until `deregister`.
    func register(_ fd: Int32, handler: EpollHandler, events mask: UInt32 = EventLoop.connectionEvents) -> Registration? {
        assertInLoop()
        let slot: Int32
        if let free = freeSlots.popLast() {
            slot = free
        } else {
            slot = Int32(slots.count)
            slots.append(Slot())
        }
        slots[Int(slot)].generation &+= 1
        slots[Int(slot)].handler = handler
        let registration = Registration(slot: slot, generation: slots[Int(slot)].generation)
        var event = epoll_event()
        event.events = mask
        event.data.u64 = registration.token
        guard epoll_ctl(epollDescriptor, EPOLL_CTL_ADD, fd, &event) == 0 else {
            slots[Int(slot)].handler = nil
            freeSlots.append(slot)
            return nil
        }
        registeredCount += 1
        if registeredCount > registeredPeak { registeredPeak = registeredCount }
        return registration
    }

    /// Removes `fd` from the set; the caller closes it afterwards (at once: the kernel is the
    /// only one that knew it). Events of this registration still waiting in the current batch
    /// are dropped.
    func deregister(_ fd: Int32, _ registration: Registration) {
        assertInLoop()
        _ = epoll_ctl(epollDescriptor, EPOLL_CTL_DEL, fd, nil)
        let index = Int(registration.slot)
        guard slots[index].generation == registration.generation, let handler = slots[index].handler else { return }
        slots[index].handler = nil
        freeSlots.append(registration.slot)
        registeredCount -= 1
        if draining { retiredDuringBatch.append(handler) }
    }

    /// Changes the events a registered descriptor is watched for (`DescriptorWatch`).
    func modify(_ fd: Int32, _ registration: Registration, events mask: UInt32) {
        assertInLoop()
        var event = epoll_event()
        event.events = mask
        event.data.u64 = registration.token
        _ = epoll_ctl(epollDescriptor, EPOLL_CTL_MOD, fd, &event)
    }

    static let connectionEvents: UInt32 = EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue | EPOLLET.rawValue
    static let listenerEvents: UInt32 = EPOLLIN.rawValue | EPOLLET.rawValue

    private var draining = false
    /// Events that arrived for a registration already gone (closed earlier in their batch).
    private(set) var staleEventsDropped = 0

    /// The epoll descriptor's source fired: deliver what is ready, within the budget.
    private func drainEvents(alreadyWaited first: Int32 = -1) {
        draining = true
        var handled = 0
        var count = first
        while handled < Self.eventsPerWake {
            if count < 0 { count = epoll_wait(epollDescriptor, events, Self.eventsPerWait, 0) }
            if count <= 0 { break }
            for i in 0..<Int(count) {
                let event = events[i]
                let token = event.data.u64
                #if EVENTLOOP_THREAD_DRIVEN
                if token == UInt64.max {   // the wake-up eventfd
                    var counter: UInt64 = 0
                    _ = eventfd_read(wakeDescriptor, &counter)
                    continue
                }
                #endif
                let slot = Int(UInt32(truncatingIfNeeded: token))
                guard slot < slots.count, slots[slot].generation == UInt32(truncatingIfNeeded: token >> 32),
                      let handler = slots[slot].handler else {
                    staleEventsDropped &+= 1
                    continue
                }
                handler.handleEpollEvents(event.events)
            }
            handled += Int(count)
            retiredDuringBatch.removeAll(keepingCapacity: true)
            // A short batch emptied the ready list; asking again would only cost a system call.
            if count < Self.eventsPerWait { break }
            count = -1
        }
        runEndOfTurnWork()
        retiredDuringBatch.removeAll(keepingCapacity: true)
        draining = false
    }

    // MARK: The end of a turn

    /// Work waiting for the end of the current turn (`scheduleAtEndOfTurn`).
    private var endOfTurnWork: [EndOfTurnWork] = []
    private var endOfTurnQueued = false

    /// Runs `work.runAtEndOfTurn()` once the events of the current turn are handled: after the
    /// batch of epoll events being delivered, or, when called outside one (from a timer or an
    /// `execute` block), on the loop's next turn. This is where held output is written: bytes
    /// produced by several events of one turn (a request head and its body, the frames of many
    /// HTTP/2 streams) leave in one write, and unlike `execute` it costs neither a closure nor
    /// a queue hand-off. The caller keeps its own "scheduled" flag: one call per turn.
    public func scheduleAtEndOfTurn(_ work: EndOfTurnWork) {
        assertInLoop()
        endOfTurnWork.append(work)
        if !draining && !endOfTurnQueued {
            endOfTurnQueued = true
            execute { [self] in
                endOfTurnQueued = false
                runEndOfTurnWork()
            }
        }
    }

    private func runEndOfTurnWork() {
        // Work may schedule more work (a flush that completes a response starts the next one).
        var index = 0
        while index < endOfTurnWork.count {
            let work = endOfTurnWork[index]
            work.runAtEndOfTurn()
            index += 1
        }
        endOfTurnWork.removeAll(keepingCapacity: true)
    }

    // MARK: Timers (see LoopTimer)

    func arm(_ timer: LoopTimer) {
        assertInLoop()
        timer.armedIndex = armedTimers.count
        armedTimers.append(timer)
        startTick()
    }

    func disarm(_ timer: LoopTimer) {
        assertInLoop()
        let index = timer.armedIndex
        guard index >= 0, index < armedTimers.count, armedTimers[index] === timer else { return }
        let last = armedTimers.removeLast()
        if index < armedTimers.count {
            armedTimers[index] = last
            last.armedIndex = index
        }
        timer.armedIndex = -1
    }

    private func startTick() {
        if !tickRunning {
            // The one time the tick source is touched: when the first timer arms.
            tickRunning = true
            tick.schedule(deadline: .now() + Self.timerResolution.dispatchInterval, repeating: Self.timerResolution.dispatchInterval, leeway: .milliseconds(5))
        }
    }

    private func fireDueTimers() {
        trimMemoryIfQuiet()
        guard !armedTimers.isEmpty else {
            // Nothing armed: park the tick until a timer arms again.
            tickRunning = false
            tick.schedule(deadline: .distantFuture, repeating: .never)
            return
        }
        let now = clock.nanoseconds
        var due: [LoopTimer] = []
        for timer in armedTimers where timer.deadline <= now { due.append(timer) }
        // A handler may move or stop another timer of the same batch: look again before firing.
        for timer in due where timer.isArmed && timer.deadline <= now {
            disarm(timer)
            timer.fire()
        }
    }

    /// Test hook: fire what is due by the loop's clock now, without waiting for the tick.
    public func fireDueTimersNow() {
        assertInLoop()
        fireDueTimers()
    }

    /// After a burst of connections has gone, give the freed memory back to the system:
    /// glibc keeps it in its arenas otherwise, and the resident size would stay at the peak.
    /// Checked from the timer tick, never on the request path.
    private func trimMemoryIfQuiet() {
        if registeredPeak >= 256 && registeredCount * 4 <= registeredPeak {
            registeredPeak = registeredCount
            _ = malloc_trim(0)
        }
    }

    // MARK: Running work

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
        #if EVENTLOOP_THREAD_DRIVEN
        let wake = pendingWork.withLock { pending -> Bool in
            pending.work.append(work)
            defer { pending.sleeping = false }
            return pending.sleeping
        }
        if wake { _ = eventfd_write(wakeDescriptor, 1) }
        #else
        let box = UncheckedSendable(work)
        queue.async { box.value() }
        #endif
    }

    #if EVENTLOOP_THREAD_DRIVEN
    /// One round of the loop thread: block until a socket is ready or work arrives, then run
    /// both on the queue.
    private func waitAndRun() {
        let sleep = pendingWork.withLock { pending -> Bool in
            pending.sleeping = pending.work.isEmpty
            return pending.sleeping
        }
        // Timers keep their tick source; 50 ms caps the wait so a stopped loop is noticed.
        let count = epoll_wait(epollDescriptor, events, Self.eventsPerWait, sleep ? 50 : 0)
        let box = UncheckedSendable(self)
        queue.sync {
            let loop = box.value
            if count > 0 { loop.drainEvents(alreadyWaited: count) }
            let work = loop.pendingWork.withLock { pending -> [() -> Void] in
                defer { pending.work.removeAll() }
                return pending.work
            }
            for item in work { item() }
        }
    }
    #endif

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

    /// Sockets registered on this loop now (for tests and metrics; read on the loop).
    public var registeredSockets: Int {
        assertInLoop()
        return registeredCount
    }
}

/// Something that runs once at the end of its loop's turn (`EventLoop.scheduleAtEndOfTurn`).
public protocol EndOfTurnWork: AnyObject {
    func runAtEndOfTurn()
}

/// Receives a registered descriptor's epoll events on its loop.
protocol EpollHandler: AnyObject {
    /// `events` holds the `EPOLL*` bits the kernel reported.
    func handleEpollEvents(_ events: UInt32)
}

/// A fixed set of loops, one per core by default.
public final class EventLoopGroup: @unchecked Sendable {
    public let loops: [EventLoop]
    private let counter = AtomicCounter()

    public init(loopCount: Int = System.coreCount, readBufferSize: Int = 64 * 1024, clock: any MonotonicClock = SystemClock()) {
        let target = DispatchQueue(label: "floriday-proxy.loops", qos: .userInitiated, attributes: .concurrent)
        loops = (0..<max(1, loopCount)).map { EventLoop(index: $0, target: target, readBufferSize: readBufferSize, clock: clock) }
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
