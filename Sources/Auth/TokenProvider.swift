import EventLoop
import FoundationEssentials
import HTTP1
import JSON
import Logging
import TLS
import Upstream

/// Obtains, caches and renews the OAuth2 access token (client-credentials grant, RFC 6749 §4.4).
///
/// - Cached until expiry; a request that arrives within the refresh margin starts one
///   background refresh and goes out with the still-valid token (Floriday asks that tokens be
///   reused and renewed only when about to be used, so an idle proxy fetches nothing).
/// - Single flight: while no valid token exists, however many requests wait, one token
///   request is in flight; all of them get its outcome.
/// - Failures back off exponentially with jitter, so a broken IDM is not hammered; while
///   backing off without a valid token, callers fail at once with a `Retry-After`.
/// Thread-safe: callers on any loop.
public final class TokenProvider: @unchecked Sendable {
    private let settingsBox: Locked<TokenSettings>
    public var settings: TokenSettings { settingsBox.withLock { $0 } }
    private let loop: EventLoop
    private let tlsContext: TLSContext
    private let logger: Logger
    /// "Now" for expiry, refresh-ahead and back-off; the system's monotonic clock in production.
    private let clock: any MonotonicClock
    private let state: Locked<State>
    private var pools: [String: UpstreamPool] = [:]   // on `loop` only
    /// Told about every fetch's outcome (for metrics): "success" or the failure kind.
    public var onFetchOutcome: (@Sendable (String) -> Void)?

    private struct State {
        var token: AccessToken?
        var inFlight = false
        var waiters: [(loop: EventLoop, completion: (Result<AccessToken, TokenError>) -> Void)] = []
        var consecutiveFailures = 0
        /// No new attempt before this (nanoseconds of `clock`) after a failure.
        var nextAttempt: UInt64?
        var lastError: TokenError?
        var tokenEndpoint: AbsoluteURL?
        var fetches = 0
        var failures = 0
        /// Spreads the back-off of many proxies that failed together.
        var jitter: any RandomNumberGenerator
    }

    /// `loop` runs the IDM exchanges; `tlsContext` verifies the IDM's certificate. `clock` and
    /// `jitter` are for tests (time moved by hand, a seeded generator).
    public init(settings: TokenSettings, loop: EventLoop, tlsContext: TLSContext, logger: Logger,
                clock: any MonotonicClock = SystemClock(), jitter: any RandomNumberGenerator & Sendable = SystemRandomNumberGenerator()) {
        self.settingsBox = Locked(settings)
        self.loop = loop
        self.tlsContext = tlsContext
        self.logger = logger
        self.clock = clock
        self.state = Locked(State(tokenEndpoint: settings.tokenURL, jitter: jitter))
    }

    // MARK: Using tokens

    /// The cached token if it is still usable, without waiting. Inside the refresh margin this
    /// also starts a background refresh (unless one runs or the back-off forbids it).
    public func usableToken() -> AccessToken? {
        let now = clock.nanoseconds
        let (token, startRefresh) = state.withLock { state -> (AccessToken?, Bool) in
            guard let token = state.token, token.isUsable(at: now) else { return (nil, false) }
            if token.wantsRefresh(at: now) && !state.inFlight && (state.nextAttempt.map { now >= $0 } ?? true) {
                state.inFlight = true
                return (token, true)
            }
            return (token, false)
        }
        if startRefresh {
            logger.debug("token.refresh.ahead", metadata: ["expires_in_s": "\(Int(token!.secondsUntilExpiry))"])
            loop.execute { self.fetch() }
        }
        return token
    }

    /// A usable token: at once when cached, else after the (single) fetch in flight.
    /// `completion` runs on `callerLoop`.
    public func token(on callerLoop: EventLoop, completion: @escaping (Result<AccessToken, TokenError>) -> Void) {
        if let token = usableToken() {
            completion(.success(token))
            return
        }
        let now = clock.nanoseconds
        enum Next { case raced, wait, start, fail(TokenError) }
        let next = state.withLock { state -> Next in
            if let token = state.token, token.isUsable(at: now) { return .raced }   // a fetch just finished
            if !state.inFlight, let next = state.nextAttempt, now < next {
                var error = state.lastError ?? TokenError(kind: .backingOff, message: "token unavailable")
                error.retryAfter = Self.wholeSecondsRoundedUp(next - now)
                return .fail(error)
            }
            state.waiters.append((callerLoop, completion))
            if state.inFlight { return .wait }
            state.inFlight = true
            return .start
        }
        switch next {
        case .fail(let error):
            completion(.failure(error))
        case .start:
            loop.execute { self.fetch() }
        case .wait:
            break
        case .raced:
            token(on: callerLoop, completion: completion)
        }
    }

