import Config
import EventLoop
import Foundation
import Proxy
import RateLimit
import Sandbox
import Testing

/// The long check of `make rate-limit-check` (about 20 s, real time; not part of `make test`):
/// a burst of 2,000 requests for one key and endpoint through the proxy to the sandbox
/// enforcing the same limit. The sandbox must see no 429, and the rate it admits requests at
/// after the burst must stay within 5 % of the configured one.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["FLORIDAY_RATE_LIMIT_CHECK"] == "1",
                "the long check runs with make rate-limit-check"))
struct RateLimitCheck {
    /// The published 3.4/s burst 1000, twenty times faster, so the check takes seconds, not minutes.
    static let limit = BucketLimit(rate: 68, burst: 1000)
    /// The sandbox's echo under that endpoint's path: the check measures the rate, not the operation's
    /// parameters (the real `GET /trade-items/base-supply` needs some).
    static let path = "/suppliers-api-2026v1/_sandbox/echo/trade-items/base-supply"
    static let rule = "/suppliers-api-*/_sandbox/echo/trade-items/base-supply"

    @Test func aBurstOf2000RequestsMeetsNo429AndTheAdmittedRateIsWithin5Percent() throws {
        let sandboxLimit = SandboxRateLimit(rules: [EndpointRule(methods: ["GET"], path: Self.rule, limit: Self.limit)])
        sandboxLimit.recordsArrivals = true
        let h = try Harness(sandboxRateLimit: sandboxLimit) { config in
            config.rateLimit.enabled = true
            config.rateLimit.maxWait = .seconds(60)
            config.rateLimit.maxWaiting = 2000
            config.timeouts.request = .seconds(60)
            config.rateLimit.endpoints = [.init(methods: ["GET"], path: Self.rule, rate: Self.limit.rate, burst: Int(Self.limit.burst))]
        }
        // 200 connections with 10 pipelined requests each: all 2,000 are offered at once.
        let clients = try (0..<200).map { _ in try h.client(timeout: 120) }
        let request = "GET \(Self.path) HTTP/1.1\r\nHost: proxy.test\r\n\r\n"
        for client in clients { try client.send(String(repeating: request, count: 10)) }
        var statuses: [Int: Int] = [:]
        for client in clients {
            for _ in 0..<10 { statuses[try client.readResponse().status, default: 0] += 1 }
        }
        #expect(statuses == [200: 2000])
        #expect(sandboxLimit.refused == 0)
        let arrivals = sandboxLimit.arrivals(endpoint: sandboxLimit.endpointName(method: "GET", path: Self.path))
        #expect(arrivals.count == 2000)
        // After the burst: arrivals 1,001 to 2,000 come at the bucket's rate.
        let steady = arrivals.sorted()[1000...]
        let seconds = Double(steady.last! - steady.first!) / 1e9
        let rate = Double(steady.count - 1) / seconds
        print("rate-limit-check: \(statuses) from the proxy, \(sandboxLimit.refused) refused by the sandbox, steady rate \(String(format: "%.2f", rate))/s (configured \(Self.limit.rate)/s)")
        #expect(abs(rate - Self.limit.rate) / Self.limit.rate <= 0.05, "admitted \(rate)/s")
    }
}
