import EventLoop
import Foundation
import RateLimit
import Synchronization
import TestSupport
import Testing

/// The limiter on a real loop with a manual clock: time passes only when the test moves it.
@Suite(.serialized) struct RateLimiterTests {
    let clock = ManualClock()
    let group: EventLoopGroup
    var loop: EventLoop { group.loops[0] }

    init() {
        group = EventLoopGroup(loopCount: 2, clock: clock)
    }

    func limiter(rate: Double = 10, burst: Double = 2, maxWait: Duration = .seconds(30), maxWaiting: Int = 1000,
                 scope: RateLimitPolicy.Scope = .endpoint) -> RateLimiter {
        var policy = RateLimitPolicy()
        policy.rules = [EndpointRule(methods: nil, path: "/a*", limit: BucketLimit(rate: rate, burst: burst)),
                        EndpointRule(methods: nil, path: "/b*", limit: BucketLimit(rate: rate, burst: burst))]
        policy.defaultLimit = BucketLimit(rate: rate, burst: burst)
        policy.maxWait = maxWait
        policy.maxWaiting = maxWaiting
        policy.scope = scope
        return RateLimiter(policy: policy, clock: clock, operations: [])
    }

    /// Asks for `count` tokens on `loop`; returns the admissions and a log of turns, in order.
    func ask(_ limiter: RateLimiter, _ count: Int, path: String = "/a", key: String = "k", on loop: EventLoop? = nil,
             turns: Turns) -> [RateLimiter.Admission] {
        let loop = loop ?? self.loop
        return onLoop(loop) {
            (0..<count).map { _ in
                let endpoint = limiter.endpoint(method: "GET", path: Array(path.utf8))
                let id = turns.nextID()
                return limiter.admit(apiKey: key, endpoint: endpoint, loop: loop) { turns.record(id) }
            }
        }
    }

    final class Turns: Sendable {
        private let state = Mutex((next: 0, order: [Int]()))
        func nextID() -> Int { state.withLock { $0.next += 1; return $0.next } }
        func record(_ id: Int) { state.withLock { $0.order.append(id) } }
        var order: [Int] { state.withLock { $0.order } }
    }

    func move(_ duration: Duration) {
        advance(clock, by: duration, firingTimersOn: group.loops)
        // Releases hop to their loop: let those hops run too.
        for loop in group.loops { onLoop(loop) {} }
    }

    static func isNow(_ admission: RateLimiter.Admission) -> Bool { if case .now = admission { true } else { false } }
    static func isWaiting(_ admission: RateLimiter.Admission) -> Bool { if case .waiting = admission { true } else { false } }

    @Test func theBurstGoesAtOnceAndTheRestAtTheRateInOrder() {
        let limiter = limiter(rate: 10, burst: 2)
        let turns = Turns()
        let admissions = ask(limiter, 6, turns: turns)
        // Burst 2, but the 50 ms reserve (0.5 token at 10/s) holds back the second one.
        #expect(admissions.prefix(1).allSatisfy(Self.isNow))
        #expect(admissions.dropFirst().allSatisfy(Self.isWaiting))
        #expect(turns.order.isEmpty)
        move(.milliseconds(51))   // 1 + 0.5 → the second goes
        #expect(turns.order == [2])
        move(.milliseconds(100))
        #expect(turns.order == [2, 3])
        move(.milliseconds(98))
        #expect(turns.order == [2, 3])
        move(.milliseconds(2))
        #expect(turns.order == [2, 3, 4])
        move(.milliseconds(100))
        #expect(turns.order == [2, 3, 4, 5])
        move(.milliseconds(100))
        #expect(turns.order == [2, 3, 4, 5, 6])
        #expect(limiter.waiting(apiKey: "k") == 0)
    }

    @Test func aReplicasShareDividesEveryRateAndBurst() {
        var policy = RateLimitPolicy()
        policy.defaultLimit = BucketLimit(rate: 3.4, burst: 1000)
        policy.rules = [EndpointRule(methods: ["GET"], path: "/x", limit: BucketLimit(rate: 9, burst: 2))]
        let share = policy.divided(among: 3)
        #expect(share.defaultLimit == BucketLimit(rate: 3.4 / 3, burst: 1000 / 3.0))
        #expect(share.rules[0].limit == BucketLimit(rate: 3, burst: 1))   // a burst keeps one token
        #expect(policy.divided(among: 1) == policy)
        let operation = PublishedOperation(api: "suppliers-api", method: "GET", path: "/sync/{n}", rate: 2, burst: 200)
        let limiter = RateLimiter(policy: share, clock: clock, operations: [operation])
        let sync = limiter.endpoint(method: "GET", path: Array("/suppliers-api-2026v1/sync/5".utf8)).limit
        #expect(abs(sync.rate - 2.0 / 3) < 1e-9 && abs(sync.burst - 200.0 / 3) < 1e-9, "\(sync)")
        #expect(limiter.endpoint(method: "GET", path: Array("/x".utf8)).limit == BucketLimit(rate: 3, burst: 1))
    }

