import EventLoop
import Foundation
import Redis
import TestSupport
import Testing

/// The store the replicas share: bucket names, and its health as Redis goes and comes back.
@Suite(.serialized) struct SharedBucketStoreTests {
    let group = EventLoopGroup(loopCount: 2)

    @Test func bucketNamesNeverContainTheKey() {
        let name = SharedBucketStore.bucketName(apiKey: "k3y-secret-value", endpoint: "GET /trade-items")
        #expect(name.hasPrefix("floriday-proxy:bucket:"))
        #expect(name.count == "floriday-proxy:bucket:".count + 64)
        #expect(!name.contains("k3y"))
        // Stable across processes (every replica must name the same bucket) and distinct.
        #expect(name == SharedBucketStore.bucketName(apiKey: "k3y-secret-value", endpoint: "GET /trade-items"))
        #expect(name != SharedBucketStore.bucketName(apiKey: "k3y-secret-value", endpoint: "GET /trade-items/base-supply"))
        #expect(name != SharedBucketStore.bucketName(apiKey: "other", endpoint: "GET /trade-items"))
        // The separator keeps (key, endpoint) pairs apart.
        #expect(SharedBucketStore.bucketName(apiKey: "a", endpoint: "bc") != SharedBucketStore.bucketName(apiKey: "ab", endpoint: "c"))
    }

    func take(_ store: SharedBucketStore, loop: Int, bucket: String = "b") -> Result<SharedTokenBuckets.Answer, RedisError> {
        let loop = group.loops[loop]
        return awaitOn(loop) { done in store.take(bucket: bucket, rate: 100, burst: 100, maxWait: .zero, on: loop, completion: done) }
    }

    @Test func goesDownOnceWhenRedisGoesAndUpWhenItAnswersAgain() throws {
        let server = try RedisServer()
        let changes = Locked<[SharedBucketStore.Health]>([])
        let store = SharedBucketStore(endpoint: try RedisEndpoint(url: server.url), loops: group.loops, timeout: .seconds(2),
                                      reconnectDelay: .zero) { health in changes.withLock { $0.append(health) } }
        #expect(take(store, loop: 0) == .success(.granted(wait: .zero)))
        #expect(take(store, loop: 1) == .success(.granted(wait: .zero)))
        #expect(store.health == .up)
        #expect(changes.withLock { $0 }.isEmpty)

        server.stop()
        for loop in [0, 1, 0, 1] {
            guard case .failure = take(store, loop: loop) else {
                Issue.record("with Redis gone, a take must fail")
                return
            }
        }
        guard case .down(let reason) = store.health else {
            Issue.record("the store must be down")
            return
        }
        #expect(reason.contains("Redis"))
        // Reported once, however many requests saw it.
        #expect(changes.withLock { $0.count } == 1)

        try server.start()
        #expect(eventually { (try? take(store, loop: 0).get()) != nil })
        #expect(store.health == .up)
        #expect(changes.withLock { $0.count } == 2)
        #expect(changes.withLock { $0.last } == .up)
        store.close()
    }

    @Test func drainingThroughOneLoopIsSeenByTheOther() throws {
        let server = try RedisServer()
        let store = SharedBucketStore(endpoint: try RedisEndpoint(url: server.url), loops: group.loops, timeout: .seconds(2))
        #expect(take(store, loop: 0, bucket: "d") == .success(.granted(wait: .zero)))
        let drained: Result<Void, RedisError> = awaitOn(group.loops[0]) { done in
            store.drain(bucket: "d", rate: 100, burst: 100, on: self.group.loops[0], completion: done)
        }
        #expect((try? drained.get()) != nil)
        guard case .success(.refused) = take(store, loop: 1, bucket: "d") else {
            Issue.record("after a drain, no token is left for another loop")
            return
        }
        store.close()
    }
}
