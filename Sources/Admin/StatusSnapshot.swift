import Foundation
import Proxy

/// One organisation's line on the status page, where the proxy serves several organisations
/// and shapes their request rates. Supplied through `AdminServer.organizations`; without it the
/// page and `/status.json` have no organisation section.
public struct OrganizationStatus: Sendable, Equatable {
    public var name: String
    /// Requests held back now, waiting for the organisation's rate allowance.
    public var waiting: Int
    /// 429 answers (from Floriday or the proxy's own shaping) since start.
    public var tooManyRequests: Int

    public init(name: String, waiting: Int, tooManyRequests: Int) {
        self.name = name
        self.waiting = waiting
        self.tooManyRequests = tooManyRequests
    }
}

/// The outcome of the latest readiness check (the one `/readyz` answers with).
struct ReadinessResult: Sendable, Equatable {
    var ready: Bool
    /// The problem type when not ready: `token-unavailable` or `upstream-unreachable`.
    var problem: String?
    var detail: String?
    var checkedAt: WallTime
}

/// Everything the status page and `/status.json` show, read once per request.
struct StatusSnapshot {
    struct Token {
        var valid: Bool
        var expiresInSeconds: Int?
        var fetches: Int
        var failures: Int
        var lastFetch: TokenFetchHistory.Fetch?
        var lastSuccess: WallTime?
        /// Why no token can be had now (the IDM's reason), while fetches fail.
        var currentError: String?
        var currentErrorKind: String?
        var retryInSeconds: Int?
        var recentFailures: [TokenFetchHistory.Fetch]
    }
    struct Upstream {
        var url: String
        var httpProtocol: String
        var connectionsOpen: Int
        var handshakes: Int
        var requests: Int
        var reusedRequests: Int
        /// Share of upstream requests sent on a connection kept from an earlier one.
        var reuseRatio: Double? { requests > 0 ? Double(reusedRequests) / Double(requests) : nil }
    }
    struct Requests {
        var inFlight: Int
        var total: Int
        /// Per status class 1xx … 5xx.
        var lastMinute: [Int]
        var lastHour: [Int]
        /// The chart's window, per second.
        var recent: RequestWindow
    }

    /// Seconds the chart covers.
    static let chartSeconds = 300

    var version: String
    var generatedAt: WallTime
    var uptimeSeconds: Int
    var environment: String
    var listen: String
    var readiness: ReadinessResult?
    var token: Token
    var upstream: Upstream
    var requests: Requests
    var retriesAfter401: (total: Int, succeeded: Int, failed: Int)
    var errors: [ProblemRecord]
    var organizations: [OrganizationStatus]?

    init(proxy: ProxyServer, readiness: ReadinessResult?, organizations: [OrganizationStatus]?) {
        let config = proxy.config
        let stats = proxy.stats
        version = ProxyVersion.current
        generatedAt = Date().timeIntervalSince1970
        uptimeSeconds = Int((ContinuousClock.Instant.now - stats.started).components.seconds)
        environment = config.environment.rawValue
        listen = "\(proxy.localAddress)"
        self.readiness = readiness

        let cached = proxy.tokens.cachedToken
        let valid = cached?.isUsable() ?? false
        let lastError = proxy.tokens.lastError
        token = Token(
            valid: valid,
            expiresInSeconds: valid ? cached.map { Int($0.secondsUntilExpiry) } : nil,
            fetches: proxy.tokens.fetchCount,
            failures: proxy.tokens.failureCount,
            lastFetch: stats.tokenFetches.last,
            lastSuccess: stats.tokenFetches.lastSuccess,
            currentError: lastError?.message,
            currentErrorKind: lastError?.kind.rawValue,
            retryInSeconds: lastError?.retryAfter,
            recentFailures: stats.tokenFetches.recentFailures)

        // What ALPN settled on for the open connections; before the first one, what is offered.
        let isTLS = config.apiURL.description.hasPrefix("https:")
        let inUse = proxy.pools.stats.protocolSummary
        let httpProtocol: String
        switch (isTLS, inUse) {
        case (false, _): httpProtocol = "HTTP/1.1"
        case (true, "h2"?): httpProtocol = "HTTP/2 over TLS"
        case (true, "http/1.1"?): httpProtocol = "HTTP/1.1 over TLS"
        case (true, let both?): httpProtocol = "\(both) over TLS"
        case (true, nil): httpProtocol = config.upstreamHTTP2 == .never ? "HTTP/1.1 over TLS" : "HTTP/2 or HTTP/1.1 over TLS (ALPN, upstream_http2: \(config.upstreamHTTP2.rawValue))"
        }
        upstream = Upstream(
            url: config.apiURL.description,
            httpProtocol: httpProtocol,
            connectionsOpen: proxy.pools.stats.openConnections,
            handshakes: proxy.pools.stats.handshakes,
            requests: stats.upstreamRequests,
            reusedRequests: stats.upstreamRequestsOnReusedConnections)

        let now = stats.history.second()
        let hour = stats.history.window(seconds: RequestHistory.capacity, endingAt: now)
        let chart = stats.history.window(seconds: Self.chartSeconds, endingAt: now)
        let minute = stats.history.window(seconds: 60, endingAt: now)
        requests = Requests(
            inFlight: stats.requestsInFlight,
            total: stats.requestsTotal,
            lastMinute: (1...5).map { minute.total(statusClass: $0) },
            lastHour: (1...5).map { hour.total(statusClass: $0) },
            recent: chart)
        retriesAfter401 = (stats.retriesAfter401, stats.retriesAfter401Succeeded, stats.retriesAfter401Failed)
        errors = stats.recentProblems.newestFirst
        self.organizations = organizations.flatMap { $0.isEmpty ? nil : $0 }
    }
}

/// Times as the page and the JSON write them: RFC 3339 in UTC, to the second.
func rfc3339(_ time: WallTime) -> String {
    var seconds = time_t(time.rounded(.down))
    var parts = tm()
    gmtime_r(&seconds, &parts)
    return String(format: "%04d-%02d-%02dT%02d:%02d:%02dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
                  Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
}
