import CLinux
import Dispatch

/// Where a loop's timers read "now": monotonic nanoseconds. Production uses `SystemClock`;
/// tests may pass a clock they move by hand.
public protocol MonotonicClock: Sendable {
    var nanoseconds: UInt64 { get }
}

/// The system's monotonic clock (`CLOCK_MONOTONIC` through Dispatch's uptime).
public struct SystemClock: MonotonicClock {
    public init() {}
    @inline(__always)
    public var nanoseconds: UInt64 { DispatchTime.now().uptimeNanoseconds }
}
