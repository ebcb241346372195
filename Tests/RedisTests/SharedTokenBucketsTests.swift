import EventLoop
import Foundation
import Redis
import TestSupport
import Testing

/// The shared buckets against a real redis-server: clients on different loops (as separate
/// replicas would be) draw on one budget.
@Suite(.serialized) struct SharedTokenBucketsTests {
    let group = EventLoopGroup(loopCount: 2)

    func buckets(_ server: RedisServer, loop: Int) throws -> SharedTokenBuckets {
        let client = try RedisClient.make(server.url, loop: group.loops[loop])
        return onLoop(client.loop) { SharedTokenBuckets(client: client) }
    }

    @Test func twoClientsNeverTakeMoreThanTheBucketHolds() throws {
        let server = try RedisServer()
        let a = try buckets(server, loop: 0), b = try buckets(server, loop: 1)
        // 40 requests at once, 20 from each client, for a bucket of 7 that barely refills
        // (0.001 tokens/s) and no waiting allowed: exactly 7 are granted, however the
        // two clients' commands interleave.
        let granted = Locked(0), refused = Locked(0), failed = Locked(0)
        let done = DispatchGroup()
        for buckets in [a, b] {
            for _ in 0..<20 {
                done.enter()
                buckets.client.loop.execute {
                    buckets.take(key: "bucket:shared", rate: 0.001, burst: 7, maxWait: .zero) { result in
                        switch result {
                        case .success(.granted(let wait)): granted.withLock { $0 += 1 }; #expect(wait == .zero)
                        case .success(.refused): refused.withLock { $0 += 1 }
                        case .failure: failed.withLock { $0 += 1 }
                        }
                        done.leave()
                    }
                }
            }
        }
        #expect(done.wait(timeout: .now() + 30) == .success)
        #expect(granted.withLock { $0 } == 7)
        #expect(refused.withLock { $0 } == 33)
        #expect(failed.withLock { $0 } == 0)
        // The script went to Redis once per client.
        #expect(onLoop(a.client.loop) { a.scriptLoads } == 1)
        #expect(onLoop(b.client.loop) { b.scriptLoads } == 1)
    }

    @Test func anEmptyBucketReservesTheNextTokenAndSaysWhenItIsDue() throws {
        let server = try RedisServer()
        let a = try buckets(server, loop: 0), b = try buckets(server, loop: 1)
        // 1 token/s, burst 1: the first goes now, the next is due in (up to) a second, the
        // one after in two; a third would wait longer than 2.5 s and is refused.
        #expect(a.take("b", rate: 1, burst: 1, maxWait: .milliseconds(2500)) == .success(.granted(wait: .zero)))
        guard case .success(.granted(let second)) = b.take("b", rate: 1, burst: 1, maxWait: .milliseconds(2500)),
              case .success(.granted(let third)) = a.take("b", rate: 1, burst: 1, maxWait: .milliseconds(2500)),
              case .success(.refused(let fourth)) = b.take("b", rate: 1, burst: 1, maxWait: .milliseconds(2500)) else {
            Issue.record("expected two reservations, then a refusal")
            return
        }
        #expect(second > .milliseconds(500) && second <= .seconds(1))
        #expect(third > .milliseconds(1500) && third <= .seconds(2))
        #expect(fourth > .milliseconds(2500) && fourth <= .seconds(3))
        // The refusal reserved nothing: the level still allows a 3-second wait.
        guard case .success(.granted(let fifth)) = a.take("b", rate: 1, burst: 1, maxWait: .seconds(5)) else {
            Issue.record("a longer max wait must get the next reservation")
            return
        }
        #expect(fifth > .milliseconds(2500) && fifth <= .seconds(3))
    }

    @Test func drainingEmptiesTheBucketForEveryClient() throws {
        let server = try RedisServer()
        let a = try buckets(server, loop: 0), b = try buckets(server, loop: 1)
        #expect(a.take("d", rate: 10, burst: 100, maxWait: .zero) == .success(.granted(wait: .zero)))
        // A 429 seen by one replica, with Retry-After: 2: the bucket stays empty for 2 s.
        let drained: Result<Void, RedisError> = awaitOn(a.client.loop) { done in
            a.drain(key: "d", rate: 10, burst: 100, emptyFor: .seconds(2), completion: done)
        }
        #expect((try? drained.get()) != nil)
        guard case .success(.granted(let wait)) = b.take("d", rate: 10, burst: 100, maxWait: .seconds(5)) else {
            Issue.record("the other client must wait after the drain")
            return
        }
        #expect(wait > .milliseconds(1500) && wait <= .milliseconds(2100))
    }

    @Test func aReserveIsLeftInTheBucket() throws {
        let server = try RedisServer()
        let a = try buckets(server, loop: 0)
        // Burst 3, reserve 1: two go at once, the third waits for the bucket to hold 2 again.
        for _ in 0..<2 {
            #expect(a.take("r", rate: 1, burst: 3, reserve: 1, maxWait: .zero) == .success(.granted(wait: .zero)))
        }
        guard case .success(.refused(let wait)) = a.take("r", rate: 1, burst: 3, reserve: 1, maxWait: .zero) else {
            Issue.record("the reserve must not be handed out")
            return
        }
        #expect(wait > .milliseconds(500) && wait <= .seconds(1))
    }

    @Test func theKeyExpiresOnceTheBucketWouldBeFull() throws {
        let server = try RedisServer()
        let a = try buckets(server, loop: 0)
        #expect(a.take("e", rate: 100, burst: 100, maxWait: .zero) == .success(.granted(wait: .zero)))
        guard case .success(.integer(let ttl)) = a.client.call("PTTL", "e") else {
            Issue.record("the bucket key must have an expiry")
            return
        }
        // One token short of full at 100/s: 10 ms, plus a second of slack.
        #expect(ttl > 0 && ttl <= 1010)
    }

    @Test func aFlushedScriptIsLoadedAgain() throws {
        let server = try RedisServer()
        let a = try buckets(server, loop: 0)
        #expect(a.take("f", rate: 1, burst: 10, maxWait: .zero) == .success(.granted(wait: .zero)))
        #expect(onLoop(a.client.loop) { a.scriptLoads } == 1)
        #expect(a.client.call("SCRIPT", "FLUSH") == .success(.status("OK")))
        #expect(a.take("f", rate: 1, burst: 10, maxWait: .zero) == .success(.granted(wait: .zero)))
        #expect(onLoop(a.client.loop) { a.scriptLoads } == 2)
        #expect(a.take("f", rate: 1, burst: 10, maxWait: .zero) == .success(.granted(wait: .zero)))
        #expect(onLoop(a.client.loop) { a.scriptLoads } == 2)
    }

    @Test func aRestartedServerGetsTheScriptAgain() throws {
        let server = try RedisServer()
        let a = try buckets(server, loop: 0)
        #expect(a.take("g", rate: 1, burst: 10, maxWait: .zero) == .success(.granted(wait: .zero)))
        server.stop()
        guard case .failure = a.take("g", rate: 1, burst: 10, maxWait: .zero) else {
            Issue.record("with Redis gone, a take must fail")
            return
        }
        try server.start()
        #expect(eventually { a.take("g", rate: 1, burst: 10, maxWait: .zero) == .success(.granted(wait: .zero)) })
        #expect(onLoop(a.client.loop) { a.scriptLoads } == 2)
    }
}
