import Auth
import Config
import EventLoop
import HTTP1
import HTTPServer
import Logging
import RateLimit
import Redis
import Synchronization
import TLS
import Upstream

/// What every exchange of one proxy shares.
final class ProxyContext: Sendable {
    private let settingsBox: Locked<ProxySettings>
    /// Read once per request; replaced as a whole by a reload.
    var settings: ProxySettings { settingsBox.withLock { $0 } }
    func update(_ settings: ProxySettings) { settingsBox.withLock { $0 = settings } }
    let pools: UpstreamPoolGroup
    let tokens: TokenProvider
    let accessLog: AccessLog
    let logger: Logger
    let stats: ProxyStats
    let metrics: ProxyMetrics
    let organizations: OrganizationActivity
    /// `Host` of every upstream request: the API's authority.
    let upstreamHostField: HTTPField

    init(settings: ProxySettings, pools: UpstreamPoolGroup, tokens: TokenProvider, accessLog: AccessLog, logger: Logger, stats: ProxyStats,
         metrics: ProxyMetrics, organizations: OrganizationActivity) {
        self.settingsBox = Locked(settings)
        self.pools = pools
        self.tokens = tokens
        self.accessLog = accessLog
        self.logger = logger
        self.stats = stats
        self.metrics = metrics
        self.organizations = organizations
        upstreamHostField = HTTPField("Host", pools.endpoint.authority)
    }

    /// The single place a finished request is accounted for: access log, stats, metrics.
    func record(_ record: AccessRecord, method: String) {
        accessLog.record(record)
        if record.status == 429, let organization = record.organization {
            organizations.counts(for: organization).tooManyRequests.add(1, ordering: .relaxed)
            if record.upstreamDuration != nil { metrics.upstreamRateLimited(organization: organization) }
        }
        stats.requestFinished(status: record.status)
        metrics.requestFinished(method: method, status: record.status, duration: record.duration, upstream: record.upstreamDuration,
                                bytesIn: record.bytesIn, bytesOut: record.bytesOut)
        if let problem = record.problem {
            metrics.proxyError(problem)
            stats.recentProblems.add(problem, status: record.status, method: method, target: record.target, requestID: record.requestID)
        }
        if record.retried {
            let succeeded = record.status != 401 && record.problem == nil && !record.clientGone
            metrics.retryAfter401(succeeded: succeeded)
            stats.retryFinished(succeeded: succeeded)
        }
    }
}

/// The few settings the pipeline reads per request. A class, immutable: every exchange takes
/// the current one with a single retain (a reload replaces it as a whole).
final class ProxySettings: Sendable {
    /// The API key per organisation.
    let organizations: OrganizationTable
    let retryBodyLimit: Int
    let access: AccessPolicy
    /// This replica's own buckets, at `1 / rate_limit.replicas` of each limit; nil when
    /// `rate_limit.enabled` is false. With a shared store, used while the store is down.
    let limiter: RateLimiter?
    /// The budget in Redis (`rate_limit.store`), when shaping is on and one is configured,
    /// with the limits of the whole budget (`fullLimits`, for the endpoint and its limit).
    let shared: SharedRateBudget?
    let fullLimits: RateLimiter?

    init(_ config: ProxyConfig, limiter: RateLimiter?, shared: SharedRateBudget? = nil) {
        organizations = OrganizationTable(config)
        retryBodyLimit = config.retryBodyLimit
        access = AccessPolicy(config)
        self.limiter = limiter
        if let limiter, let shared {
            self.shared = shared
            fullLimits = config.rateLimit.replicas > 1 ? RateLimiter(policy: RateLimitPolicy(config.rateLimit), clock: SystemClock()) : limiter
        } else {
            self.shared = nil
            fullLimits = nil
        }
    }

    static func limiter(_ config: ProxyConfig, clock: any MonotonicClock) -> RateLimiter? {
        guard config.rateLimit.enabled else { return nil }
        return RateLimiter(policy: RateLimitPolicy(config.rateLimit).divided(among: config.rateLimit.replicas), clock: clock)
    }
}

