import Foundation

/// The sandbox's memory: its clients, API keys, the tokens it issued, the failures it has been
/// told to simulate and counters of what it has seen. Safe to use from any thread; every
/// access goes through one lock, and no lock is held while a response is built from a snapshot.
public final class SandboxState: @unchecked Sendable {
    /// Counts of what the sandbox has answered, for tests that assert how a client behaved.
    struct Counters: Sendable {
        var tokenRequests = 0
        var tokensIssued = 0
        var metadataRequests = 0
        var apiRequests = 0
        var apiUnauthorized = 0
    }

    /// All mutable state, guarded by `lock`.
    struct Store {
        var issuerPath: String
        var apiKeys: Set<String>
        var tokenLifetime: Int
        var tokens: [String: TokenRecord] = [:]
        var idmFailure: IDMFailure?
        var apiFailure: Int?
        var counters = Counters()
        var now: @Sendable () -> Date = { Date() }
        var clockOffset: TimeInterval = 0
        /// The base URL `handle` was last called with, for the `iss` of directly issued tokens.
        var lastBaseURL = "https://localhost"
    }

    /// The clients the identity server accepts, in the order given (which orders `scopes_supported`).
    public let clients: [SandboxClient]
    let initialTokenLifetime: Int
    private let lock = NSLock()
    private var store: Store

    /// - Parameters:
    ///   - issuerPath: the authorization server's path; the issuer is the sandbox's base URL plus this.
    ///   - tokenLifetime: seconds a token lives, reported as `expires_in`.
    public init(
        issuerPath: String = "/oauth2/ausSandbox",
        clients: [SandboxClient] = [.default],
        apiKeys: Set<String> = ["sandbox-api-key"],
        tokenLifetime: Int = 3600
    ) {
        self.clients = clients
        self.initialTokenLifetime = tokenLifetime
        self.store = Store(
            issuerPath: Self.normalizedPath(issuerPath), apiKeys: apiKeys, tokenLifetime: tokenLifetime)
    }

    func withStore<T>(_ body: (inout Store) throws -> T) rethrows -> T {
        try lock.withLock { try body(&store) }
    }

    // MARK: Settings and knobs

    /// The authorization server's path, e.g. `/oauth2/ausSandbox` (a leading `/` is added and a
    /// trailing one dropped).
    public var issuerPath: String {
        get { withStore { $0.issuerPath } }
        set { withStore { $0.issuerPath = Self.normalizedPath(newValue) } }
    }

    /// The `X-Api-Key` values the API accepts; change it to simulate a key being withdrawn.
    public var apiKeys: Set<String> {
        get { withStore { $0.apiKeys } }
        set { withStore { $0.apiKeys = newValue } }
    }

    /// Lifetime in seconds of tokens issued from now on. Zero or less issues tokens that are
    /// already expired.
    public var tokenLifetime: Int {
        get { withStore { $0.tokenLifetime } }
        set { withStore { $0.tokenLifetime = newValue } }
    }

    /// When set, the token endpoint misbehaves this way for every request.
    public var idmFailure: IDMFailure? {
        get { withStore { $0.idmFailure } }
        set { withStore { $0.idmFailure = newValue } }
    }

    /// When set, every API request is answered with this status and a problem body, before any
    /// token or key check, as when the API's gateway is down.
    public var apiFailure: Int? {
        get { withStore { $0.apiFailure } }
        set { withStore { $0.apiFailure = newValue } }
    }

    /// The sandbox's clock, used for `iat`/`exp` and for expiry checks. Tests replace it, or use
    /// `advanceClock(by:)`, to expire tokens without sleeping.
    public var now: @Sendable () -> Date {
        get { withStore { $0.now } }
        set { withStore { $0.now = newValue } }
    }

    /// Moves the sandbox's clock forward (or back, for a negative interval) on top of `now`.
    public func advanceClock(by seconds: TimeInterval) {
        withStore { $0.clockOffset += seconds }
    }

