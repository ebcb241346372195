import EventLoop
import HTTP1

/// Why an upstream exchange failed, and whether sending the request again is safe.
public enum UpstreamError: Error, Sendable, CustomStringConvertible {
    /// DNS or TCP connect failed.
    case connectFailed(String)
    /// The TLS handshake failed; `verification` when the certificate was not trusted.
    case tlsFailed(String, verification: Bool)
    /// No connection could be had within the connect timeout, or no answer within the request timeout.
    case timedOut(phase: String)
    /// The connection closed. `requestSent`: some of the request reached the socket;
    /// `responseStarted`: some response bytes arrived.
    case connectionClosed(requestSent: Bool, responseStarted: Bool)
    /// The upstream broke HTTP/1.1 rules; its response cannot be relayed.
    case invalidResponse(String)
    /// The pool is shut down.
    case shutdown

    public var description: String {
        switch self {
        case .connectFailed(let reason): return "connect failed: \(reason)"
        case .tlsFailed(let reason, _): return "TLS handshake failed: \(reason)"
        case .timedOut(let phase): return "timed out \(phase)"
        case .connectionClosed(let sent, let started):
            return started ? "connection closed mid-response" : (sent ? "connection closed before a response" : "connection closed before the request was sent")
        case .invalidResponse(let reason): return "invalid response: \(reason)"
        case .shutdown: return "upstream pool shut down"
        }
    }

    /// The upstream cannot have acted on the request, so a fresh connection may retry it:
    /// nothing was written, or a reused keep-alive connection was closed by the server
    /// before any response byte (the classic race of RFC 9112 §9.3.1) for an idempotent method.
    public func isSafeToRetry(method: String, onReusedConnection: Bool) -> Bool {
        switch self {
        case .connectionClosed(let sent, let started):
            if !sent { return true }
            return onReusedConnection && !started && ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"].contains(method)
        default:
            return false
        }
    }
}
