import Synchronization

// "Now" for everything driven by time (loop timers, the token provider, the upstream pool) is
// a `MonotonicClock`: integer nanoseconds that never go back. Production reads the system's
// monotonic clock (`SystemClock`); tests pass a `ManualClock` and move time themselves, so
// expiry, back-off and idle timeouts are tested without waiting for them.

/// A clock that stands still until told to move: `advance(by:)` is the only way time passes.
/// Thread-safe; a test moves it from its own thread while loops read it.
public final class ManualClock: MonotonicClock, Sendable {
    private let now: Atomic<UInt64>

    /// Starts at `nanoseconds` (not zero by default, so "never" and "the beginning" differ).
    public init(nanoseconds: UInt64 = 1_000_000_000) {
        now = Atomic(nanoseconds)
    }

    public var nanoseconds: UInt64 { now.load(ordering: .acquiring) }

    /// Moves the clock forward by `duration` (a negative duration is ignored: time never goes back).
    public func advance(by duration: Duration) {
        now.add(duration.clampedNanoseconds, ordering: .releasing)
    }
}

extension Duration {
    /// Whole nanoseconds, clamped to 0 ... UInt64.max / 2, so a deadline computed as
    /// `now + clampedNanoseconds` cannot overflow.
    public var clampedNanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0 else { return 0 }
        let whole = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if whole.overflow || UInt64(whole.partialValue) > UInt64.max / 2 { return UInt64.max / 2 }
        return min(UInt64.max / 2, UInt64(whole.partialValue) + UInt64(max(0, attoseconds / 1_000_000_000)))
    }
}