/// The authenticating proxy: listener, upstream pools and token provider, from one configuration.
public final class ProxyServer: @unchecked Sendable {
    private let configBox: Locked<ProxyConfig>
    /// The configuration in effect (changes with `reload`).
    public var config: ProxyConfig { configBox.withLock { $0 } }
    public let group: EventLoopGroup
    public let tokens: TokenProvider
    public let pools: UpstreamPoolGroup
    public let stats = ProxyStats()
    /// Requests waiting and 429s per organisation (for the status page).
    public let organizationActivity = OrganizationActivity()
    public let logger: Logger
    private let server: HTTPServer
    private let handler: ProxyHandler
    private let context: ProxyContext
    /// `rate_limit.store: redis://…`: the budget every replica shares (nil: in-process buckets).
    public let sharedBudget: SharedRateBudget?

    public var localAddress: SocketAddress { server.localAddress }
    public var activeClientConnections: Int { server.activeConnections }
    /// True when neither client networks nor inbound credentials restrict who may use the proxy.
    public var isOpenToAnyClient: Bool { context.settings.access.isOpen }

    /// One line per organisation (the default key first): requests waiting now and 429s since start.
    public func organizationStatus() -> [(name: String, waiting: Int, tooManyRequests: Int)] {
        organizationActivity.snapshot(context.settings.organizations.all.map(\.name))
    }

    /// The organisations configured now, with their API keys (for `verify`).
    public static func organizationKeys(_ config: ProxyConfig) -> [(name: String, apiKey: String)] {
        OrganizationTable(config).all.map { ($0.name, $0.apiKey) }
    }

    /// Builds everything and binds the listening socket; `start()` begins accepting.
    /// Throws `ProxyStartError` with a one-line reason.
    public init(config: ProxyConfig, logger: Logger, group: EventLoopGroup? = nil, metrics: ProxyMetrics = ProxyMetrics()) throws {
        self.configBox = Locked(config)
        self.logger = logger
        let group = group ?? EventLoopGroup()
        self.group = group

        let http2Mode: UpstreamHTTP2Mode
        switch config.upstreamHTTP2 {
        case .auto: http2Mode = .auto
        case .always: http2Mode = .always
        case .never: http2Mode = .never
        }
        // The IDM stays on HTTP/1.1 (a few token fetches an hour); the API gets h2 by ALPN.
        let tls: TLSContext
        let apiTLS: TLSContext
        do {
            tls = try TLSContext.client(extraCAFile: config.caFile, alpn: ["http/1.1"])
            apiTLS = http2Mode == .never ? tls : try TLSContext.client(extraCAFile: config.caFile, alpn: http2Mode.alpnProtocols)
        } catch {
            throw ProxyStartError(key: "ca_file", message: "cannot set up TLS: \(error)")
        }
        guard let api = AbsoluteURL(config.apiURL.description) else {
            throw ProxyStartError(key: "api_url", message: "not a usable URL")
        }
        var timeouts = UpstreamTimeouts()
        timeouts.connect = config.timeouts.connect
        timeouts.response = config.timeouts.request
        timeouts.bodyStall = config.timeouts.bodyStall
        timeouts.idle = config.timeouts.idle
        var upstreamLimits = HTTP1Limits()
        upstreamLimits.maxHeaderBytes = max(upstreamLimits.maxHeaderBytes, config.limits.maxHeaderBytes)
        pools = UpstreamPoolGroup(
            endpoint: UpstreamEndpoint(host: api.host, port: api.port, tls: api.isTLS ? apiTLS : nil),
            group: group, maxConnections: config.limits.maxUpstreamConnections, timeouts: timeouts, limits: upstreamLimits,
            http2Mode: http2Mode)

        tokens = TokenProvider(settings: try Self.tokenSettings(config), loop: group.loops[0], tlsContext: tls, logger: logger,
                               clock: group.loops[0].clock)

        switch config.rateLimit.store {
        case .memory:
            sharedBudget = nil
        case .redis(let endpoint):
            var storeTLS: TLSContext?
            if endpoint.tls {
                do {
                    storeTLS = try TLSContext.client(extraCAFile: config.caFile, alpn: [])
                } catch {
                    throw ProxyStartError(key: "rate_limit.store", message: "cannot set up TLS: \(error)")
                }
            }
            // A Redis slower than a connect to the API is treated as away.
            sharedBudget = SharedRateBudget(endpoint: endpoint, replicas: config.rateLimit.replicas, loops: group.loops,
                                            timeout: config.timeouts.connect, tls: storeTLS, logger: logger)
        }

        let context = ProxyContext(
            settings: ProxySettings(config, limiter: ProxySettings.limiter(config, clock: group.loops[0].clock), shared: sharedBudget),
            pools: pools, tokens: tokens,
            accessLog: AccessLog(logger: logger, includeQuery: config.log.query),
            logger: logger, stats: stats, metrics: metrics, organizations: organizationActivity)
        metrics.prepare(organizations: OrganizationTable(config).all.map(\.name))
        // Weak: the provider holds this closure. Fetches are single flight, so the error read
        // here is the one this outcome reports.
        tokens.onFetchOutcome = { [stats, weak tokens] outcome in
            metrics.tokenFetch(outcome: outcome)
            stats.tokenFetches.record(outcome: outcome, reason: tokens?.lastError?.message)
        }
        handler = ProxyHandler(context: context)
        self.context = context

        var serverSettings = HTTPServerSettings()
        serverSettings.limits.maxTargetBytes = config.limits.maxTargetBytes
        serverSettings.limits.maxHeaderBytes = config.limits.maxHeaderBytes
        serverSettings.limits.maxHeaders = config.limits.maxHeaders
        serverSettings.limits.maxBodyBytes = UInt64(config.limits.maxBodyBytes)
        serverSettings.requestHeadTimeout = config.timeouts.requestHead
        serverSettings.idleTimeout = config.timeouts.idle
        serverSettings.bodyStallTimeout = config.timeouts.bodyStall

        let address = try Self.resolveListen(host: config.listen.host, port: config.listen.port)
        do {
            server = try HTTPServer(address: address, group: group, settings: serverSettings,
                                    maxConnections: config.limits.maxConnections, handler: handler)
        } catch {
            throw ProxyStartError(key: "listen", message: "cannot listen on \(config.listen): \(error)")
        }
    }

