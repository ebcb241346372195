import CLinux
import Dispatch

/// A reusable timer on a loop.
///
/// Connections keep one and move its deadline as their state changes (head timeout, idle
/// timeout, upstream response timeout), often several times per request. Moving the deadline
/// of a `DispatchSourceTimer` on Linux wakes libdispatch's manager thread every time, which
/// cost more than proxying a small request; so a timer here is only a deadline (integer
/// nanoseconds of the loop's clock) in its loop's list of armed timers, and one coarse per-loop
/// tick (`EventLoop.timerResolution`) fires what is due.
/// Not thread-safe: use it on its loop only (except `init`).
///
/// An armed timer is held by its loop's timer set; the timer holds its loop only weakly, so
/// a timer left armed does not keep a loop (and all the loop's timers) alive, and
/// cancelling drops the handler, so a handler that captures the timer's owner leaves no cycle.
public final class LoopTimer: @unchecked Sendable {
    private weak var loop: EventLoop?
    private var handler: (() -> Void)?
    /// Nanoseconds of the loop's clock; meaningful while armed.
    var deadline: UInt64 = 0
    /// Position in the loop's armed list (-1 when not armed), for O(1) disarming.
    var armedIndex = -1
    private var cancelled = false
    public private(set) var isArmed = false

    public init(loop: EventLoop, handler: @escaping () -> Void) {
        self.loop = loop
        self.handler = handler
    }

    /// Fires `handler` once after `delay` (replacing any earlier deadline). Cheap: no system call.
    public func schedule(after delay: Duration) {
        // A timer is usually moved by the same timeout again and again; converting a `Duration`
        // takes 128-bit arithmetic (about 2.5% of the instructions per proxied request), so the
        // last conversion is kept.
        // Two are kept, as most owners alternate between two timeouts (body stall and response).
        if delay == lastDelay {
            return schedule(afterNanoseconds: lastOffset)
        }
        if delay != otherDelay {
            let components = delay.components
            let nanoseconds = components.seconds.multipliedReportingOverflow(by: 1_000_000_000)
            otherOffset = nanoseconds.overflow ? UInt64.max / 2 : UInt64(max(0, nanoseconds.partialValue + components.attoseconds / 1_000_000_000))
            otherDelay = delay
        }
        swap(&lastDelay, &otherDelay)
        swap(&lastOffset, &otherOffset)
        schedule(afterNanoseconds: lastOffset)
    }
    private var lastDelay = Duration.zero
    private var lastOffset: UInt64 = 0
    private var otherDelay = Duration.zero
    private var otherOffset: UInt64 = 0

    /// `schedule(after:)` for callers that keep their timeouts as integer nanoseconds
    /// (no `Duration` arithmetic on the request path).
    public func schedule(afterNanoseconds offset: UInt64) {
        guard !cancelled, let loop else { return }
        deadline = loop.clock.nanoseconds &+ min(offset, UInt64.max / 2)
        if !isArmed {
            isArmed = true
            loop.arm(self)
        }
    }

    /// Stops a pending deadline; the timer can be scheduled again.
    public func disarm() {
        guard isArmed else { return }
        isArmed = false
        loop?.disarm(self)
    }

    /// Ends the timer for good, and lets go of the handler.
    public func cancel() {
        cancelled = true
        disarm()
        handler = nil
    }

    /// The loop is going away: the timer will never fire.
    func loopGone() {
        isArmed = false
        cancelled = true
        handler = nil
    }

    /// Called by the loop's tick when the deadline has passed.
    func fire() {
        guard isArmed, !cancelled else { return }
        isArmed = false
        handler?()
    }
}
