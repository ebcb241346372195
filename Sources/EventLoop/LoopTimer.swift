import Dispatch

/// A reusable timer on a loop, backed by one `DispatchSourceTimer` for its whole life.
///
/// Connections keep one and move its deadline as their state changes (head timeout, idle
/// timeout, upstream response timeout), which is far cheaper than a source per wait.
/// Not thread-safe: use it on its loop only.
public final class LoopTimer: @unchecked Sendable {
    private let source: DispatchSourceTimer
    private var activated = false
    private var cancelled = false
    public private(set) var isArmed = false

    public init(loop: EventLoop, handler: @escaping () -> Void) {
        let handler = UncheckedSendable(handler)
        source = DispatchSource.makeTimerSource(flags: [], queue: loop.queue)
        source.setEventHandler { [weak self] in
            guard let self, !self.cancelled, self.isArmed else { return }
            self.isArmed = false
            handler.value()
        }
    }

    deinit {
        cancel()
    }

    /// Fires `handler` once after `delay` (replacing any earlier deadline).
    public func schedule(after delay: Duration) {
        guard !cancelled else { return }
        isArmed = true
        source.schedule(deadline: .now() + delay.dispatchInterval, repeating: .never, leeway: .milliseconds(5))
        if !activated {
            activated = true
            source.activate()
        }
    }

    /// Stops a pending deadline; the timer can be scheduled again.
    public func disarm() {
        guard isArmed else { return }
        isArmed = false
        source.schedule(deadline: .distantFuture, repeating: .never)
    }

    /// Ends the timer for good.
    public func cancel() {
        guard !cancelled else { return }
        cancelled = true
        isArmed = false
        // A source that was never activated must be activated before release (libdispatch
        // crashes on releasing an inactive object); cancelling first keeps it from firing.
        source.cancel()
        if !activated {
            activated = true
            source.activate()
        }
    }
}