    public func start() {
        server.start()
    }

    /// Applies a new configuration without dropping listeners or connections (SIGHUP).
    /// Credentials, scopes, the token endpoint, the API key and `retry_body_limit` take effect
    /// at once (the cached token is dropped when it was obtained for other credentials); keys
    /// bound to sockets and pools need a restart and are returned by name, unchanged.
    public func reload(_ new: ProxyConfig) throws -> [String] {
        let old = config
        var needRestart: [String] = []
        if new.listen != old.listen { needRestart.append("listen") }
        if new.adminListen != old.adminListen { needRestart.append("admin_listen") }
        if new.apiURL != old.apiURL { needRestart.append("api_url") }
        if new.caFile != old.caFile { needRestart.append("ca_file") }
        if new.timeouts != old.timeouts { needRestart.append("timeouts") }
        if new.limits != old.limits { needRestart.append("limits") }
        if new.log != old.log { needRestart.append("log") }
        if new.shutdownGrace != old.shutdownGrace { needRestart.append("shutdown_grace") }
        if new.upstreamHTTP2 != old.upstreamHTTP2 { needRestart.append("upstream_http2") }
        if new.rateLimit.store != old.rateLimit.store { needRestart.append("rate_limit.store") }
        let tokenSettings = try Self.tokenSettings(new)
        var applied = new
        applied.listen = old.listen
        applied.adminListen = old.adminListen
        applied.apiURL = old.apiURL
        applied.caFile = old.caFile
        applied.timeouts = old.timeouts
        applied.limits = old.limits
        applied.log = old.log
        applied.shutdownGrace = old.shutdownGrace
        applied.upstreamHTTP2 = old.upstreamHTTP2
        applied.rateLimit.store = old.rateLimit.store
        // The buckets (and the requests waiting in them) carry over unless shaping itself changed.
        let limiter = applied.rateLimit == old.rateLimit ? context.settings.limiter : ProxySettings.limiter(applied, clock: group.loops[0].clock)
        context.update(ProxySettings(applied, limiter: limiter, shared: sharedBudget))
        context.metrics.prepare(organizations: OrganizationTable(applied).all.map(\.name))
        let dropped = tokens.update(tokenSettings)
        configBox.withLock { $0 = applied }
        logger.notice("config.reloaded", metadata: ["token_dropped": "\(dropped)", "restart_needed_for": "\(needRestart.joined(separator: ","))"])
        return needRestart
    }

