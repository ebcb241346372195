import CoreMetrics
import EventLoop
import HTTP1
import HTTPServer
import JSON
import Prometheus
import Proxy
import Upstream

/// The operator's side door, on its own listener so no API path can collide with it:
/// `GET /` (the status page) and `/status.json`, `GET /healthz`, `GET /readyz`, `GET /metrics`
/// (Prometheus text format).
public final class AdminServer: @unchecked Sendable {
    public let registry: PrometheusCollectorRegistry
    private var server: HTTPServer!
    private let handler: AdminHandler
    public var localAddress: SocketAddress { server.localAddress }

    /// Lines for the status page's organisation section (requests waiting, 429s), where the
    /// proxy serves several organisations; nil (the default) leaves the section out.
    public var organizations: (@Sendable () -> [OrganizationStatus])? {
        get { handler.organizations.withLock { $0 } }
        set { handler.organizations.withLock { $0 = newValue } }
    }

    /// A metrics factory writing into a fresh registry, for `ProxyMetrics`.
    public static func makeMetrics() -> (ProxyMetrics, PrometheusCollectorRegistry) {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        let buckets: [Duration] = [.milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
                                   .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
                                   .seconds(5), .seconds(10), .seconds(30), .seconds(60)]
        factory.defaultDurationHistogramBuckets = buckets
        return (ProxyMetrics(factory: factory), registry)
    }

    public init(proxy: ProxyServer, registry: PrometheusCollectorRegistry, address: SocketAddress) throws(SocketError) {
        self.registry = registry
        let handler = AdminHandler(proxy: proxy, registry: registry)
        self.handler = handler
        var settings = HTTPServerSettings()
        settings.limits.maxBodyBytes = 0
        settings.idleTimeout = .seconds(30)
        server = try HTTPServer(address: address, group: proxy.group, settings: settings, maxConnections: 64, handler: handler)
    }

    public func start() { server.start() }

    public func stop() {
        server.stopAccepting()
        server.closeConnectionsWhenIdle()
    }
}

final class AdminHandler: HTTPServerHandler, @unchecked Sendable {
    let proxy: ProxyServer
    let registry: PrometheusCollectorRegistry
    let clientConnections: Prometheus.Gauge
    let inFlight: Prometheus.Gauge
    let upstreamConnections: Prometheus.Gauge
    let upstreamHTTP1Connections: Prometheus.Gauge
    let upstreamHTTP2Connections: Prometheus.Gauge
    let upstreamStreams: Prometheus.Gauge
    let bodyBufferPeak: Prometheus.Gauge
    let streamBufferPeak: Prometheus.Gauge
    let tokenExpiry: Prometheus.Gauge
    let handshakes: Prometheus.Counter
    let ready: Prometheus.Gauge
    /// With `rate_limit.store: redis://…`: 1 while Redis answers, 0 while local buckets shape.
    let rateLimitStoreUp: Prometheus.Gauge?
    let lastHandshakes = Locked(0)
    let organizations = Locked<(@Sendable () -> [OrganizationStatus])?>(nil)
    /// The latest finished readiness check, and whether one is running.
    let readinessState = Locked((latest: ReadinessResult?.none, checking: false))

    /// An upstream handshake this recent counts as "the upstream accepts connections".
    static let upstreamFreshness: Duration = .seconds(300)