    /// The current time on the sandbox's clock, in whole seconds since 1970 as JWTs count it.
    var currentSeconds: Int {
        let (now, offset) = withStore { ($0.now, $0.clockOffset) }
        return Int((now().timeIntervalSince1970 + offset).rounded(.down))
    }

    // MARK: Tokens

    /// Every token issued so far is refused by the API from now on; later tokens are fine.
    /// Returns how many tokens were newly revoked.
    @discardableResult
    public func revokeAllTokens() -> Int {
        withStore { store in
            var count = 0
            for key in store.tokens.keys where !store.tokens[key]!.revoked {
                store.tokens[key]!.revoked = true
                count += 1
            }
            return count
        }
    }

    /// Revokes one token (the bare token, without `Bearer `). Unknown tokens are ignored.
    public func revoke(token: String) {
        withStore { $0.tokens[token]?.revoked = true }
    }

    /// Issues a token directly, bypassing HTTP: the client and scopes are not checked against
    /// `clients`, and the counters are not touched. `lifetime` defaults to `tokenLifetime`.
    /// Its `iss` uses the base URL `handle` last saw (`https://localhost` before any request).
    public func issueToken(clientID: String, scopes: [String], lifetime: Int? = nil) -> String {
        mintToken(issuer: nil, clientID: clientID, scopes: scopes, lifetime: lifetime)
    }

    /// Mints and records a token. `issuer` is nil outside HTTP, where the base URL is unknown.
    func mintToken(issuer: String?, clientID: String, scopes: [String], lifetime: Int?) -> String {
        let issuedAt = currentSeconds
        let (issuerPath, baseURL, defaultLifetime) = withStore {
            ($0.issuerPath, $0.lastBaseURL, $0.tokenLifetime)
        }
        let expiresAt = issuedAt + (lifetime ?? defaultLifetime)
        let token = SandboxToken.mint(
            issuer: issuer ?? baseURL + issuerPath,
            clientID: clientID, scopes: scopes, issuedAt: issuedAt, expiresAt: expiresAt)
        withStore { store in
            store.tokens[token] = TokenRecord(clientID: clientID, scopes: scopes, expiresAt: expiresAt)
            Self.pruneIfLarge(&store, now: issuedAt)
        }
        return token
    }

    /// A long-running demo issues tokens forever; forget those that expired over an hour ago
    /// once there are many. A forgotten token is refused just like an expired one.
    private static func pruneIfLarge(_ store: inout Store, now: Int) {
        guard store.tokens.count > 10_000 else { return }
        store.tokens = store.tokens.filter { $0.value.expiresAt > now - 3600 }
    }

    // MARK: Counters

    /// POSTs to the token endpoint, whatever their outcome.
    public var tokenRequests: Int { withStore { $0.counters.tokenRequests } }
    /// Tokens the token endpoint issued (not those from `issueToken`).
    public var tokensIssued: Int { withStore { $0.counters.tokensIssued } }
    /// GETs of the metadata document, under any of its names.
    public var metadataRequests: Int { withStore { $0.counters.metadataRequests } }
    /// Requests to API paths, whatever their outcome.
    public var apiRequests: Int { withStore { $0.counters.apiRequests } }
    /// 401s the API sent.
    public var apiUnauthorized: Int { withStore { $0.counters.apiUnauthorized } }

    public func resetCounters() {
        withStore { $0.counters = Counters() }
    }

    /// Back to the initial settings: counters, failures and token lifetime reset; issued tokens,
    /// API keys and the clock are kept.
    public func reset() {
        withStore { store in
            store.counters = Counters()
            store.idmFailure = nil
            store.apiFailure = nil
            store.tokenLifetime = initialTokenLifetime
        }
    }

    static func normalizedPath(_ path: String) -> String {
        var p = path
        while p.hasSuffix("/") { p.removeLast() }
        if !p.isEmpty && !p.hasPrefix("/") { p = "/" + p }
        return p
    }
}
