import Admin
import Config
import EventLoop
import Foundation
import Logging
import Proxy
import RateLimit
import Redis
import Sandbox
import TestSupport
import Testing
import TLS

/// Several replicas sharing one rate budget through a real `redis-server` on loopback, in
/// front of one sandbox that enforces the same limit as Floriday would. Real time: the
/// buckets are Redis's, on Redis's clock.
@Suite(.serialized, .enabled(if: RedisServer.isInstalled, "needs redis-server (make test-deps)"))
struct SharedBudgetTests {
    static let path = "/suppliers-api-2026v1/_sandbox/echo/shared/1"
    static let glob = "/suppliers-api-*/_sandbox/echo/shared/*"

    /// One sandbox, one Redis and `count` proxies (each with its own loops, token and pool).
    final class Replicas {
        let sandbox: SandboxServer
        let sandboxLimit: SandboxRateLimit
        let redis: RedisServer
        let proxies: [ProxyServer]
        let logs: [LogCapture]
        let holders: [PrometheusRegistryHolder]
        private let caFile: String
        private var files: [String] = []

        /// `redisTLS`: Redis speaks only TLS (`rediss://`, with a password), its certificate from
        /// a CA of its own that `ca_file` names beside the sandbox's.
        init(count: Int, limit: BucketLimit, sandbox sandboxLimit: BucketLimit? = nil, connectTimeout: Duration = .seconds(1),
             redisTLS: Bool = false, configure: (inout ProxyConfig) -> Void = { _ in }) throws {
            ignoreSIGPIPE()
            var extraCA = ""
            if redisTLS {
                let ca = try CertificateFactory.makeCertificateAuthority(commonName: "floriday-proxy shared budget test CA")
                let leaf = try CertificateFactory.makeLeaf(signedBy: ca, dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"])
                let certificate = try CertificateFactory.writeTemporaryFile(leaf.certificatePEM)
                let key = try CertificateFactory.writeTemporaryFile(leaf.privateKeyPEM)
                let caPath = try CertificateFactory.writeTemporaryFile(ca.certificatePEM)
                files = [certificate, key, caPath]
                redis = try RedisServer(password: "budget-pass", tls: (certificate, key, caPath))
                extraCA = ca.certificatePEM
            } else {
                redis = try RedisServer()
            }
            self.sandboxLimit = SandboxRateLimit(rules: [EndpointRule(methods: ["GET"], path: SharedBudgetTests.glob, limit: sandboxLimit ?? limit)])
            self.sandboxLimit.recordsArrivals = true
            sandbox = try SandboxServer(state: SandboxState(), address: SocketAddress(ip: "127.0.0.1", port: 0)!, tls: true, rateLimit: self.sandboxLimit)
            caFile = NSTemporaryDirectory() + "floriday-proxy-test-ca-\(UUID().uuidString).pem"
            try (sandbox.certificateAuthorityPEM! + extraCA).write(toFile: caFile, atomically: true, encoding: .utf8)
            var config = Harness.config(for: sandbox, caFile: caFile)
            config.rateLimit.enabled = true
            config.rateLimit.store = .redis(try RedisEndpoint(url: redis.url))
            config.rateLimit.replicas = count
            config.rateLimit.maxWait = .seconds(30)
            config.rateLimit.endpoints = [.init(methods: ["GET"], path: SharedBudgetTests.glob, rate: limit.rate, burst: Int(limit.burst))]
            config.timeouts.connect = connectTimeout
            config.timeouts.request = .seconds(30)
            configure(&config)
            var proxies: [ProxyServer] = [], logs: [LogCapture] = [], holders: [PrometheusRegistryHolder] = []
            for _ in 0..<count {
                let capture = LogCapture()
                let holder = PrometheusRegistryHolder()
                let proxy = try ProxyServer(config: config, logger: Logger(label: "test") { _ in capture.handler() },
                                            group: EventLoopGroup(loopCount: 2), metrics: holder.metrics)
                proxy.start()
                proxies.append(proxy)
                logs.append(capture)
                holders.append(holder)
            }
            self.proxies = proxies
            self.logs = logs
            self.holders = holders
        }

        deinit {
            for proxy in proxies { proxy.shutdown(grace: .zero) {} }
            sandbox.stop()
            redis.stop()
            try? FileManager.default.removeItem(atPath: caFile)
            for path in files { try? FileManager.default.removeItem(atPath: path) }
        }

        /// A token and upstream connections in every proxy, on a path the sandbox does not limit here.
        func warmUp() throws {
            for proxy in proxies {
                let clients = try (0..<4).map { _ in try TestClient(port: proxy.localAddress.port) }
                for client in clients { try client.send("GET /suppliers-api-2026v1/_sandbox/echo/warm-up HTTP/1.1\r\nHost: proxy.test\r\n\r\n") }
                for client in clients { #expect(try client.readResponse().status == 200) }
            }
        }

        /// `total` requests at the shared endpoint, spread round-robin over the proxies, all at once;
        /// the statuses the clients got.
        func burst(_ total: Int, path: String = SharedBudgetTests.path) throws -> [Int: Int] {
            let clients = try (0..<total).map { try TestClient(port: proxies[$0 % proxies.count].localAddress.port, timeout: 60) }
            for client in clients { try client.send("GET \(path) HTTP/1.1\r\nHost: proxy.test\r\n\r\n") }
            var statuses: [Int: Int] = [:]
            for client in clients { statuses[try client.readResponse().status, default: 0] += 1 }
            return statuses
        }

        func get(_ proxy: Int, _ path: String = SharedBudgetTests.path) throws -> (status: Int, seconds: Double) {
            let start = ContinuousClock.now
            let response = try TestClient(port: proxies[proxy].localAddress.port, timeout: 60).request("GET", path)
            let elapsed = ContinuousClock.now - start
            return (response.status, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        }

        var arrivals: [UInt64] {
            sandboxLimit.arrivals(endpoint: sandboxLimit.endpointName(method: "GET", path: SharedBudgetTests.path)).sorted()
        }
    }

    /// The rate the sandbox admitted at after the first `skip` arrivals (the bucket's burst).
    static func steadyRate(_ arrivals: [UInt64], skip: Int) -> Double {
        let steady = arrivals[skip...]
        return Double(steady.count - 1) / (Double(steady.last! - steady.first!) / 1e9)
    }

    @Test(arguments: [2, 3])
    func aBurstThroughEveryReplicaMeetsNo429AndKeepsToTheConfiguredRate(replicas: Int) throws {
        let limit = BucketLimit(rate: 20, burst: 5)
        let r = try Replicas(count: replicas, limit: limit)
        try r.warmUp()
        let statuses = try r.burst(66)
        #expect(statuses == [200: 66])
        #expect(r.sandboxLimit.refused == 0)
        let arrivals = r.arrivals
        #expect(arrivals.count == 66)
        // Burst 5 less the reserve (1 token at 20/s): 4 at once, then 20 a second for all replicas together.
        let rate = Self.steadyRate(arrivals, skip: 4)
        print("shared budget, \(replicas) replicas: 66 requests, 0 refused, steady rate \(String(format: "%.2f", rate))/s (configured \(limit.rate)/s)")
        #expect(abs(rate - limit.rate) / limit.rate <= 0.05, "admitted \(rate)/s")
        for proxy in r.proxies { #expect(proxy.sharedBudget?.isUp == true) }
        // Every replica had its share of the waiting.
        // (An access line is written after its response has gone: wait for it.)
        for logs in r.logs { #expect(eventually { logs.all.contains { $0.contains("wait_ms=") } }) }
    }

    @Test func theSharedBudgetOverTLS() throws {
        let limit = BucketLimit(rate: 20, burst: 5)
        let r = try Replicas(count: 2, limit: limit, redisTLS: true)
        try r.warmUp()
        #expect(try r.burst(44) == [200: 44])
        #expect(r.sandboxLimit.refused == 0)
        // Every replica used the shared buckets over TLS: never down, and the pace is the
        // configured one for both together.
        #expect(r.proxies.allSatisfy { $0.sharedBudget?.isUp == true })
        #expect(r.logs.allSatisfy { logs in !logs.all.contains { $0.contains("rate_limit.store.down") } })
        let rate = Self.steadyRate(r.arrivals, skip: 4)
        #expect(abs(rate - limit.rate) / limit.rate <= 0.05, "admitted \(rate)/s")
    }

    @Test func redisAwayMeansLocalBucketsAtAShareAndBackMeansSharedAgain() throws {
        let limit = BucketLimit(rate: 20, burst: 4)
        let r = try Replicas(count: 2, limit: limit, connectTimeout: .milliseconds(500))
        let holder = r.holders[0]
        let admin = try AdminServer(proxy: r.proxies[0], registry: holder.registry, address: SocketAddress(ip: "127.0.0.1", port: 0)!)
        admin.start()
        defer { admin.stop() }
        try r.warmUp()
        #expect(try r.burst(10) == [200: 10])
        #expect(r.proxies.allSatisfy { $0.sharedBudget?.isUp == true })
        let adminClient = { try TestClient(port: admin.localAddress.port) }
        #expect(try adminClient().request("GET", "/readyz").json["rate_limit_store"] as? String == "shared")
        #expect(try adminClient().request("GET", "/metrics").bodyString.contains("floriday_proxy_rate_limit_store_up 1"))

        r.redis.stop()
        // (The sandbox's bucket refills, as Floriday's would while nothing is sent.)
        Thread.sleep(forTimeInterval: 0.5)
        // Each replica keeps answering, from its own buckets at half the rate each.
        #expect(try r.burst(10) == [200: 10])
        #expect(r.proxies.allSatisfy { $0.sharedBudget?.isUp == false })
        #expect(try r.burst(6) == [200: 6])
        for logs in r.logs {
            #expect(eventually { logs.all.filter { $0.contains("rate_limit.store.down") }.count == 1 }, "\(logs.all.filter { $0.contains("rate_limit.store") })")
        }
        let ready = try adminClient().request("GET", "/readyz")
        #expect(ready.status == 200)
        #expect(ready.json["rate_limit_store"] as? String == "local")
        #expect((ready.json["rate_limit_store_detail"] as? String)?.contains("1/2") == true)
        #expect(try adminClient().request("GET", "/metrics").bodyString.contains("floriday_proxy_rate_limit_store_up 0"))
        #expect(r.sandboxLimit.refused == 0)

        Thread.sleep(forTimeInterval: 0.5)
        try r.redis.start()
        #expect(eventually(timeout: 10) { r.proxies.allSatisfy { $0.sharedBudget?.isUp == true } })
        for logs in r.logs { #expect(eventually { logs.all.filter { $0.contains("rate_limit.store.up") }.count == 1 }) }
        #expect(try r.burst(10) == [200: 10])
        #expect(try adminClient().request("GET", "/readyz").json["rate_limit_store"] as? String == "shared")
        #expect(try adminClient().request("GET", "/metrics").bodyString.contains("floriday_proxy_rate_limit_store_up 1"))
        // The buckets are in Redis again (the restarted server started empty).
        guard case .array(let keys) = try Self.redis(port: r.redis.port, ["KEYS", "floriday-proxy:bucket:*"]) else {
            Issue.record("KEYS did not answer a list")
            return
        }
        #expect(keys.count == 1)
        #expect(r.sandboxLimit.refused == 0)
    }

    @Test func aRedisThatRefusesWritesIsLeftForLocalBucketsAndTheProbeBringsItBack() throws {
        let r = try Replicas(count: 1, limit: BucketLimit(rate: 20, burst: 4))
        try r.warmUp()
        #expect(try r.burst(4) == [200: 4])
        let proxy = r.proxies[0]
        #expect(proxy.sharedBudget?.isUp == true)

        // As a replica after a failover would: Redis answers, PING passes, writes are refused.
        #expect(try Self.redis(port: r.redis.port, ["CONFIG", "SET", "min-replicas-to-write", "1"]) == .status("OK"))
        Thread.sleep(forTimeInterval: 0.3)   // the sandbox's bucket refills
        #expect(try r.burst(4) == [200: 4])
        #expect(proxy.sharedBudget?.isUp == false)
        let downLines = r.logs[0].all.filter { $0.contains("rate_limit.store.down") }
        #expect(downLines.count == 1 && downLines[0].contains("NOREPLICAS"), "\(downLines)")
        // While down, the probe keeps failing: still down a second later, logged once.
        Thread.sleep(forTimeInterval: 1.5)
        #expect(proxy.sharedBudget?.isUp == false)
        #expect(r.logs[0].all.filter { $0.contains("rate_limit.store.down") }.count == 1)

        #expect(try Self.redis(port: r.redis.port, ["CONFIG", "SET", "min-replicas-to-write", "0"]) == .status("OK"))
        #expect(eventually(timeout: 10) { proxy.sharedBudget?.isUp == true })
        #expect(eventually { r.logs[0].all.contains { $0.contains("rate_limit.store.up") } })
        #expect(try r.burst(4) == [200: 4])
        #expect(r.sandboxLimit.refused == 0)
    }

    @Test func aSlowRedisIsLeftForLocalBucketsWithinTheConnectTimeout() throws {
        let r = try Replicas(count: 2, limit: BucketLimit(rate: 20, burst: 4), connectTimeout: .milliseconds(300))
        try r.warmUp()
        #expect(try r.burst(4) == [200: 4])
        r.redis.pause()
        defer { r.redis.resume() }
        let (status, seconds) = try r.get(0)
        #expect(status == 200)
        #expect(seconds < 2, "took \(seconds) s")
        #expect(r.proxies[0].sharedBudget?.isUp == false)
        // Later requests do not wait for Redis at all.
        let again = try r.get(0)
        #expect(again.status == 200 && again.seconds < 0.25, "took \(again.seconds) s")
        r.redis.resume()
        #expect(eventually(timeout: 10) { r.proxies[0].sharedBudget?.isUp == true })
    }

    @Test func maxWaitingBoundsTheRequestsWaitingInAReplica() throws {
        // 0.5/s, burst 1: the first goes at once, each next one waits 2 s longer. (The sandbox
        // is lenient here: pacing is another test's subject.)
        let r = try Replicas(count: 1, limit: BucketLimit(rate: 0.5, burst: 1), sandbox: BucketLimit(rate: 10, burst: 10)) {
            $0.rateLimit.maxWaiting = 2
        }
        try r.warmUp()
        let proxy = r.proxies[0]
        func waiting() -> Int { proxy.organizationStatus().reduce(0) { $0 + $1.waiting } }
        #expect(try r.get(0).status == 200)
        let waiters = try (0..<2).map { _ in try TestClient(port: proxy.localAddress.port, timeout: 30) }
        for (index, client) in waiters.enumerated() {
            try client.send("GET \(Self.path) HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
            #expect(eventually { waiting() == index + 1 })
        }
        // Two wait in this replica: the third is refused at once, without asking Redis, with
        // about the latest one's wait (4 s) as Retry-After.
        let refused = try TestClient(port: proxy.localAddress.port).request("GET", Self.path)
        #expect(refused.status == 429)
        #expect(refused.json["reason"] as? String == "queue-full")
        #expect(refused.header("retry-after").flatMap(Int.init).map { (3...4).contains($0) } == true, "\(refused.header("retry-after") ?? "none")")
        for client in waiters { #expect(try client.readResponse().status == 200) }
        // The queue is empty again: the next one waits for its turn instead of being refused.
        #expect(waiting() == 0)
        #expect(try r.get(0).status == 200)
        // The refused one was never forwarded.
        #expect(r.arrivals.count == 4)
    }

    @Test func aFloriday429SeenByOneReplicaMakesTheOthersWait() throws {
        // The proxies believe in 1/s burst 5; Floriday (the sandbox) allows 1/s burst 1.
        let r = try Replicas(count: 2, limit: BucketLimit(rate: 1, burst: 5), sandbox: BucketLimit(rate: 1, burst: 1))
        try r.warmUp()
        #expect(try r.get(0).status == 200)
        #expect(try r.get(0).status == 429)   // Floriday's, passed on; the shared bucket is emptied
        #expect(r.sandboxLimit.refused == 1)
        // The drain goes to Redis as the 429 goes back: wait until it is there.
        let bucket = SharedBucketStore.bucketName(apiKey: "sandbox-api-key", endpoint: "GET \(Self.glob)")
        #expect(eventually(timeout: 10) { (try? Self.redis(port: r.redis.port, ["HGET", bucket, "tokens"]).string.flatMap(Double.init)).map { $0 < 1 } == true })
        // Without the drain replica 1 would find 3 tokens left and go at once (and meet a 429).
        let (status, seconds) = try r.get(1)
        #expect(status == 200)
        #expect(seconds >= 0.5, "replica 1 went after \(seconds) s")
        #expect(r.sandboxLimit.refused == 1)
        #expect(eventually { r.logs[1].all.contains { $0.contains("wait_ms=") } })
    }

    /// One command to the Redis on `port`, from a client of its own.
    static func redis(port: Int, _ command: [String]) throws -> RedisReply {
        let group = EventLoopGroup(loopCount: 1)
        let loop = group.loops[0]
        defer { withExtendedLifetime(group) {} }
        let result = Locked<Result<RedisReply, RedisError>?>(nil)
        loop.execute {
            let client = RedisClient(endpoint: RedisEndpoint(host: "127.0.0.1", port: port), loop: loop, timeout: .seconds(5))
            client.send(command) { reply in
                result.withLock { $0 = reply }
                client.close()
            }
        }
        guard eventually(timeout: 10, { result.withLock { $0 } != nil }) else { throw TestClient.Failure(description: "Redis did not answer") }
        return try result.withLock { $0 }!.get()
    }
}
