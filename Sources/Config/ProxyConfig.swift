/// The complete, validated configuration of the proxy.
public struct ProxyConfig: Sendable, Equatable {
    /// Where clients connect.
    public var listen: HostPort
    /// Picks the default `apiURL` and `issuerURL`.
    public var environment: FloridayEnvironment
    /// The Floriday API; request paths are appended unchanged, so its path is empty.
    public var apiURL: EndpointURL
    /// The OAuth2 issuer; the token endpoint is discovered at
    /// `{issuer}/.well-known/oauth-authorization-server` unless `tokenURL` is set.
    public var issuerURL: EndpointURL
    public var tokenURL: EndpointURL?
    public var clientID: String
    public var clientSecret: Secret
    /// Sent as the `X-Api-Key` header for requests that name no organisation; empty: none
    /// (allowed only when `organizations` are configured).
    public var apiKey: Secret
    /// The organisations requests may name, each with its own API key; one token serves all.
    public var organizations: [Organization] = []
    /// Shaping to Floriday's rate limits.
    public var rateLimit = RateLimitSettings()
    public var scopes: [String]
    public var tokenAuthMethod: TokenAuthMethod
    /// How long before expiry a token is renewed.
    public var tokenRefreshMargin: Duration
    /// Request bodies up to this size are buffered so the request can be replayed after a 401.
    public var retryBodyLimit: Int
    /// HTTP/2 towards the API (TLS ALPN): auto, always or never.
    public var upstreamHTTP2: UpstreamHTTP2Setting
    /// Extra trusted CA certificates (PEM) for the API and the identity provider.
    public var caFile: String?
    /// Permits a staging issuer with the live API and the other way round.
    public var allowMixedEnvironments: Bool
    public var timeouts: Timeouts
    public var limits: Limits
    /// How long in-flight requests may finish after a shutdown signal.
    public var shutdownGrace: Duration
    /// Where `/healthz`, `/readyz` and `/metrics` are served; nil: not at all.
    public var adminListen: HostPort?
    /// Client networks allowed to use the proxy; empty: any.
    public var allowClients: [ClientNetwork] = []
    /// Credentials internal clients must present; empty: none needed.
    public var inboundAuth: [InboundCredential] = []
    /// Method and path rules; empty: everything is allowed.
    public var allow: [AccessRule] = []
    public var log: LogSettings

    public static let defaultListen = HostPort(host: "127.0.0.1", port: 8080)
    public static let defaultAdminListen = HostPort(host: "127.0.0.1", port: 9901)

    public static let defaultScopes = [
        "role:app", "catalog:read", "sales-order:write", "organization:read", "supply:read",
        "supply:write", "sales-order:read", "delivery-conditions:read", "fulfillment:write", "fulfillment:read",
    ]

    /// All defaults, with the given credentials (for tests and the demo).
    public init(clientID: String, clientSecret: String, apiKey: String) {
        self.init(environment: .staging, clientID: clientID, clientSecret: Secret(clientSecret), apiKey: Secret(apiKey))
    }

    /// Defaults for `environment`, with the given credentials.
    public init(environment: FloridayEnvironment, clientID: String, clientSecret: Secret, apiKey: Secret) {
        listen = Self.defaultListen
        self.environment = environment
        apiURL = environment.apiURL
        issuerURL = environment.issuerURL
        tokenURL = nil
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.apiKey = apiKey
        scopes = Self.defaultScopes
        tokenAuthMethod = .clientSecretPost
        tokenRefreshMargin = .seconds(60)
        retryBodyLimit = 1 << 20
        upstreamHTTP2 = .auto
        caFile = nil
        allowMixedEnvironments = false
        timeouts = Timeouts()
        limits = Limits()
        shutdownGrace = .seconds(20)
        adminListen = Self.defaultAdminListen
        log = LogSettings()
    }

    /// The token endpoint's discovery document, used when `tokenURL` is nil.
    public var discoveryURL: EndpointURL {
        issuerURL.appendingPath("/.well-known/oauth-authorization-server")
    }
}