    /// The token provider settings a configuration implies.
    public static func tokenSettings(_ config: ProxyConfig) throws -> TokenSettings {
        guard let issuer = AbsoluteURL(config.issuerURL.description) else {
            throw ProxyStartError(key: "issuer_url", message: "not a usable URL")
        }
        return TokenSettings(
            issuerURL: issuer, tokenURL: config.tokenURL.flatMap { AbsoluteURL($0.description) },
            clientID: config.clientID, clientSecret: config.clientSecret.value, scopes: config.scopes,
            authentication: config.tokenAuthMethod == .clientSecretBasic ? .clientSecretBasic : .clientSecretPost,
            refreshMargin: config.tokenRefreshMargin, requestTimeout: min(config.timeouts.request, .seconds(30)))
    }

    /// Graceful stop: no new connections, idle keep-alive connections closed, in-flight
    /// requests (and requests whose head is arriving) given up to `grace` to finish. `completion` runs when done (off the loops).
    public func shutdown(grace: Duration, completion: @escaping @Sendable () -> Void) {
        server.stopAccepting()
        server.closeConnectionsWhenIdle()
        // The loops' clock, so a test that moves it can let the grace period run out.
        let clock = group.loops[0].clock
        let deadline = clock.nanoseconds + grace.clampedNanoseconds
        let stats = self.stats
        let pools = self.pools
        let server = self.server
        let sharedBudget = self.sharedBudget
        func poll() {
            // Done when every client connection has gone: idle ones were closed at once, busy
            // ones (a request in flight, or a head still arriving) close after their response.
            let drained = stats.requestsInFlight == 0 && server.activeConnections == 0
            if drained || clock.nanoseconds >= deadline {
                pools.shutdown()
                sharedBudget?.close()
                completion()
                return
            }
            group.loops[0].schedule(after: .milliseconds(50)) { poll() }
        }
        group.loops[0].execute { poll() }
    }

    /// A listen address as a socket address (names resolved once, at start-up).
    public static func resolveListen(host: String, port: Int) throws -> SocketAddress {
        if let address = SocketAddress(ip: host, port: port) { return address }
        switch Resolver.lookup(host: host, port: port) {
        case .success(let addresses): return addresses[0]
        case .failure(let error): throw ProxyStartError(key: "listen", message: "cannot resolve \(host): \(error)")
        }
    }
}

/// A start-up failure, named by the configuration key that caused it.
public struct ProxyStartError: Error, CustomStringConvertible {
    public var key: String
    public var message: String
    public init(key: String, message: String) {
        self.key = key
        self.message = message
    }
    public var description: String { "config: \(key): \(message)" }
}

/// The HTTP handler: request filter, then a `ProxyExchange` per request.
final class ProxyHandler: HTTPServerHandler {
    let context: ProxyContext

    init(context: ProxyContext) {
        self.context = context
    }

    func handle(_ exchange: ServerExchange) {
        let requestID = Self.requestID(from: exchange.request.headers)
        let settings = context.settings
        switch requestFilter(exchange.request, client: exchange.remoteAddress, settings: settings) {
        case .failure(let problem):
            context.stats.requestStarted()
            exchange.respond(status: problem.status, headers: problemHeaders(problem, requestID: requestID, request: exchange.request),
                             body: problem.body(requestID: requestID))
            context.record(AccessRecord(
                method: exchange.request.method, target: exchange.request.target, status: problem.status, bytesIn: 0,
                bytesOut: exchange.bytesOut, duration: .now - exchange.startTime, upstreamDuration: nil, retried: false,
                client: exchange.remoteIP ?? "-", requestID: requestID, problem: problem.kind, clientGone: false),
                method: exchange.request.method)
        case .success(let (organization, target)):
            ProxyExchange(client: exchange, context: context, settings: settings, requestID: requestID, target: target,
                          organization: organization).start()
        }
    }