    init(proxy: ProxyServer, registry: PrometheusCollectorRegistry) {
        self.proxy = proxy
        self.registry = registry
        clientConnections = registry.makeGauge(name: "floriday_proxy_client_connections", help: "Open client connections.")
        inFlight = registry.makeGauge(name: "floriday_proxy_requests_in_flight", help: "Requests being proxied now.")
        upstreamConnections = registry.makeGauge(name: "floriday_proxy_upstream_connections", help: "Open connections to the API (the pool).")
        upstreamHTTP1Connections = registry.makeGauge(name: "floriday_proxy_upstream_protocol_connections", labels: [("protocol", "http/1.1")],
                                                      help: "Established connections to the API by protocol (ALPN).")
        upstreamHTTP2Connections = registry.makeGauge(name: "floriday_proxy_upstream_protocol_connections", labels: [("protocol", "h2")],
                                                      help: "Established connections to the API by protocol (ALPN).")
        upstreamStreams = registry.makeGauge(name: "floriday_proxy_upstream_streams_in_flight", help: "HTTP/2 streams open on the connections to the API.")
        bodyBufferPeak = registry.makeGauge(name: "floriday_proxy_body_buffer_peak_bytes",
                                            help: "The most body bytes one exchange has held at once since start (the 401 replay copy and the flow-control marks bound it).")
        streamBufferPeak = registry.makeGauge(name: "floriday_proxy_upstream_stream_buffer_peak_bytes",
                                              help: "The most response body bytes one HTTP/2 stream to the API has held at once since start (its receive window bounds it).")
        tokenExpiry = registry.makeGauge(name: "floriday_proxy_token_expiry_seconds", help: "Seconds until the cached access token expires (0: none cached).")
        handshakes = registry.makeCounter(name: "floriday_proxy_upstream_handshakes_total", help: "TLS handshakes with the API.")
        ready = registry.makeGauge(name: "floriday_proxy_ready", help: "Whether the latest readiness check (as /readyz) passed: 1, or not: 0.")
        rateLimitStoreUp = proxy.sharedBudget == nil ? nil : registry.makeGauge(
            name: "floriday_proxy_rate_limit_store_up",
            help: "Whether the shared rate budget's Redis answers: 1, or not: 0 (requests are shaped by local buckets at rate / rate_limit.replicas).")
    }

    func errorResponse(status: Int, code: String, detail: String) -> (HTTPHeaders, [UInt8]) {
        problem(status: status, reason: code, detail: detail)
    }

