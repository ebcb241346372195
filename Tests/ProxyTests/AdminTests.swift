import Admin
import Prometheus
import Config
import EventLoop
import Foundation
import Proxy
import Sandbox
import TestSupport
import Testing

/// The admin listener and configuration reloads, against the real proxy and sandbox.
@Suite struct AdminTests {
    private func admin(for h: Harness, registry: PrometheusRegistryHolder) throws -> AdminServer {
        let server = try AdminServer(proxy: h.proxy, registry: registry.registry, address: SocketAddress(ip: "127.0.0.1", port: 0)!)
        server.start()
        return server
    }

    @Test func healthAndReadiness() throws {
        let holder = PrometheusRegistryHolder()
        let h = try Harness(metrics: holder.metrics)
        let admin = try admin(for: h, registry: holder)
        let client = try TestClient(port: admin.localAddress.port)
        #expect(try client.request("GET", "/healthz").status == 200)
        let ready = try client.request("GET", "/readyz")
        #expect(ready.status == 200)
        #expect(h.state.tokenRequests == 1)          // readiness fetched (and cached) a token
        #expect(h.proxy.pools.stats.handshakes >= 1)  // and saw the API accept a TLS connection
        let missing = try client.request("GET", "/nope")
        #expect(missing.status == 404)
        #expect(missing.header("content-type") == "application/problem+json")
        #expect(try client.request("POST", "/healthz", body: []).status == 405)
        admin.stop()
    }

    @Test func notReadyWhenTheIDMRefuses() throws {
        let holder = PrometheusRegistryHolder()
        let h = try Harness(metrics: holder.metrics) { $0.clientSecret = Secret("wrong") }
        let admin = try admin(for: h, registry: holder)
        let ready = try TestClient(port: admin.localAddress.port).request("GET", "/readyz")
        #expect(ready.status == 503)
        #expect(ready.json["type"] as? String == "urn:floriday-proxy:problem:token-unavailable")
        #expect(!ready.bodyString.contains("wrong"))
        admin.stop()
    }

    @Test func notReadyWhenTheAPIIsDown() throws {
        let holder = PrometheusRegistryHolder()
        let h = try Harness(metrics: holder.metrics) { $0.apiURL = try! EndpointURL("https://127.0.0.1:\(FailureTests.closedPort())", key: "api_url") }
        let admin = try admin(for: h, registry: holder)
        let ready = try TestClient(port: admin.localAddress.port).request("GET", "/readyz")
        #expect(ready.status == 503)
        #expect(ready.json["type"] as? String == "urn:floriday-proxy:problem:upstream-unreachable")
        admin.stop()
    }

    @Test func metricsCountWhatHappened() throws {
        let holder = PrometheusRegistryHolder()
        let h = try Harness(metrics: holder.metrics)
        let admin = try admin(for: h, registry: holder)
        let client = try h.client()
        #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x").status == 200)
        h.state.revokeAllTokens()
        #expect(try client.request("POST", "/suppliers-api-2026v1/_sandbox/echo/y", body: Array("abc".utf8)).status == 200)
        _ = try client.request("TRACE", "/x")
        let scraper = try TestClient(port: admin.localAddress.port)
        let expectations = [
            #"floriday_proxy_requests_total{method="GET",status_class="2xx"} 1"#,
            #"floriday_proxy_requests_total{method="POST",status_class="2xx"} 1"#,
            #"floriday_proxy_token_fetches_total{outcome="success"} 2"#,
            #"floriday_proxy_401_retries_total{outcome="success"} 1"#,
            #"floriday_proxy_errors_total{type="method-not-allowed"} 1"#,
            #"floriday_proxy_request_duration_seconds_count{status_class="2xx"} 2"#,
            #"floriday_proxy_request_duration_seconds_count{status_class="4xx"} 1"#,
            "floriday_proxy_upstream_rate_limited_total{organization=\"(default)\"} 0",
            "floriday_proxy_upstream_duration_seconds_count 2",
            "floriday_proxy_client_connections 1",
            "floriday_proxy_upstream_handshakes_total 1",
            "floriday_proxy_received_bytes_total 3",
        ]
        // A request is accounted for just after its response is written: scrape until it shows.
        var text = ""
        _ = eventually {
            text = (try? scraper.request("GET", "/metrics").bodyString) ?? ""
            return expectations.allSatisfy { text.contains($0) }
        }
        for expected in expectations {
            #expect(text.contains(expected), "missing: \(expected)")
        }
        // The POST's 3 bytes were kept for the replay after the 401: the peak counts them.
        let peakLine = text.split(separator: "\n").first { $0.hasPrefix("floriday_proxy_body_buffer_peak_bytes ") }
        let peak = peakLine.flatMap { Double($0.split(separator: " ").last ?? "") } ?? -1
        #expect(peak >= 3 && peak == Double(h.proxy.stats.bodyBufferPeak), "body buffer peak gauge: \(peakLine ?? "missing")")
        // The sandbox speaks h2: its streams' peak is the pool's.
        let streamPeak = Double(h.proxy.pools.stats.http2StreamBufferPeak)
        #expect(text.contains("floriday_proxy_upstream_stream_buffer_peak_bytes \(streamPeak)\n"))
        // A one-hour token fetched moments ago.
        let expiryLine = text.split(separator: "\n").first { $0.hasPrefix("floriday_proxy_token_expiry_seconds ") }
        let expiry = expiryLine.flatMap { Double($0.split(separator: " ").last ?? "") } ?? -1
        #expect(expiry > 3000 && expiry <= 3600, "token expiry gauge: \(expiryLine ?? "missing")")
        admin.stop()
    }

    @Test func reloadAppliesNewCredentialsAndKeepsListening() throws {
        let h = try Harness()
        let client = try h.client()
        #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x").status == 200)
        let firstToken = h.proxy.tokens.cachedToken
        // A new API key applies to the next request; the token stays (same credentials).
        var config = h.proxy.config
        config.apiKey = Secret("rotated-key")
        h.state.apiKeys = ["sandbox-api-key", "rotated-key"]
        #expect(try h.proxy.reload(config).isEmpty)
        let echoed = try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x").json["headers"] as? [String: String]
        #expect(echoed?["x-api-key"] == "rotated-key")
        #expect(h.proxy.tokens.cachedToken == firstToken)
        // Other scopes: the cached token is dropped and a new one fetched.
        config.scopes = ["role:app", "organization:read"]
        config.timeouts.connect = .seconds(1)
        #expect(try h.proxy.reload(config) == ["timeouts"])
        #expect(h.proxy.tokens.cachedToken == nil)
        #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x").status == 200)   // same connection
        #expect(h.state.tokenRequests == 2)
        #expect(h.proxy.config.timeouts.connect == .seconds(5))                        // needs a restart
    }
}

/// A Prometheus registry and the proxy metrics that write into it.
final class PrometheusRegistryHolder {
    let metrics: ProxyMetrics
    let registry: PrometheusCollectorRegistry
    init() {
        (metrics, registry) = AdminServer.makeMetrics()
    }
}
