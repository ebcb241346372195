import EventLoop
import Foundation

/// What `RateLimiter` enforces.
public struct RateLimitPolicy: Sendable, Equatable {
    public enum Scope: String, Sendable, CaseIterable {
        /// One bucket per API key and endpoint, as Floriday counts.
        case endpoint
        /// One bucket per API key for everything, with the default limit.
        case key
    }

    public var scope: Scope = .endpoint
    /// For endpoints without a published limit, and for every request with `scope: key`.
    public var defaultLimit = BucketLimit(rate: 3.4, burst: 1000)
    /// The longest a request may wait for its turn; one that would wait longer is refused at once.
    public var maxWait: Duration = .seconds(30)
    /// Requests that may wait in one bucket's queue; more are refused.
    public var maxWaiting = 1000
    public var rules: [EndpointRule] = []
    /// Published limits are multiplied by this (tests and the sandbox run them faster).
    public var scale: Double = 1
    /// Published bursts are multiplied by this (at least 1 token stays): see `divided(among:)`.
    public var burstScale: Double = 1

    public init() {}

    /// This process's share when `replicas` processes shape for the same keys without a shared
    /// store: every rate and every burst divided by `replicas` (a burst keeps at least one
    /// token), so together they stay within the limit.
    public func divided(among replicas: Int) -> RateLimitPolicy {
        guard replicas > 1 else { return self }
        let share = 1 / Double(replicas)
        var policy = self
        policy.scale *= share
        policy.burstScale *= share
        policy.defaultLimit = defaultLimit.divided(among: replicas)
        policy.rules = rules.map { EndpointRule(methods: $0.methods, path: $0.path, limit: $0.limit.divided(among: replicas)) }
        return policy
    }
}

extension BucketLimit {
    /// Rate and burst divided by `replicas`; the burst keeps at least one token.
    public func divided(among replicas: Int) -> BucketLimit {
        BucketLimit(rate: rate / Double(replicas), burst: max(1, burst / Double(replicas)))
    }

    /// Tokens a grant must leave in the bucket: `rate` × 50 ms, less than the burst
    /// (see `RateLimiter`).
    public var reserve: Double { max(0, min(rate * RateLimiter.latencyAllowance, burst - 1)) }
}

/// Token buckets per (API key, endpoint) with a first-in-first-out queue of waiting requests
/// each. A request that finds a token goes at once; otherwise it waits, without holding any
/// connection, on a timer of its own loop set for when its turn should come (no polling).
/// When a timer fires, every waiter of that bucket whose token is there is released, in
/// order, on its own loop; a waiter whose turn moved (the bucket was emptied by an upstream
/// 429) sets its timer again.
///
/// Requests are let through only while the bucket keeps `reserve` tokens beyond the one taken
/// (`rate` × 50 ms): a request admitted here reaches Floriday a little later than it was
/// admitted, and by a varying amount; the reserve absorbs that jitter, so the API's own bucket
/// (which counts arrivals) is not found empty. The long-run rate is unchanged.
public final class RateLimiter: @unchecked Sendable {
    public let policy: RateLimitPolicy
    public let table: EndpointTable
    private let clock: any MonotonicClock
    private let lock = NSLock()
    private var buckets: [BucketKey: Bucket] = [:]
    static let latencyAllowance = 0.05

    struct BucketKey: Hashable {
        var apiKey: String
        var endpoint: Int
    }

    final class Bucket {
        var bucket: TokenBucket
        let reserve: Double
        /// Waiting requests, oldest first, from `head` on.
        var queue: [Waiter] = []
        var head = 0
        var waiting: Int { queue.count - head }

        init(limit: BucketLimit, now: UInt64) {
            bucket = TokenBucket(limit: limit, now: now)
            reserve = limit.reserve
        }

        func position(of waiter: Waiter) -> Int? {
            var index = head
            while index < queue.count {
                if queue[index] === waiter { return index - head }
                index += 1
            }
            return nil
        }

        /// Nanoseconds until the waiter at `position` (0: first) gets its token.
        func delay(forPosition position: Int) -> UInt64 {
            bucket.nanosecondsUntil(Double(position + 1), keeping: reserve)
        }

        /// Releases the waiters at the front whose tokens are there.
        func release(now: UInt64) -> [Waiter] {
            var released: [Waiter] = []
            while head < queue.count, bucket.take(keeping: reserve, now: now) {
                let waiter = queue[head]
                waiter.queued = false
                released.append(waiter)
                head += 1
            }
            if head > 32 && head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
            return released
        }
    }

    /// A request waiting for its turn. Its loop fields are touched on `loop` only; `queued`
    /// under the limiter's lock.
    public final class Waiter {
        let loop: EventLoop
        fileprivate let key: BucketKey
        fileprivate var queued = true
        private var timer: LoopTimer?
        private var onTurn: (() -> Void)?

        fileprivate init(loop: EventLoop, key: BucketKey, onTurn: @escaping () -> Void) {
            self.loop = loop
            self.key = key
            self.onTurn = onTurn
        }

        fileprivate func arm(after nanoseconds: UInt64, limiter: RateLimiter) {
            if timer == nil {
                timer = LoopTimer(loop: loop) { [weak self, weak limiter] in
                    if let self { limiter?.timerFired(self) }
                }
            }
            timer!.schedule(afterNanoseconds: nanoseconds)
        }

        /// On `loop`: its turn came.
        fileprivate func release() {
            timer?.cancel()
            timer = nil
            let turn = onTurn
            onTurn = nil
            turn?()
        }