    /// Refuses what the proxy never forwards; picks the organisation (and its key) and the
    /// target to forward. Client checks come before organisation errors, so a client without
    /// access learns nothing about the organisations configured.
    private func requestFilter(_ request: HTTPRequestHead, client: SocketAddress?, settings: ProxySettings) -> Result<(OrganizationRoute, [UInt8]), Problem> {
        if let problem = methodAndTargetFilter(request) { return .failure(problem) }
        if let problem = settings.access.checkClient(request, client: client) { return .failure(problem) }
        let resolved = settings.organizations.resolve(target: HeaderRewrite.originForm(of: request.target)!, headers: request.headers)
        guard case .success(let (organization, target)) = resolved else { return resolved }
        if !settings.access.permits(request, organization: organization.name) {
            return .failure(Problem(.organizationDenied, detail: "This inbound credential may not act for organisation \"\(organization.name)\"."))
        }
        let path = target.firstIndex(of: UInt8(ascii: "?")).map { Array(target[..<$0]) } ?? target
        if let problem = settings.access.checkRules(request, path: path) { return .failure(problem) }
        return resolved
    }

    private func methodAndTargetFilter(_ request: HTTPRequestHead) -> Problem? {
        switch request.method {
        case "CONNECT", "TRACE":
            // CONNECT would open a tunnel past the header rewrite; TRACE would echo our credentials.
            return Problem(.methodNotAllowed, detail: "\(request.method) is not forwarded by this proxy.", reason: "method")
        default:
            break
        }
        guard let target = HeaderRewrite.originForm(of: request.target) else {
            return Problem(.badRequest, detail: "The request target must be a path (origin-form) or an absolute http(s) URL.", reason: "invalid-target")
        }
        if target == [UInt8(ascii: "*")] && request.method != "OPTIONS" {
            return Problem(.badRequest, detail: "The asterisk target is only valid with OPTIONS.", reason: "invalid-target")
        }
        return nil
    }

    private func problemHeaders(_ problem: Problem, requestID: String, request: HTTPRequestHead) -> HTTPHeaders {
        var headers = problem.headers(requestID: requestID)
        if problem.kind == .methodNotAllowed { headers.add("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS") }
        return headers
    }

    func errorResponse(status: Int, code: String, detail: String) -> (HTTPHeaders, [UInt8]) {
        let problem = Problem.from(parseStatus: status, code: code, detail: detail)
        context.logger.notice("request.rejected", metadata: ["status": "\(status)", "reason": "\(code)"])
        return (problem.headers(requestID: nil), problem.body(requestID: nil))
    }

    /// The client's X-Request-Id when it is a sane token, else a fresh random one.
    static func requestID(from headers: HTTPHeaders) -> String {
        if let given = headers.first("x-request-id"), (1...128).contains(given.count),
           given.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) {
            return String(decoding: given, as: UTF8.self)
        }
        var random = RequestIDSource.next()
        let digits: StaticString = "0123456789abcdef"
        return withUnsafeBytes(of: &random) { raw in
            String(unsafeUninitializedCapacity: 32) { buffer in
                for (index, byte) in raw.enumerated() {
                    buffer[2 * index] = digits.utf8Start[Int(byte >> 4)]
                    buffer[2 * index + 1] = digits.utf8Start[Int(byte & 0x0F)]
                }
                return 32
            }
        }
    }
}

/// Request ids: unique within the process and unpredictable-looking, without a system call
/// per request (the system generator costs one `getrandom` per 64 bits). A counter runs
/// through SplitMix64's finaliser, a bijection on 64 bits, under two keys drawn once from
/// the system generator: distinct counts give distinct ids, and processes differ by key.
/// (Ids need uniqueness, not secrecy: they are echoed to clients and logged.)
enum RequestIDSource {
    private static let counter = Atomic<UInt64>(0)
    private static let keys = (UInt64.random(in: .min ... .max), UInt64.random(in: .min ... .max))

    static func next() -> (UInt64, UInt64) {
        let count = counter.add(1, ordering: .relaxed).newValue
        return (mix(count &+ keys.0), mix(count ^ keys.1))
    }

    /// SplitMix64's output function (Steele, Lea, Flood 2014).
    private static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
