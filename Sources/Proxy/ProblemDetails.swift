import HTTP1
import JSON

/// Errors the proxy answers itself, as RFC 9457 problem details (`application/problem+json`).
///
/// `type` is a stable URN clients can switch on; `detail` says what happened in words and
/// never contains a secret, a token or a header value from the request.
public struct Problem: Error, Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case badRequest = "bad-request"
        case requestTimeout = "request-timeout"
        case payloadTooLarge = "payload-too-large"
        case uriTooLong = "uri-too-long"
        case headerTooLarge = "header-fields-too-large"
        case methodNotAllowed = "method-not-allowed"
        case notFound = "not-found"
        case unauthorized = "inbound-auth-required"
        case accessDenied = "access-denied"
        case notImplemented = "not-implemented"
        case versionNotSupported = "http-version-not-supported"
        case tokenUnavailable = "token-unavailable"
        case upstreamUnreachable = "upstream-unreachable"
        case upstreamTLS = "upstream-tls-failure"
        case upstreamInvalidResponse = "upstream-invalid-response"
        case upstreamClosed = "upstream-connection-closed"
        case upstreamTimeout = "upstream-timeout"
        case organizationRequired = "organization-required"
        case unknownOrganization = "unknown-organization"
        case organizationConflict = "organization-conflict"
        case organizationDenied = "organization-denied"
        case rateLimited = "rate-limited"

        public var status: Int {
            switch self {
            case .badRequest: return 400
            case .requestTimeout: return 408
            case .payloadTooLarge: return 413
            case .uriTooLong: return 414
            case .headerTooLarge: return 431
            case .methodNotAllowed: return 405
            case .notFound: return 404
            case .unauthorized: return 401
            case .accessDenied: return 403
            case .notImplemented: return 501
            case .versionNotSupported: return 505
            case .tokenUnavailable: return 503
            case .upstreamUnreachable, .upstreamTLS, .upstreamInvalidResponse, .upstreamClosed: return 502
            case .upstreamTimeout: return 504
            case .organizationRequired, .organizationConflict: return 400
            case .unknownOrganization: return 404
            case .organizationDenied: return 403
            case .rateLimited: return 429
            }
        }

        public var title: String {
            switch self {
            case .badRequest: return "Malformed request"
            case .requestTimeout: return "Request timed out"
            case .payloadTooLarge: return "Request body too large"
            case .uriTooLong: return "Request target too long"
            case .headerTooLarge: return "Request header fields too large"
            case .methodNotAllowed: return "Method not allowed"
            case .notFound: return "Not found"
            case .unauthorized: return "Inbound credential required"
            case .accessDenied: return "Access denied"
            case .notImplemented: return "Not implemented"
            case .versionNotSupported: return "HTTP version not supported"
            case .tokenUnavailable: return "Access token unavailable"
            case .upstreamUnreachable: return "Floriday API unreachable"
            case .upstreamTLS: return "TLS failure towards the Floriday API"
            case .upstreamInvalidResponse: return "Invalid response from the Floriday API"
            case .upstreamClosed: return "Floriday API closed the connection"
            case .upstreamTimeout: return "Floriday API timed out"
            case .organizationRequired: return "Organisation required"
            case .unknownOrganization: return "Unknown organisation"
            case .organizationConflict: return "Conflicting organisations"
            case .organizationDenied: return "Organisation not allowed"
            case .rateLimited: return "Rate limit: wait too long"
            }
        }

        /// Where the fault lies, for logs and metrics.
        public var origin: String {
            switch self {
            case .badRequest, .requestTimeout, .payloadTooLarge, .uriTooLong, .headerTooLarge, .methodNotAllowed,
                 .notFound, .unauthorized, .accessDenied, .notImplemented, .versionNotSupported,
                 .organizationRequired, .unknownOrganization, .organizationConflict, .organizationDenied: return "client"
            case .rateLimited: return "rate-limit"
            case .tokenUnavailable: return "idm"
            case .upstreamUnreachable, .upstreamTLS, .upstreamInvalidResponse, .upstreamClosed, .upstreamTimeout: return "upstream"
            }
        }

        public var typeURI: String { "urn:floriday-proxy:problem:\(rawValue)" }
    }

    public var kind: Kind
    public var detail: String
    /// A short machine-readable reason beside the type (a parser code, `invalid_client`, ...).
    public var reason: String?
    public var retryAfter: Int?
    /// `WWW-Authenticate` for a 401 (RFC 9110 §11.6.1).
    public var challenge: String?

    public init(_ kind: Kind, detail: String, reason: String? = nil, retryAfter: Int? = nil) {
        self.kind = kind
        self.detail = detail
        self.reason = reason
        self.retryAfter = retryAfter
    }

    public var status: Int { kind.status }

    public func headers(requestID: String?) -> HTTPHeaders {
        var headers = HTTPHeaders()
        headers.add("Content-Type", "application/problem+json")
        headers.add("Cache-Control", "no-store")
        if let retryAfter { headers.add("Retry-After", String(retryAfter)) }
        if let challenge { headers.add("WWW-Authenticate", challenge) }
        if let requestID { headers.add("X-Request-Id", requestID) }
        return headers
    }

    public func body(requestID: String?) -> [UInt8] {
        var json = "{\"type\":\(jsonString(kind.typeURI)),\"title\":\(jsonString(kind.title)),\"status\":\(status),\"detail\":\(jsonString(detail))"
        if let reason { json += ",\"reason\":\(jsonString(reason))" }
        if let requestID { json += ",\"requestId\":\(jsonString(requestID))" }
        json += "}"
        return Array(json.utf8)
    }

    /// The problem for a request the HTTP/1.1 parser refused.
    public static func from(parseStatus status: Int, code: String, detail: String) -> Problem {
        let kind: Kind
        switch status {
        case 408: kind = .requestTimeout
        case 413: kind = .payloadTooLarge
        case 414: kind = .uriTooLong
        case 431: kind = .headerTooLarge
        case 405: kind = .methodNotAllowed
        case 501: kind = .notImplemented
        case 505: kind = .versionNotSupported
        default: kind = .badRequest
        }
        return Problem(kind, detail: detail, reason: code)
    }
}