    /// The API refused `token` (401): forget it if it is still the cached one, so the next
    /// caller fetches a fresh one. Fifty concurrent 401s for one token cause one refresh.
    public func invalidate(_ token: AccessToken) {
        state.withLock { state in
            if state.token == token {
                state.token = nil
                // A refused token is new information: allow an immediate attempt.
                state.nextAttempt = nil
            }
        }
    }

    /// Drops the cached token (configuration change).
    public func reset() {
        state.withLock { $0.token = nil; $0.nextAttempt = nil; $0.consecutiveFailures = 0; $0.lastError = nil }
    }

    /// New settings (a configuration reload). The cached token is dropped when it was obtained
    /// for other credentials, scopes or another authorization server; returns whether it was.
    @discardableResult
    public func update(_ new: TokenSettings) -> Bool {
        let old = settingsBox.withLock { old -> TokenSettings in
            defer { old = new }
            return old
        }
        let changed = old.clientID != new.clientID || old.clientSecret != new.clientSecret || old.scopes != new.scopes
            || old.authentication != new.authentication || old.issuerURL != new.issuerURL || old.tokenURL != new.tokenURL
        if changed {
            state.withLock { $0.tokenEndpoint = new.tokenURL }
            reset()
        }
        return changed
    }

    public var cachedToken: AccessToken? { state.withLock { $0.token } }
    public var fetchCount: Int { state.withLock { $0.fetches } }
    public var failureCount: Int { state.withLock { $0.failures } }
    public var lastError: TokenError? { state.withLock { $0.lastError } }

    // MARK: Fetching (on `loop`)

    private func fetch() {
        loop.assertInLoop()
        if let endpoint = state.withLock({ $0.tokenEndpoint }) {
            requestToken(at: endpoint)
            return
        }
        discover { result in
            switch result {
            case .success(let endpoint):
                self.state.withLock { $0.tokenEndpoint = endpoint }
                self.requestToken(at: endpoint)
            case .failure(let error):
                self.finish(.failure(error))
            }
        }
    }

    /// RFC 8414 §3: the metadata document lives at the issuer's well-known URI.
    private func discover(_ completion: @escaping (Result<AbsoluteURL, TokenError>) -> Void) {
        let url = settings.issuerURL.appendingPath("/.well-known/oauth-authorization-server")
        var headers = HTTPHeaders()
        headers.add("Accept", "application/json")
        pool(for: url).fetch(method: "GET", target: url.pathAndQuery, headers: headers) { result in
            switch result {
            case .failure(let error):
                completion(.failure(TokenError(kind: .unreachable, message: "IDM metadata \(url): \(error)")))
            case .success(let response):
                guard response.head.status == 200 else {
                    completion(.failure(TokenError(kind: .rejected, message: "IDM metadata \(url) answered HTTP \(response.head.status)", status: response.head.status)))
                    return
                }
                guard let json = try? JSONParser.parse(response.body),
                      let endpoint = json["token_endpoint"]?.stringValue, let tokenURL = AbsoluteURL(endpoint) else {
                    completion(.failure(TokenError(kind: .malformedResponse, message: "IDM metadata \(url) has no usable token_endpoint")))
                    return
                }
                completion(.success(tokenURL))
            }
        }
    }

