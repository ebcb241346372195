/// A token bucket on integer nanoseconds of a monotonic clock: `limit.rate` tokens a second
/// flow in, at most `limit.burst` are held. The level may go below zero: an upstream 429 with
/// `Retry-After` empties the bucket into debt, so it fills again only after that time.
/// A value type; the owner serialises access.
public struct TokenBucket: Sendable {
    public private(set) var limit: BucketLimit
    public private(set) var level: Double
    private var updated: UInt64

    /// Starts full, as Floriday's buckets are for a key that has not called in a while.
    public init(limit: BucketLimit, now: UInt64) {
        self.limit = limit
        level = limit.burst
        updated = now
    }

    /// Adds what flowed in since the last call.
    public mutating func refill(now: UInt64) {
        guard now > updated else { return }
        level = min(limit.burst, level + Double(now - updated) / 1e9 * limit.rate)
        updated = now
    }

    /// Takes `count` tokens when at least `count + reserve` are there.
    public mutating func take(_ count: Double = 1, keeping reserve: Double = 0, now: UInt64) -> Bool {
        refill(now: now)
        // A tiny tolerance: a timer set for the exact moment must not miss by a rounding error.
        guard level + 1e-9 >= count + reserve else { return false }
        level -= count
        return true
    }

    /// Nanoseconds until `count + reserve` tokens are there (0 when they are now).
    public func nanosecondsUntil(_ count: Double, keeping reserve: Double = 0) -> UInt64 {
        let missing = count + reserve - level
        guard missing > 1e-9 else { return 0 }
        let seconds = missing / limit.rate
        return seconds >= 1e9 ? UInt64.max / 4 : UInt64((seconds * 1e9).rounded(.up)) + 1
    }

    /// Empties the bucket; with `retryAfter`, into enough debt that it holds nothing before then.
    public mutating func drain(retryAfter nanoseconds: UInt64?, now: UInt64) {
        refill(now: now)
        level = min(level, 0) - Double(nanoseconds ?? 0) / 1e9 * limit.rate
    }
}