        fileprivate func drop() {
            timer?.cancel()
            timer = nil
            onTurn = nil
        }
    }

    public enum Admission {
        /// Go now.
        case now
        /// `onTurn` runs on the caller's loop when the token is there; `cancel` the waiter if the request ends first.
        case waiting(Waiter, expected: Duration)
        /// Would wait longer than `maxWait`, or the queue is full: answer 429 with `Retry-After`.
        case refused(retryAfter: Int, queueFull: Bool)
    }

    public init(policy: RateLimitPolicy, clock: any MonotonicClock, operations: [PublishedOperation] = PublishedLimits.operations) {
        self.policy = policy
        self.clock = clock
        let scaled = operations.map { operation in
            var operation = operation
            operation.rate = operation.rate.map { $0 * policy.scale }
            operation.burst = operation.burst.map { max(1, $0 * policy.burstScale) }
            return operation
        }
        table = EndpointTable(operations: scaled, rules: policy.rules, defaultLimit: policy.defaultLimit)
    }

    /// The endpoint a request is counted against (`other` for everything under `scope: key`).
    public func endpoint(method: String, path: some Collection<UInt8>) -> Endpoint {
        switch policy.scope {
        case .endpoint: return table.classify(method: method, path: path)
        case .key: return Endpoint(id: -1, name: "all", limit: policy.defaultLimit)
        }
    }

    /// Asks for a token for `apiKey` at `endpoint`. Call on `loop`; `onTurn` runs there.
    public func admit(apiKey: String, endpoint: Endpoint, loop: EventLoop, onTurn: @escaping () -> Void) -> Admission {
        let key = BucketKey(apiKey: apiKey, endpoint: endpoint.id)
        let now = clock.nanoseconds
        var released: [Waiter] = []
        let admission: Admission = lock.withLock {
            let bucket = self.bucket(key, limit: endpoint.limit, now: now)
            released = bucket.release(now: now)
            if bucket.waiting == 0 && bucket.bucket.take(keeping: bucket.reserve, now: now) { return .now }
            let delay = bucket.delay(forPosition: bucket.waiting)
            let maxWait = policy.maxWait.clampedNanoseconds
            if delay > maxWait || bucket.waiting >= policy.maxWaiting {
                // When a retry would fit within max_wait again (at least a second).
                let over = delay > maxWait ? Double(delay - maxWait) / 1e9 : Double(delay) / 1e9
                return .refused(retryAfter: max(1, Int(over.rounded(.up))), queueFull: delay <= maxWait)
            }
            let waiter = Waiter(loop: loop, key: key, onTurn: onTurn)
            bucket.queue.append(waiter)
            return .waiting(waiter, expected: .nanoseconds(Int64(delay)))
        }
        wake(released, current: nil)
        if case .waiting(let waiter, let expected) = admission {
            waiter.arm(after: expected.clampedNanoseconds, limiter: self)
        }
        return admission
    }

    /// The request gave up (its client left): it leaves the queue. Call on the waiter's loop.
    public func cancel(_ waiter: Waiter) {
        lock.withLock {
            guard waiter.queued, let bucket = buckets[waiter.key], let position = bucket.position(of: waiter) else { return }
            waiter.queued = false
            bucket.queue.remove(at: bucket.head + position)
        }
        waiter.drop()
    }

    /// Floriday answered 429 for this key and endpoint: its bucket is empty (and stays so for
    /// `retryAfter`, when given), so the requests behind wait instead of collecting 429s.
    public func upstreamRefused(apiKey: String, endpoint: Endpoint, retryAfter: Duration?) {
        let now = clock.nanoseconds
        lock.withLock {
            bucket(BucketKey(apiKey: apiKey, endpoint: endpoint.id), limit: endpoint.limit, now: now)
                .bucket.drain(retryAfter: retryAfter?.clampedNanoseconds, now: now)
        }
    }

    /// Requests waiting now, over all buckets of `apiKey`.
    public func waiting(apiKey: String) -> Int {
        lock.withLock { buckets.reduce(0) { $0 + ($1.key.apiKey == apiKey ? $1.value.waiting : 0) } }
    }

    /// The current level of one bucket (tests and diagnostics); nil before its first request.
    public func level(apiKey: String, endpoint: Endpoint) -> Double? {
        let now = clock.nanoseconds
        return lock.withLock {
            guard let bucket = buckets[BucketKey(apiKey: apiKey, endpoint: endpoint.id)] else { return nil }
            bucket.bucket.refill(now: now)
            return bucket.bucket.level
        }
    }

    private func bucket(_ key: BucketKey, limit: BucketLimit, now: UInt64) -> Bucket {
        if let bucket = buckets[key] { return bucket }
        let bucket = Bucket(limit: limit, now: now)
        buckets[key] = bucket
        return bucket
    }

    /// On the waiter's loop: release whoever's turn has come; set the timer again if it is not yet this one's.
    private func timerFired(_ waiter: Waiter) {
        let now = clock.nanoseconds
        var again: UInt64?
        let released: [Waiter] = lock.withLock {
            guard let bucket = buckets[waiter.key] else { return [] }
            let released = bucket.release(now: now)
            if waiter.queued, let position = bucket.position(of: waiter) {
                again = bucket.delay(forPosition: position)
            }
            return released
        }
        wake(released, current: waiter)
        if let again { waiter.arm(after: max(again, 1_000_000), limiter: self) }
    }

    private func wake(_ released: [Waiter], current: Waiter?) {
        for waiter in released {
            if waiter === current {
                waiter.release()
            } else {
                waiter.loop.execute { waiter.release() }
            }
        }
    }
}