    func handle(_ exchange: ServerExchange) {
        let path = exchange.request.targetString.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        guard exchange.request.method == "GET" || exchange.request.method == "HEAD" else {
            let (headers, body) = problem(status: 405, reason: "method", detail: "The admin endpoints answer GET only.")
            exchange.respond(status: 405, headers: headers, body: body)
            return
        }
        switch path {
        case "/":
            let snapshot = statusSnapshot(on: exchange.loop)
            var headers = HTTPHeaders()
            headers.add("Content-Type", "text/html; charset=utf-8")
            headers.add("Cache-Control", "no-store")
            headers.add("Content-Security-Policy", StatusPage.contentSecurityPolicy)
            headers.add("X-Content-Type-Options", "nosniff")
            let fragment = exchange.request.targetString.hasSuffix("?part=main")
            exchange.respond(status: 200, headers: headers, body: fragment ? StatusPage.fragment(snapshot) : StatusPage.document(snapshot))
        case "/status.json":
            var headers = HTTPHeaders()
            headers.add("Content-Type", "application/json")
            headers.add("Cache-Control", "no-store")
            exchange.respond(status: 200, headers: headers, body: statusSnapshot(on: exchange.loop).json)
        case "/healthz":
            respondJSON(exchange, 200, "{\"status\":\"ok\"}")
        case "/readyz":
            checkReadiness(on: exchange.loop) { [self] result in
                if result.ready {
                    respondJSON(exchange, 200, "{\"status\":\"ready\"\(rateLimitStoreJSON())}")
                } else {
                    let (headers, body) = problem(status: 503, reason: result.problem ?? "not-ready", detail: result.detail ?? "Not ready.", retryAfter: result.retryAfter)
                    exchange.respond(status: 503, headers: headers, body: body)
                }
            }
        case "/metrics":
            refreshReadiness(on: exchange.loop)
            sample()
            var headers = HTTPHeaders()
            headers.add("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            exchange.respond(status: 200, headers: headers, body: registry.emitToBuffer())
        default:
            let (headers, body) = problem(status: 404, reason: "not-found", detail: "Admin endpoints: / (status page), /status.json, /healthz, /readyz, /metrics.")
            exchange.respond(status: 404, headers: headers, body: body)
        }
    }

    /// The page's data; starts a readiness check in the background so the next one shows it.
    private func statusSnapshot(on loop: EventLoop) -> StatusSnapshot {
        refreshReadiness(on: loop)
        let latest = readinessState.withLock { $0.latest }
        return StatusSnapshot(proxy: proxy, readiness: latest, organizations: organizations.withLock { $0 }?())
    }

    /// Scrapes and the status page never wait on the IDM or the API: they start a check (one
    /// at a time) and show the latest finished one.
    private func refreshReadiness(on loop: EventLoop) {
        let start = readinessState.withLock { state -> Bool in
            if state.checking { return false }
            state.checking = true
            return true
        }
        if start { checkReadiness(on: loop) { _ in } }
    }

    struct ReadinessCheck {
        var ready: Bool
        var problem: String?
        var detail: String?
        var retryAfter: Int?
    }

    /// Ready when a token is cached or can be fetched, and the API accepted a TLS connection
    /// recently (or accepts one now). Every check's outcome becomes the latest.
    private func checkReadiness(on loop: EventLoop, completion: @escaping (ReadinessCheck) -> Void) {
        let finish: (ReadinessCheck) -> Void = { [self] check in
            let result = ReadinessResult(ready: check.ready, problem: check.problem, detail: check.detail, checkedAt: wallNow())
            readinessState.withLock { $0 = (latest: result, checking: false) }
            completion(check)
        }
        proxy.tokens.token(on: loop) { [self] result in
            if case .failure(let error) = result {
                finish(ReadinessCheck(ready: false, problem: "token-unavailable", detail: "No access token: \(error.message)", retryAfter: error.retryAfter))
                return
            }
            if let last = proxy.pools.stats.lastHandshake, ContinuousClock.Instant.now - last < Self.upstreamFreshness {
                finish(ReadinessCheck(ready: true))
                return
            }
            proxy.pools.pool(for: loop).probe { error in
                if let error {
                    finish(ReadinessCheck(ready: false, problem: "upstream-unreachable", detail: "The API does not accept connections: \(error)."))
                } else {
                    finish(ReadinessCheck(ready: true))
                }
            }
        }
    }

    /// The shared rate budget's state for `/readyz`: a replica whose Redis is away stays ready
    /// (it shapes with local buckets), and says so.
    private func rateLimitStoreJSON() -> String {
        guard let budget = proxy.sharedBudget else { return "" }
        switch budget.health {
        case .up:
            return ",\"rate_limit_store\":\"shared\""
        case .down(let reason):
            let detail = "Redis does not answer (\(reason)); requests are shaped by local buckets at 1/\(proxy.config.rateLimit.replicas) of each limit."
            return ",\"rate_limit_store\":\"local\",\"rate_limit_store_detail\":\(jsonString(detail))"
        }
    }

    /// Gauges describe the present, so they are read at scrape time.
    private func sample() {
        rateLimitStoreUp?.set(Int64(proxy.sharedBudget?.isUp == true ? 1 : 0))
        clientConnections.set(Int64(proxy.activeClientConnections))
        inFlight.set(Int64(proxy.stats.requestsInFlight))
        upstreamConnections.set(Int64(proxy.pools.stats.openConnections))
        upstreamHTTP1Connections.set(Int64(proxy.pools.stats.http1Connections))
        upstreamHTTP2Connections.set(Int64(proxy.pools.stats.http2Connections))
        upstreamStreams.set(Int64(proxy.pools.stats.http2StreamsInFlight))
        bodyBufferPeak.set(Int64(proxy.stats.bodyBufferPeak))
        streamBufferPeak.set(Int64(proxy.pools.stats.http2StreamBufferPeak))
        tokenExpiry.set(max(0, proxy.tokens.cachedToken?.secondsUntilExpiry ?? 0))
        ready.set(Int64(readinessState.withLock { $0.latest?.ready ?? false } ? 1 : 0))
        let total = proxy.pools.stats.handshakes
        let delta = lastHandshakes.withLock { last -> Int in
            defer { last = total }
            return total - last
        }
        if delta > 0 { handshakes.increment(by: Int64(delta)) }
    }

    private func respondJSON(_ exchange: ServerExchange, _ status: Int, _ json: String) {
        var headers = HTTPHeaders()
        headers.add("Content-Type", "application/json")
        headers.add("Cache-Control", "no-store")
        exchange.respond(status: status, headers: headers, body: Array(json.utf8))
    }

    private func problem(status: Int, reason: String, detail: String, retryAfter: Int? = nil) -> (HTTPHeaders, [UInt8]) {
        let kind: Problem.Kind
        switch status {
        case 404: kind = .notFound
        case 405: kind = .methodNotAllowed
        case 503 where reason == "token-unavailable": kind = .tokenUnavailable
        case 503: kind = .upstreamUnreachable
        default: kind = .badRequest
        }
        let problem = Problem(kind, detail: detail, reason: reason, retryAfter: retryAfter)
        return (problem.headers(requestID: nil), problem.body(requestID: nil))
    }
}
