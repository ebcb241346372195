import Logging

/// What the access log records for one request.
public struct AccessRecord: Sendable {
    public var method: String
    public var target: [UInt8]
    public var status: Int
    public var bytesIn: Int
    public var bytesOut: Int
    public var duration: Duration
    public var upstreamDuration: Duration?
    public var retried: Bool
    public var client: String
    public var requestID: String
    public var problem: Problem.Kind?
    public var clientGone: Bool
    /// The organisation the request acted for (never its key); nil when refused before one was chosen.
    public var organization: String? = nil
    /// The rate-limit endpoint it was counted against.
    public var endpoint: String? = nil
    /// How long it waited for its turn; nil when it did not wait.
    public var rateLimitWait: Duration? = nil
    /// "h2" or "http/1.1": what carried the (last) upstream exchange; nil when none started.
    public var upstreamProtocol: String? = nil
}

/// One log line per request. The query string is left out unless asked for: it may carry
/// personal data or identifiers that do not belong in logs.
public struct AccessLog: Sendable {
    public var logger: Logger
    public var includeQuery: Bool

    public init(logger: Logger, includeQuery: Bool) {
        self.logger = logger
        self.includeQuery = includeQuery
    }

    public func record(_ record: AccessRecord) {
        // Building the line costs more than proxying a small request: skip it unless it is logged.
        guard logger.logLevel <= .info else { return }
        var path = record.target
        if !includeQuery, let question = path.firstIndex(of: UInt8(ascii: "?")) { path = Array(path[..<question]) }
        var metadata: Logger.Metadata = [
            "method": "\(record.method)",
            "path": "\(String(decoding: path, as: UTF8.self))",
            "status": "\(record.status)",
            "bytes_in": "\(record.bytesIn)",
            "bytes_out": "\(record.bytesOut)",
            "duration_ms": "\(Self.milliseconds(record.duration))",
            "retried": "\(record.retried)",
            "client": "\(record.client)",
            "request_id": "\(record.requestID)",
        ]
        if let upstream = record.upstreamDuration { metadata["upstream_ms"] = "\(Self.milliseconds(upstream))" }
        if let upstreamProtocol = record.upstreamProtocol { metadata["upstream_protocol"] = "\(upstreamProtocol)" }
        if let problem = record.problem {
            metadata["error"] = "\(problem.rawValue)"
            metadata["error_origin"] = "\(problem.origin)"   // client, idm or upstream
        }
        if record.clientGone { metadata["client_gone"] = "true" }
        if let organization = record.organization { metadata["organization"] = "\(organization)" }
        if let wait = record.rateLimitWait { metadata["wait_ms"] = "\(Self.milliseconds(wait))" }
        logger.info("access", metadata: metadata)
    }

    /// Milliseconds with one decimal, rounded: "12.3".
    static func milliseconds(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        // Tenths of a millisecond are 1e14 attoseconds.
        let tenths = seconds * 10_000 + (attoseconds + 50_000_000_000_000) / 100_000_000_000_000
        return "\(tenths / 10).\(tenths % 10)"
    }
}
