import EventLoop
import HTTP1
import Upstream

/// An access token and when it stops being usable.
/// A class, immutable: every request takes the current token, and copying a reference is one
/// retain where copying the fields (strings, the prepared header field, the clock) was ten.
public final class AccessToken: Sendable, Equatable {
    /// The bearer value. Never log it.
    public let value: String
    /// When the token was obtained, when it expires, and from when a request starts a
    /// background refresh (expiry minus the margin): nanoseconds of the provider's clock.
    public let obtainedAt: UInt64
    public let expiresAt: UInt64
    public let refreshFromAt: UInt64
    public let lifetime: Duration
    public let scope: String?
    /// `Authorization: Bearer <value>`, built once per token rather than once per request.
    public let authorizationField: HTTPField
    /// The clock the instants above belong to.
    private let clock: any MonotonicClock

    public init(value: String, obtainedAt: UInt64, expiresAt: UInt64, refreshFromAt: UInt64, lifetime: Duration,
                scope: String?, clock: any MonotonicClock) {
        self.value = value
        self.obtainedAt = obtainedAt
        self.expiresAt = expiresAt
        self.refreshFromAt = refreshFromAt
        self.lifetime = lifetime
        self.scope = scope
        self.clock = clock
        authorizationField = HTTPField("Authorization", "Bearer " + value)
    }

    public static func == (a: AccessToken, b: AccessToken) -> Bool {
        a.value == b.value && a.obtainedAt == b.obtainedAt && a.expiresAt == b.expiresAt
    }

    public func isUsable(at now: UInt64) -> Bool { now < expiresAt }
    /// Usable now, by the clock the token was obtained with.
    public func isUsable() -> Bool { isUsable(at: clock.nanoseconds) }
    public func wantsRefresh(at now: UInt64) -> Bool { now >= refreshFromAt }
    /// Negative once expired.
    public var secondsUntilExpiry: Double {
        let now = clock.nanoseconds
        return now <= expiresAt ? Double(expiresAt - now) / 1e9 : -Double(now - expiresAt) / 1e9
    }
}

public enum TokenAuthentication: String, Sendable {
    /// client_id and client_secret in the form body (RFC 6749 §2.3.1, as Floriday's example does).
    case clientSecretPost = "client_secret_post"
    /// HTTP Basic with the form-urlencoded id and secret (RFC 6749 §2.3.1).
    case clientSecretBasic = "client_secret_basic"
}

public struct TokenSettings: Sendable {
    /// The authorization server's issuer; the token endpoint is discovered from
    /// `{issuer}/.well-known/oauth-authorization-server` (RFC 8414 §3) unless `tokenURL` is set.
    public var issuerURL: AbsoluteURL
    public var tokenURL: AbsoluteURL?
    public var clientID: String
    public var clientSecret: String
    public var scopes: [String]
    public var authentication: TokenAuthentication
    /// How long before expiry a request starts a background refresh; at most half the lifetime.
    public var refreshMargin: Duration
    /// Bound on one IDM exchange (connect included).
    public var requestTimeout: Duration

    public init(issuerURL: AbsoluteURL, tokenURL: AbsoluteURL?, clientID: String, clientSecret: String, scopes: [String],
                authentication: TokenAuthentication = .clientSecretPost, refreshMargin: Duration = .seconds(60),
                requestTimeout: Duration = .seconds(30)) {
        self.issuerURL = issuerURL
        self.tokenURL = tokenURL
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.scopes = scopes
        self.authentication = authentication
        self.refreshMargin = refreshMargin
        self.requestTimeout = requestTimeout
    }
}

/// Why no token could be had. Messages carry the IDM's reason, never a secret.
public struct TokenError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// The IDM could not be reached (DNS, connect, TLS, timeout).
        case unreachable
        /// The IDM refused the client's credentials (`invalid_client`).
        case invalidClient = "invalid_client"
        /// The IDM refused the requested scopes (`invalid_scope`).
        case invalidScope = "invalid_scope"
        /// Any other error answer from the IDM.
        case rejected
        /// The answer was not a usable token response or metadata document.
        case malformedResponse
        /// Earlier failures: no new attempt until the back-off ends.
        case backingOff
    }

    public var kind: Kind
    public var message: String
    /// The IDM's HTTP status, when it answered.
    public var status: Int?
    /// Seconds until the next attempt, when known.
    public var retryAfter: Int?

    public init(kind: Kind, message: String, status: Int? = nil, retryAfter: Int? = nil) {
        self.kind = kind
        self.message = message
        self.status = status
        self.retryAfter = retryAfter
    }

    public var description: String { message }
}
