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

    @Test func errorsAboutTheServerAreServerWideAndOthersAreNot() {
        for message in ["READONLY You can't write against a read only replica.", "OOM command not allowed when used memory > 'maxmemory'.",
                        "NOREPLICAS Not enough good replicas to write.", "LOADING Redis is loading the dataset in memory",
                        "MISCONF Redis is configured to save RDB snapshots", "BUSY Redis is busy running a script.", "MASTERDOWN Link with MASTER is down"] {
            #expect(RedisError.server(message).isServerWide, "\(message)")
        }
        for error in [RedisError.server("WRONGTYPE Operation against a key holding the wrong kind of value"),
                      .server("ERR Error running script"), .server("NOSCRIPT No matching script."), .server("READONLYX"),
                      .timeout, .connect("refused")] {
            #expect(!error.isServerWide, "\(error)")
        }
    }

    /// A Redis that answers but cannot run the script (it refuses writes, like a replica after a
    /// failover) is down for the store; `PING` would still pass, the probe does not.
    @Test func aRedisThatRefusesWritesIsDownUntilTheProbeWorksAgain() throws {
        let server = try RedisServer()
        let changes = Locked<[SharedBucketStore.Health]>([])
        let store = SharedBucketStore(endpoint: try RedisEndpoint(url: server.url), loops: group.loops, timeout: .seconds(2),
                                      reconnectDelay: .zero) { health in changes.withLock { $0.append(health) } }
        let admin = try RedisClient.make(server.url, loop: group.loops[1])
        #expect(take(store, loop: 0) == .success(.granted(wait: .zero)))

        #expect((try? admin.call("CONFIG", "SET", "min-replicas-to-write", "1").get()) == .status("OK"))
        guard case .failure(let error) = take(store, loop: 0), error.isServerWide else {
            Issue.record("with writes refused, a take must fail with a server-wide error")
            return
        }
        guard case .down(let reason) = store.health else {
            Issue.record("the store must be down")
            return
        }
        #expect(reason.contains("NOREPLICAS"))
        #expect(changes.withLock { $0.count } == 1)
        // Redis still answers PING; the probe runs the script and fails.
        #expect((try? admin.call("PING").get()) == .status("PONG"))
        let loop = group.loops[0]
        guard case .failure = awaitOn(loop, { done in store.probe(on: loop, completion: done) }) else {
            Issue.record("the probe must fail while writes are refused")
            return
        }
        #expect(changes.withLock { $0.count } == 1)

        #expect((try? admin.call("CONFIG", "SET", "min-replicas-to-write", "0").get()) == .status("OK"))
        guard case .success = awaitOn(loop, { done in store.probe(on: loop, completion: done) }) else {
            Issue.record("the probe must pass again")
            return
        }
        #expect(store.health == .up)
        #expect(changes.withLock { $0 }.last == .up)
        #expect(take(store, loop: 1) == .success(.granted(wait: .zero)))
        store.close()
        onLoop(group.loops[1]) { admin.close() }
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
