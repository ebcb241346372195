/// Floriday's two environments; each has its own API and identity provider.
public enum FloridayEnvironment: String, Sendable, CaseIterable {
    case staging, live

    /// The API base URL of this environment.
    public var apiURL: EndpointURL {
        switch self {
        case .staging: EndpointURL(scheme: "https", host: "api.staging.floriday.io")
        case .live: EndpointURL(scheme: "https", host: "api.floriday.io")
        }
    }

    /// The OAuth2 issuer (authorization server) of this environment.
    public var issuerURL: EndpointURL {
        switch self {
        case .staging: EndpointURL(scheme: "https", host: "idm.staging.floriday.io", path: "/oauth2/ausmw6b47z1BnlHkw0h7")
        case .live: EndpointURL(scheme: "https", host: "idm.floriday.io", path: "/oauth2/aus3testdcf2vyfs70i7")
        }
    }

    /// The environment a Floriday API or identity host belongs to; nil for other hosts.
    public static func of(host: String) -> FloridayEnvironment? {
        switch host.lowercased() {
        case "api.staging.floriday.io", "idm.staging.floriday.io": .staging
        case "api.floriday.io", "idm.floriday.io": .live
        default: nil
        }
    }
}

/// How the client credentials are sent to the token endpoint (RFC 6749 section 2.3.1).
public enum TokenAuthMethod: String, Sendable, CaseIterable {
    /// `client_id` and `client_secret` in the form body.
    case clientSecretPost = "client_secret_post"
    /// HTTP Basic authentication.
    case clientSecretBasic = "client_secret_basic"
}

/// Whether the API is spoken to over HTTP/2 (`upstream_http2`), negotiated by TLS ALPN.
public enum UpstreamHTTP2Setting: String, Sendable, CaseIterable {
    /// Offer h2 and http/1.1; use what the API picks.
    case auto
    /// Offer h2 and http/1.1; an API that does not pick h2 is an error.
    case always
    /// Offer http/1.1 only.
    case never
}

public enum LogFormat: String, Sendable, CaseIterable {
    case text, json
}

public struct Timeouts: Sendable, Equatable {
    /// Opening a connection (TCP and TLS) to the API or the identity provider.
    public var connect: Duration
    /// Waiting for the API's response to a request.
    public var request: Duration
    /// A keep-alive connection without traffic is closed after this.
    public var idle: Duration
    /// A client must send its complete request head within this.
    public var requestHead: Duration
    /// A request or response body that makes no progress for this long is aborted.
    public var bodyStall: Duration

    public init(
        connect: Duration = .seconds(5), request: Duration = .seconds(60), idle: Duration = .seconds(75),
        requestHead: Duration = .seconds(10), bodyStall: Duration = .seconds(30)
    ) {
        self.connect = connect
        self.request = request
        self.idle = idle
        self.requestHead = requestHead
        self.bodyStall = bodyStall
    }
}

public struct Limits: Sendable, Equatable {
    /// Request target (path and query) in bytes.
    public var maxTargetBytes: Int
    /// Request head (request line and headers) in bytes.
    public var maxHeaderBytes: Int
    /// Number of request header fields.
    public var maxHeaders: Int
    /// Request body in bytes.
    public var maxBodyBytes: Int
    /// Concurrent client connections.
    public var maxConnections: Int
    /// Concurrent connections to the API.
    public var maxUpstreamConnections: Int

    public init(
        maxTargetBytes: Int = 8 << 10, maxHeaderBytes: Int = 64 << 10, maxHeaders: Int = 100,
        maxBodyBytes: Int = 32 << 20, maxConnections: Int = 4096, maxUpstreamConnections: Int = 64
    ) {
        self.maxTargetBytes = maxTargetBytes
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaders = maxHeaders
        self.maxBodyBytes = maxBodyBytes
        self.maxConnections = maxConnections
        self.maxUpstreamConnections = maxUpstreamConnections
    }
}

public struct LogSettings: Sendable, Equatable {
    /// One of `LogSettings.levels`.
    public var level: String
    public var format: LogFormat
    /// Whether access log lines include the query string.
    public var query: Bool

    public init(level: String = "info", format: LogFormat = .text, query: Bool = false) {
        self.level = level
        self.format = format
        self.query = query
    }

    /// The accepted levels, from most to least verbose (swift-log's names).
    public static let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
}
