import Admin
import Config
import EventLoop
import Foundation
import Proxy
import RateLimit
import Sandbox
import TestSupport
import Testing

/// Shaping against the sandbox enforcing its own limits, on one manual clock: the proxy's
/// timers and both sides' buckets see time pass only when the test moves it.
@Suite struct RateShapingTests {
    static let slow = "/suppliers-api-2026v1/_sandbox/echo/slow/1"
    static let fast = "/suppliers-api-2026v1/_sandbox/echo/fast"
    static func rules(slow: BucketLimit, fast: BucketLimit = BucketLimit(rate: 1, burst: 1)) -> [EndpointRule] {
        [EndpointRule(methods: ["GET"], path: "/suppliers-api-*/_sandbox/echo/slow/*", limit: slow),
         EndpointRule(methods: ["GET"], path: "/suppliers-api-*/_sandbox/echo/fast", limit: fast)]
    }

    final class Setup {
        let clock = ManualClock()
        let holder = PrometheusRegistryHolder()
        let sandboxLimit: SandboxRateLimit
        let h: Harness

        init(proxy: BucketLimit, sandbox: BucketLimit? = nil, scope: RateLimitSettings.Scope = .endpoint, maxWait: Duration = .seconds(30)) throws {
            sandboxLimit = SandboxRateLimit(clock: clock, rules: RateShapingTests.rules(slow: sandbox ?? proxy))
            h = try Harness(clock: clock, metrics: holder.metrics, sandboxRateLimit: sandboxLimit) { config in
                config.rateLimit.enabled = true
                config.rateLimit.scope = scope
                config.rateLimit.rate = 1
                config.rateLimit.burst = 1
                config.rateLimit.maxWait = maxWait
                config.rateLimit.endpoints = [
                    .init(methods: ["GET"], path: "/suppliers-api-*/_sandbox/echo/slow/*", rate: proxy.rate, burst: Int(proxy.burst)),
                    .init(methods: ["GET"], path: "/suppliers-api-*/_sandbox/echo/fast", rate: 1, burst: 1),
                ]
            }
        }

        /// Moves the clock, fires the proxy's due timers, and lets the releases they cause run.
        func move(_ duration: Duration) {
            advance(clock, by: duration, firingTimersOn: h.proxy.group.loops)
            for loop in h.proxy.group.loops { onLoop(loop) {} }
        }

        var waiting: Int { h.proxy.organizationStatus().first?.waiting ?? -1 }

        func send(_ target: String, on client: TestClient) throws {
            try client.send("GET \(target) HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
        }

        var metricsText: String { holder.registry.emitToString() }
    }

