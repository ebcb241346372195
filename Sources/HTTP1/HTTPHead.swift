public struct HTTPVersion: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var major: Int
    public var minor: Int

    public init(major: Int, minor: Int) {
        self.major = major
        self.minor = minor
    }

    public static let http1_0 = HTTPVersion(major: 1, minor: 0)
    public static let http1_1 = HTTPVersion(major: 1, minor: 1)

    public var description: String { "HTTP/\(major).\(minor)" }
}

public struct HTTPRequestHead: Sendable, Equatable {
    public var method: String
    /// The request-target exactly as received (RFC 9112 §3.2): never decoded or normalized.
    public var target: [UInt8]
    public var version: HTTPVersion
    public var headers: HTTPHeaders

    public init(method: String, target: [UInt8], version: HTTPVersion = .http1_1, headers: HTTPHeaders = HTTPHeaders()) {
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
    }

    public var targetString: String { String(decoding: target, as: UTF8.self) }

    /// RFC 9112 §9.3: HTTP/1.1 persistent unless "Connection: close"; HTTP/1.0 only with "Connection: keep-alive".
    public var keepAlive: Bool { isPersistent(version: version, headers: headers) }
}

public struct HTTPResponseHead: Sendable, Equatable {
    public var status: Int
    /// The reason phrase as received; informational only (RFC 9112 §4).
    public var reason: [UInt8]
    public var version: HTTPVersion
    public var headers: HTTPHeaders

    /// `reason` nil means the standard phrase for `status`.
    public init(status: Int, reason: String? = nil, version: HTTPVersion = .http1_1, headers: HTTPHeaders = HTTPHeaders()) {
        self.status = status
        self.reason = Array((reason ?? httpReasonPhrase(status)).utf8)
        self.version = version
        self.headers = headers
    }

    /// The same rule as for requests (RFC 9112 §9.3). A close-delimited body also ends the
    /// connection whatever this says: check `bodyFraming`.
    public var keepAlive: Bool { isPersistent(version: version, headers: headers) }
}

/// RFC 9112 §9.3. "close" wins over "keep-alive" when a sender lists both.
private func isPersistent(version: HTTPVersion, headers: HTTPHeaders) -> Bool {
    if headers.connectionHas("close") { return false }
    if version.major > 1 || (version.major == 1 && version.minor >= 1) { return true }
    return headers.connectionHas("keep-alive")
}

/// The standard reason phrase (RFC 9110 §15), or "" for an unregistered code (an empty
/// reason is valid, RFC 9112 §4).
public func httpReasonPhrase(_ status: Int) -> String {
    switch status {
    case 100: "Continue"
    case 101: "Switching Protocols"
    case 103: "Early Hints"
    case 200: "OK"
    case 201: "Created"
    case 202: "Accepted"
    case 203: "Non-Authoritative Information"
    case 204: "No Content"
    case 205: "Reset Content"
    case 206: "Partial Content"
    case 300: "Multiple Choices"
    case 301: "Moved Permanently"
    case 302: "Found"
    case 303: "See Other"
    case 304: "Not Modified"
    case 307: "Temporary Redirect"
    case 308: "Permanent Redirect"
    case 400: "Bad Request"
    case 401: "Unauthorized"
    case 402: "Payment Required"
    case 403: "Forbidden"
    case 404: "Not Found"
    case 405: "Method Not Allowed"
    case 406: "Not Acceptable"
    case 407: "Proxy Authentication Required"
    case 408: "Request Timeout"
    case 409: "Conflict"
    case 410: "Gone"
    case 411: "Length Required"
    case 412: "Precondition Failed"
    case 413: "Content Too Large"
    case 414: "URI Too Long"
    case 415: "Unsupported Media Type"
    case 416: "Range Not Satisfiable"
    case 417: "Expectation Failed"
    case 421: "Misdirected Request"
    case 422: "Unprocessable Content"
    case 425: "Too Early"
    case 426: "Upgrade Required"
    case 428: "Precondition Required"
    case 429: "Too Many Requests"
    case 431: "Request Header Fields Too Large"
    case 451: "Unavailable For Legal Reasons"
    case 500: "Internal Server Error"
    case 501: "Not Implemented"
    case 502: "Bad Gateway"
    case 503: "Service Unavailable"
    case 504: "Gateway Timeout"
    case 505: "HTTP Version Not Supported"
    case 511: "Network Authentication Required"
    default: ""
    }
}

/// Bounds on what a peer may make the parser hold or accept.
public struct HTTP1Limits: Sendable, Equatable {
    /// Request target length; longer is 414.
    public var maxTargetBytes = 8192
    /// The whole head, start line and final CRLF included; larger is 431.
    public var maxHeaderBytes = 65536
    /// Field lines in the head (and, separately, in a trailer section); more is 431.
    public var maxHeaders = 100
    /// Body bytes (Content-Length or the sum of chunk sizes); more is 413. nil: no limit.
    public var maxBodyBytes: UInt64? = nil
    /// All chunk extensions of one chunk-size line together.
    public var maxChunkExtensionBytes = 4096
    /// The trailer section after the last chunk, final CRLF included.
    public var maxTrailerBytes = 16384

    public init() {}
}

/// How the body of the current message is delimited (RFC 9112 §6.3).
public enum HTTP1BodyFraming: Sendable, Equatable {
    case none
    case contentLength(UInt64)
    case chunked
    /// Response only: the body runs until the connection closes (see `finish`).
    case untilClose
}

public enum HTTP1ParseEvent<Head> {
    case head(Head)
    /// Body bytes with transfer framing removed. They point into the caller's input and are
    /// valid only during the callback.
    case body(UnsafeRawBufferPointer)
    /// The trailer section of a chunked body (RFC 9112 §7.1.2), when it has fields; `.end`
    /// follows. Whether to pass it on is the recipient's choice (RFC 9110 §6.5.1).
    case trailers(HTTPHeaders)
    case end
}

public enum HTTP1ParseAction: Sendable {
    case proceed
    /// Stop right after this event; `parse` returns the bytes consumed so far. Events that
    /// need no further input (the `.end` right after a body) are delivered by the next call,
    /// which may be given an empty buffer.
    case pause
}
