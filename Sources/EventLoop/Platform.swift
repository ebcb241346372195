import CLinux
#if canImport(Glibc)
@_exported import Glibc
#elseif canImport(Musl)
@_exported import Musl
#elseif canImport(Darwin)
@_exported import Darwin
#endif
import Dispatch

/// A lock-protected counter (no atomics package needed for the few shared counters we keep).
public final class AtomicCounter: @unchecked Sendable {
    private var value = 0
    private var lock = pthread_mutex_t()

    public init() { pthread_mutex_init(&lock, nil) }
    deinit { pthread_mutex_destroy(&lock) }

    @discardableResult
    public func increment(by delta: Int = 1) -> Int {
        pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }
        value &+= delta
        return value
    }

    public var current: Int {
        pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }
        return value
    }
}

/// A value behind a mutex, for the little state shared between loops (token cache, pools' totals).
public final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private var lock = pthread_mutex_t()

    public init(_ value: Value) {
        self.value = value
        pthread_mutex_init(&lock, nil)
    }
    deinit { pthread_mutex_destroy(&lock) }

    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }
        return try body(&value)
    }
}

/// Ignore SIGPIPE process-wide: a peer that vanished must give EPIPE, never kill the process.
public func ignoreSIGPIPE() {
    signal(SIGPIPE, SIG_IGN)
}

extension Duration {
    /// Nanoseconds for Dispatch deadlines, saturating.
    var dispatchInterval: DispatchTimeInterval {
        let (seconds, attoseconds) = components
        let nanos = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if nanos.overflow { return .never }
        return .nanoseconds(Int(nanos.partialValue + attoseconds / 1_000_000_000))
    }

    public var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}

/// Carries a value across a queue hop whose safety the compiler cannot see
/// (loop-confined objects moving to their own loop). Use only through `EventLoop`.
public struct UncheckedSendable<Value>: @unchecked Sendable {
    public let value: Value
    public init(_ value: Value) { self.value = value }
}