    @Test func aBurstWellAboveTheBucketReachesTheAPIAtTheBucketsRateWithNo429() throws {
        let s = try Setup(proxy: BucketLimit(rate: 10, burst: 5))
        let clients = try (0..<20).map { _ in try s.h.client() }
        for client in clients { try s.send(Self.slow, on: client) }
        // Burst 5, less the 50 ms reserve (0.5 token at 10/s): 4 at once, the rest wait.
        #expect(eventually { s.sandboxLimit.admitted == 4 && s.waiting == 16 })
        for step in 1...16 {
            s.move(.milliseconds(100))
            #expect(eventually { s.sandboxLimit.admitted == 4 + step }, "step \(step)")
            #expect(s.sandboxLimit.admitted == 4 + step)
        }
        for client in clients { #expect(try client.readResponse().status == 200) }
        #expect(s.sandboxLimit.refused == 0)
        #expect(s.waiting == 0)
        #expect(eventually { s.h.logs.all.filter { $0.contains("wait_ms=") }.count == 16 })
        let endpoint = "organization=\"(default)\""
        #expect(eventually { s.metricsText.contains("floriday_proxy_rate_limit_requests_total{\(endpoint),endpoint=\"GET /suppliers-api-*/_sandbox/echo/slow/*\",outcome=\"waited\"} 16") })
        #expect(s.metricsText.contains("floriday_proxy_rate_limit_requests_total{\(endpoint),endpoint=\"GET /suppliers-api-*/_sandbox/echo/slow/*\",outcome=\"admitted\"} 4"))
        #expect(s.metricsText.contains("floriday_proxy_rate_limit_waiting{\(endpoint),endpoint=\"GET /suppliers-api-*/_sandbox/echo/slow/*\"} 0"))
    }

    @Test func twoEndpointsDoNotShareABucketAndASlowQueueDoesNotDelayTheOther() throws {
        let s = try Setup(proxy: BucketLimit(rate: 1, burst: 1))
        let slowClients = try (0..<3).map { _ in try s.h.client() }
        for client in slowClients { try s.send(Self.slow, on: client) }
        // The first must have reached the sandbox before the clock moves (else the sandbox
        // would count it as arriving later than the proxy let it go).
        #expect(eventually { s.waiting == 2 && s.sandboxLimit.admitted == 1 })
        // Without moving the clock: the other endpoint's bucket is full.
        #expect(try s.h.client().request("GET", Self.fast).status == 200)
        #expect(s.waiting == 2)
        // Each step waits for its request to arrive: a clock jump while one is on its way
        // would look like network jitter of a second.
        s.move(.milliseconds(1100))
        #expect(eventually { s.sandboxLimit.admitted == 3 })
        s.move(.milliseconds(1100))
        #expect(eventually { s.sandboxLimit.admitted == 4 })
        for client in slowClients { #expect(try client.readResponse().status == 200) }
        #expect(s.sandboxLimit.refused == 0)
    }

    @Test func withScopeKeyTwoEndpointsShareOneBucket() throws {
        let s = try Setup(proxy: BucketLimit(rate: 1, burst: 1), scope: .key)
        #expect(try s.h.client().request("GET", Self.slow).status == 200)
        let other = try s.h.client()
        try s.send(Self.fast, on: other)
        #expect(eventually { s.waiting == 1 })
        s.move(.milliseconds(1100))
        #expect(try other.readResponse().status == 200)
    }

    @Test func aWaitBeyondMaxWaitIsRefusedAtOnceWithRetryAfterAndNothingForwarded() throws {
        let s = try Setup(proxy: BucketLimit(rate: 1, burst: 1), maxWait: .seconds(2))
        #expect(try s.h.client().request("GET", Self.slow).status == 200)
        let waiting = try s.h.client()
        try s.send(Self.slow, on: waiting)
        #expect(eventually { s.waiting == 1 })
        // Its turn would come after 2 s + a little: refused without the clock moving.
        let refused = try s.h.client().request("GET", Self.slow)
        #expect(refused.status == 429)
        #expect(refused.header("content-type") == "application/problem+json")
        #expect((refused.json["type"] as? String) == "urn:floriday-proxy:problem:rate-limited")
        #expect(refused.header("retry-after").flatMap(Int.init).map { $0 >= 1 } == true)
        #expect(s.sandboxLimit.admitted == 1)
        #expect(eventually { s.h.proxy.organizationStatus().first?.tooManyRequests == 1 })
        s.move(.milliseconds(1100))
        #expect(try waiting.readResponse().status == 200)
    }

    @Test func aFloriday429IsPassedThroughUnchangedAndEmptiesTheBucket() throws {
        // The proxy believes in more than the API allows.
        let s = try Setup(proxy: BucketLimit(rate: 10, burst: 10), sandbox: BucketLimit(rate: 1, burst: 2))
        let client = try s.h.client()
        #expect(try client.request("GET", Self.slow).status == 200)
        #expect(try client.request("GET", Self.slow).status == 200)
        let upstream = try client.request("GET", Self.slow)
        #expect(upstream.status == 429)
        #expect(upstream.header("content-type") == "application/problem+json; charset=utf-8")
        #expect(upstream.json["title"] as? String == "Too Many Requests")
        #expect(upstream.json["traceId"] != nil)
        #expect(upstream.header("retry-after") == nil)
        #expect(s.sandboxLimit.refused == 1)
        // The bucket is empty now: the next request waits instead of collecting a second 429.
        try s.send(Self.slow, on: client)
        #expect(eventually { s.waiting == 1 })
        #expect(s.sandboxLimit.refused == 1)
        s.move(.milliseconds(1100))
        #expect(try client.readResponse().status == 200)
        #expect(s.sandboxLimit.refused == 1)
        #expect(eventually { s.metricsText.contains("floriday_proxy_upstream_rate_limited_total{organization=\"(default)\"} 1") })
        #expect(eventually { s.h.proxy.organizationStatus().first?.tooManyRequests == 1 })
    }

    @Test func aWaitingClientThatHangsUpLeavesTheQueue() throws {
        let s = try Setup(proxy: BucketLimit(rate: 1, burst: 1))
        #expect(try s.h.client().request("GET", Self.slow).status == 200)
        do {
            let leaving = try s.h.client()
            try s.send(Self.slow, on: leaving)
            #expect(eventually { s.waiting == 1 })
        }   // closed here
        #expect(eventually { s.waiting == 0 })
        s.move(.milliseconds(1100))
        // Had the request that left been sent, it would have taken this token.
        let next = try s.h.client()
        try s.send(Self.slow, on: next)
        #expect(try next.readResponse().status == 200)
        #expect(s.sandboxLimit.admitted == 2)
        #expect(eventually { s.h.logs.all.contains { $0.contains("client_gone=true") && $0.contains("wait_ms=") } })
    }
}