    @Test func twoEndpointsHaveTwoBucketsAndScopeKeyHasOne() {
        let turns = Turns()
        let perEndpoint = limiter(rate: 1, burst: 1)
        #expect(ask(perEndpoint, 1, path: "/a", turns: turns).allSatisfy(Self.isNow))
        #expect(ask(perEndpoint, 1, path: "/b", turns: turns).allSatisfy(Self.isNow))
        #expect(ask(perEndpoint, 1, path: "/a", key: "other-key", turns: turns).allSatisfy(Self.isNow))
        let perKey = limiter(rate: 1, burst: 1, scope: .key)
        #expect(ask(perKey, 1, path: "/a", turns: turns).allSatisfy(Self.isNow))
        #expect(ask(perKey, 1, path: "/b", turns: turns).allSatisfy(Self.isWaiting))
    }

    @Test func aWaitLongerThanMaxWaitIsRefusedAtOnceWithRetryAfter() {
        let limiter = limiter(rate: 1, burst: 1, maxWait: .seconds(3))
        let turns = Turns()
        let admissions = ask(limiter, 6, turns: turns)
        // 1 now; waits of 1.05, 2.05 s fit; 3.05 s does not.
        #expect(Self.isNow(admissions[0]) && Self.isWaiting(admissions[1]) && Self.isWaiting(admissions[2]))
        for admission in admissions[3...] {
            guard case .refused(let retryAfter, let queueFull) = admission else { Issue.record("not refused"); continue }
            #expect(retryAfter >= 1 && retryAfter <= 3)
            #expect(!queueFull)
        }
        #expect(limiter.waiting(apiKey: "k") == 2)
    }

    @Test func aFullQueueIsRefused() {
        let limiter = limiter(rate: 1, burst: 1, maxWaiting: 2)
        let admissions = ask(limiter, 4, turns: Turns())
        guard case .refused(_, let queueFull) = admissions[3] else { Issue.record("not refused"); return }
        #expect(queueFull)
    }

    @Test func aCancelledWaiterLeavesTheQueueAndNeverRuns() {
        let limiter = limiter(rate: 1, burst: 1)
        let turns = Turns()
        let admissions = ask(limiter, 3, turns: turns)
        guard case .waiting(let waiter, _) = admissions[1] else { Issue.record("not waiting"); return }
        onLoop(loop) { limiter.cancel(waiter) }
        #expect(limiter.waiting(apiKey: "k") == 1)
        move(.seconds(3))
        #expect(turns.order == [3])
    }

    @Test func anUpstream429EmptiesTheBucketAndHonoursRetryAfter() {
        let limiter = limiter(rate: 10, burst: 100)
        let turns = Turns()
        let endpoint = limiter.endpoint(method: "GET", path: Array("/a".utf8))
        #expect(ask(limiter, 1, turns: turns).allSatisfy(Self.isNow))
        limiter.upstreamRefused(apiKey: "k", endpoint: endpoint, retryAfter: .seconds(2))
        #expect(limiter.level(apiKey: "k", endpoint: endpoint)! < -19.9)
        let admissions = ask(limiter, 2, turns: turns)
        #expect(admissions.allSatisfy(Self.isWaiting))
        move(.seconds(2))
        #expect(turns.order.isEmpty)
        move(.milliseconds(160))
        #expect(turns.order == [2])
        move(.milliseconds(100))
        #expect(turns.order == [2, 3])
    }

    @Test func waitersAlreadyTimedAreHeldBackByALaterDrain() {
        let limiter = limiter(rate: 10, burst: 1)
        let turns = Turns()
        let endpoint = limiter.endpoint(method: "GET", path: Array("/a".utf8))
        _ = ask(limiter, 2, turns: turns)   // 1 now, 1 waits ~100 ms
        limiter.upstreamRefused(apiKey: "k", endpoint: endpoint, retryAfter: .seconds(1))
        move(.milliseconds(200))
        #expect(turns.order.isEmpty)   // its timer fired, found no token, and was set again
        move(.seconds(1))
        #expect(turns.order == [2])
    }

    @Test func waitersOnTwoLoopsShareTheBucketInOrder() {
        let limiter = limiter(rate: 10, burst: 1)
        let turns = Turns()
        _ = ask(limiter, 1, on: group.loops[0], turns: turns)
        _ = ask(limiter, 1, on: group.loops[1], turns: turns)
        _ = ask(limiter, 1, on: group.loops[0], turns: turns)
        move(.milliseconds(150))
        #expect(turns.order == [2])
        move(.milliseconds(100))
        #expect(turns.order == [2, 3])
    }

    @Test func bucketArithmetic() {
        var bucket = TokenBucket(limit: BucketLimit(rate: 2, burst: 3), now: 0)
        let firstThree = (0..<3).map { _ in bucket.take(now: 0) }
        #expect(firstThree == [true, true, true])
        let fourth = bucket.take(now: 0)
        #expect(!fourth)
        #expect(bucket.nanosecondsUntil(1) == 500_000_001)
        let later = bucket.take(now: 500_000_000)
        #expect(later)
        bucket.refill(now: 100_000_000_000)
        #expect(bucket.level == 3)
        bucket.drain(retryAfter: 1_000_000_000, now: 100_000_000_000)
        #expect(bucket.level == -2)
    }
}