    private func requestToken(at url: AbsoluteURL) {
        var form = "grant_type=client_credentials"
        if !settings.scopes.isEmpty {
            form += "&scope=" + FormEncoding.encode(settings.scopes.joined(separator: " "))
        }
        var headers = HTTPHeaders()
        headers.add("Accept", "application/json")
        headers.add("Content-Type", "application/x-www-form-urlencoded")
        switch settings.authentication {
        case .clientSecretPost:
            form += "&client_id=" + FormEncoding.encode(settings.clientID)
            form += "&client_secret=" + FormEncoding.encode(settings.clientSecret)
        case .clientSecretBasic:
            // RFC 6749 §2.3.1: id and secret are form-urlencoded before Base64.
            let pair = FormEncoding.encode(settings.clientID) + ":" + FormEncoding.encode(settings.clientSecret)
            headers.add("Authorization", "Basic " + Data(pair.utf8).base64EncodedString())
        }
        let started = clock.nanoseconds
        state.withLock { $0.fetches += 1 }
        pool(for: url).fetch(method: "POST", target: url.pathAndQuery, headers: headers, body: Array(form.utf8)) { result in
            switch result {
            case .failure(let error):
                // The endpoint may have moved: discover again next time (unless configured).
                if self.settings.tokenURL == nil { self.state.withLock { $0.tokenEndpoint = nil } }
                self.finish(.failure(TokenError(kind: .unreachable, message: "IDM token endpoint \(url.authority): \(error)")))
            case .success(let response):
                self.finish(TokenResponseParser.parse(response, margin: self.settings.refreshMargin, requested: started, clock: self.clock))
            }
        }
    }

    private func finish(_ result: Result<AccessToken, TokenError>) {
        let now = clock.nanoseconds
        let waiters = state.withLock { state -> [(loop: EventLoop, completion: (Result<AccessToken, TokenError>) -> Void)] in
            state.inFlight = false
            switch result {
            case .success(let token):
                state.token = token
                state.consecutiveFailures = 0
                state.nextAttempt = nil
                state.lastError = nil
            case .failure(var error):
                state.failures += 1
                state.consecutiveFailures += 1
                let delay = Self.backoff(failures: state.consecutiveFailures, using: &state.jitter).clampedNanoseconds
                state.nextAttempt = now + delay
                error.retryAfter = Self.wholeSecondsRoundedUp(delay)
                state.lastError = error
            }
            let waiters = state.waiters
            state.waiters = []
            return waiters
        }
        onFetchOutcome?(result.map { _ in "success" }.mapError { $0 }.successOrKind)
        switch result {
        case .success(let token):
            logger.info("token.fetched", metadata: ["lifetime_s": "\(Int(token.lifetime.seconds))", "scope": "\(token.scope ?? "-")"])
        case .failure(let error):
            logger.warning("token.failed", metadata: ["reason": "\(error.message)", "kind": "\(error.kind.rawValue)"])
        }
        let delivered: Result<AccessToken, TokenError> = result.mapError { error in
            var error = error
            error.retryAfter = state.withLock { $0.lastError?.retryAfter }
            return error
        }
        for waiter in waiters {
            waiter.loop.execute { waiter.completion(delivered) }
        }
    }

    /// 1 s, 2 s, 4 s ... capped at 60 s, each scaled by a random 50–100 % (jitter spreads
    /// the retries of many proxies that failed together).
    static func backoff(failures: Int, using generator: inout some RandomNumberGenerator) -> Duration {
        let base = min(60.0, pow(2.0, Double(min(62, max(0, failures - 1)))))
        return .milliseconds(Int(base * Double.random(in: 0.5...1.0, using: &generator) * 1000))
    }

    /// A `Retry-After` value: whole seconds, at least 1.
    static func wholeSecondsRoundedUp(_ nanoseconds: UInt64) -> Int {
        max(1, Int((nanoseconds + 999_999_999) / 1_000_000_000))
    }

    private func pool(for url: AbsoluteURL) -> UpstreamPool {
        loop.assertInLoop()
        let key = "\(url.scheme)://\(url.authority)"
        if let pool = pools[key] { return pool }
        var timeouts = UpstreamTimeouts()
        timeouts.connect = min(settings.requestTimeout, .seconds(10))
        timeouts.response = settings.requestTimeout
        timeouts.bodyStall = settings.requestTimeout
        timeouts.idle = .seconds(30)
        let endpoint = UpstreamEndpoint(host: url.host, port: url.port, tls: url.isTLS ? tlsContext : nil)
        let pool = UpstreamPool.standalone(endpoint: endpoint, loop: loop, maxConnections: 2, timeouts: timeouts)
        pools[key] = pool
        return pool
    }
}

extension Result where Success == String, Failure == TokenError {
    fileprivate var successOrKind: String {
        switch self {
        case .success(let value): return value
        case .failure(let error): return error.kind.rawValue
        }
    }
}
