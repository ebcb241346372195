import CoreMetrics
import EventLoop

/// The proxy's metrics, recorded through swift-metrics with an injected factory, so the proxy
/// knows nothing of how (or whether) they are exported. Gauges that describe a state (open
/// connections, token expiry) are sampled when scraped instead of updated per request.
public final class ProxyMetrics: @unchecked Sendable {
    private let factory: MetricsFactory
    /// Per status class, indexed like `statusClasses`.
    private let requestDurations: [CoreMetrics.Timer]
    private let upstreamDuration: CoreMetrics.Timer
    private let upstreamRateLimited = Locked<[String: Counter]>([:])
    private let rateLimitCounters = Locked<[String: Counter]>([:])
    private let waitingGauges = Locked<[String: (count: Int, gauge: Gauge)]>([:])
    private let waitTimers = Locked<[String: CoreMetrics.Timer]>([:])
    private let bytesIn: Counter
    private let bytesOut: Counter
    /// Per (method, status class), indexed `method * 7 + class`: made up front, so counting a
    /// request is an array lookup, not a lock and a dictionary.
    private let requestCounters: [Counter]
    private static let methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"]
    private static let statusClasses = ["none", "1xx", "2xx", "3xx", "4xx", "5xx", "other"]
    private let errorCounters = Locked<[String: Counter]>([:])
    private let retryCounters: [Bool: Counter]
    private let tokenCounters = Locked<[String: Counter]>([:])

    public init(factory: MetricsFactory = NOOPMetricsHandler.instance) {
        self.factory = factory
        requestDurations = Self.statusClasses.map {
            Timer(label: "floriday_proxy_request_duration_seconds", dimensions: [("status_class", $0)], factory: factory)
        }
        upstreamDuration = Timer(label: "floriday_proxy_upstream_duration_seconds", dimensions: [], factory: factory)
        bytesIn = Counter(label: "floriday_proxy_received_bytes_total", dimensions: [], factory: factory)
        bytesOut = Counter(label: "floriday_proxy_sent_bytes_total", dimensions: [], factory: factory)
        var counters: [Counter] = []
        for method in Self.methods {
            for statusClass in Self.statusClasses {
                counters.append(Counter(label: "floriday_proxy_requests_total", dimensions: [("method", method), ("status_class", statusClass)], factory: factory))
            }
        }
        requestCounters = counters
        retryCounters = [
            true: Counter(label: "floriday_proxy_401_retries_total", dimensions: [("outcome", "success")], factory: factory),
            false: Counter(label: "floriday_proxy_401_retries_total", dimensions: [("outcome", "failure")], factory: factory),
        ]
    }

    /// One finished request.
    func requestFinished(method: String, status: Int, duration: Duration, upstream: Duration?, bytesIn: Int, bytesOut: Int) {
        // Unusual methods share one label value so a client cannot grow the label set at will.
        let methodIndex = Self.methods.firstIndex(of: method) ?? Self.methods.count - 1
        let classIndex = status == 0 ? 0 : (100..<600).contains(status) ? status / 100 : Self.statusClasses.count - 1
        requestCounters[methodIndex * Self.statusClasses.count + classIndex].increment()
        requestDurations[classIndex].recordNanoseconds(duration.nanoseconds)
        if let upstream {
            upstreamDuration.recordNanoseconds(upstream.nanoseconds)
        }
        if bytesIn > 0 { self.bytesIn.increment(by: bytesIn) }
        if bytesOut > 0 { self.bytesOut.increment(by: bytesOut) }
    }

    /// Makes the per-organisation series up front, so they are exported (as 0) before the
    /// first 429: alert rules see a series.
    func prepare(organizations: [String]) {
        for organization in organizations {
            _ = counter(in: upstreamRateLimited, key: organization, label: "floriday_proxy_upstream_rate_limited_total", dimension: "organization")
        }
    }

    /// The API's own 429 (its rate limits are per API key and endpoint).
    func upstreamRateLimited(organization: String) {
        counter(in: upstreamRateLimited, key: organization, label: "floriday_proxy_upstream_rate_limited_total", dimension: "organization").increment()
    }

    enum RateLimitOutcome: String { case admitted, waited, refused }

    /// A request went at once (`admitted`), after waiting (`waited`), or was refused by the proxy.
    func rateLimit(organization: String, endpoint: String, outcome: RateLimitOutcome) {
        let key = "\(organization)\u{0}\(endpoint)\u{0}\(outcome.rawValue)"
        rateLimitCounters.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = Counter(label: "floriday_proxy_rate_limit_requests_total",
                                  dimensions: [("organization", organization), ("endpoint", endpoint), ("outcome", outcome.rawValue)], factory: factory)
            counters[key] = counter
            return counter
        }.increment()
    }

    /// Requests waiting for their turn now, per organisation and endpoint.
    func waiting(organization: String, endpoint: String, delta: Int) {
        waitingGauges.withLock { gauges in
            let key = "\(organization)\u{0}\(endpoint)"
            var entry = gauges[key] ?? (0, Gauge(label: "floriday_proxy_rate_limit_waiting",
                                                  dimensions: [("organization", organization), ("endpoint", endpoint)], factory: factory))
            entry.count += delta
            entry.gauge.record(entry.count)
            gauges[key] = entry
        }
    }

    /// How long a request waited for its turn.
    func rateLimitWait(organization: String, _ duration: Duration) {
        waitTimers.withLock { timers in
            if let timer = timers[organization] { return timer }
            let timer = Timer(label: "floriday_proxy_rate_limit_wait_seconds", dimensions: [("organization", organization)], factory: factory)
            timers[organization] = timer
            return timer
        }.recordNanoseconds(duration.nanoseconds)
    }

    func proxyError(_ kind: Problem.Kind) {
        counter(in: errorCounters, key: kind.rawValue, label: "floriday_proxy_errors_total", dimension: "type").increment()
    }

    func retryAfter401(succeeded: Bool) {
        retryCounters[succeeded]!.increment()
    }

    /// A token fetch finished: "success" or the failure kind.
    public func tokenFetch(outcome: String) {
        counter(in: tokenCounters, key: outcome, label: "floriday_proxy_token_fetches_total", dimension: "outcome").increment()
    }

    private func counter(in cache: Locked<[String: Counter]>, key: String, label: String, dimension: String) -> Counter {
        cache.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = Counter(label: label, dimensions: [(dimension, key)], factory: factory)
            counters[key] = counter
            return counter
        }
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
