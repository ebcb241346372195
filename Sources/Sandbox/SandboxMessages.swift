import JSON
/// One HTTP request as the sandbox sees it: the head plus the whole body.
public struct SandboxRequest: Sendable {
    public var method: String
    /// The request target exactly as received: raw path plus `?query`, nothing decoded.
    public var target: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(method: String, target: String, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
    }

    /// The first header with this name, compared case-insensitively.
    public func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        return headers.first { $0.name.lowercased() == wanted }?.value
    }

    /// The raw path: the target up to `?`.
    public var path: String {
        target.firstIndex(of: "?").map { String(target[..<$0]) } ?? target
    }

    /// The raw query after `?`, if any.
    public var query: String? {
        target.firstIndex(of: "?").map { String(target[target.index(after: $0)...]) }
    }
}

/// One complete HTTP response. The server around the sandbox adds `Content-Length`.
public struct SandboxResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The first header with this name, compared case-insensitively.
    public func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        return headers.first { $0.name.lowercased() == wanted }?.value
    }
}

extension SandboxResponse {
    /// The content type ASP.NET gives JSON, which is what the Floriday API answers with.
    static let jsonContentType = "application/json; charset=utf-8"
    static let problemContentType = "application/problem+json; charset=utf-8"

    static func json(
        _ status: Int, _ value: JSONValue, contentType: String = jsonContentType,
        headers: [(name: String, value: String)] = []
    ) -> SandboxResponse {
        SandboxResponse(status: status, headers: [("Content-Type", contentType)] + headers, body: value.bytes)
    }

    /// An ASP.NET problem-details response, shaped like the Floriday API's errors.
    static func problem(
        _ status: Int, detail: String? = nil, headers: [(name: String, value: String)] = []
    ) -> SandboxResponse {
        var members: [(String, JSONValue)] = [
            ("type", .string(ProblemDetails.type(for: status))),
            ("title", .string(ProblemDetails.title(for: status))),
            ("status", .int(status)),
        ]
        if let detail { members.append(("detail", .string(detail))) }
        members.append(("traceId", .string(ProblemDetails.newTraceID())))
        return SandboxResponse(
            status: status, headers: [("Content-Type", problemContentType)] + headers,
            body: JSONValue.object(members).bytes)
    }
}

/// The `type` and `title` ASP.NET Core fills in for a bare status code.
enum ProblemDetails {
    static func type(for status: Int) -> String {
        switch status {
        case 400: "https://tools.ietf.org/html/rfc9110#section-15.5.1"
        case 401: "https://tools.ietf.org/html/rfc9110#section-15.5.2"
        case 403: "https://tools.ietf.org/html/rfc9110#section-15.5.4"
        case 404: "https://tools.ietf.org/html/rfc9110#section-15.5.5"
        case 405: "https://tools.ietf.org/html/rfc9110#section-15.5.6"
        case 429: "https://tools.ietf.org/html/rfc6585#section-4"
        case 500: "https://tools.ietf.org/html/rfc9110#section-15.6.1"
        case 502: "https://tools.ietf.org/html/rfc9110#section-15.6.3"
        case 503: "https://tools.ietf.org/html/rfc9110#section-15.6.4"
        case 504: "https://tools.ietf.org/html/rfc9110#section-15.6.5"
        default: "about:blank"
        }
    }

    static func title(for status: Int) -> String {
        switch status {
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 429: "Too Many Requests"
        case 500: "An error occurred while processing your request."
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        default: "HTTP \(status)"
        }
    }

    /// A W3C trace context id, the form ASP.NET puts in `traceId`.
    static func newTraceID() -> String {
        "00-" + RandomBytes.hex(16) + "-" + RandomBytes.hex(8) + "-00"
    }
}

enum RandomBytes {
    static func make(_ count: Int) -> [UInt8] {
        var rng = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
    }

    static func hex(_ count: Int) -> String {
        make(count).map { byte in
            let s = String(byte, radix: 16)
            return s.count == 1 ? "0" + s : s
        }.joined()
    }
}
