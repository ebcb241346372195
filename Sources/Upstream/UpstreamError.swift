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
    /// HTTP/2: the server refused the stream (RST_STREAM REFUSED_STREAM, or above the last
    /// stream id of its GOAWAY): it did not process the request (RFC 9113 §8.7).
    case streamRefused
    /// HTTP/2: the server reset the stream with `errorCode` (RFC 9113 §7).
    case streamReset(errorCode: UInt32, responseStarted: Bool)
    /// `upstream_http2: always`, and the server did not choose h2 by ALPN.
    case http2NotNegotiated(chosen: String?)

    public var description: String {
        switch self {
        case .connectFailed(let reason): return "connect failed: \(reason)"
        case .tlsFailed(let reason, _): return "TLS handshake failed: \(reason)"
        case .timedOut(let phase): return "timed out \(phase)"
        case .connectionClosed(let sent, let started):
            return started ? "connection closed mid-response" : (sent ? "connection closed before a response" : "connection closed before the request was sent")
        case .invalidResponse(let reason): return "invalid response: \(reason)"
        case .shutdown: return "upstream pool shut down"
        case .streamRefused: return "HTTP/2 stream refused by the upstream"
        case .streamReset(let code, let started):
            return "HTTP/2 stream reset by the upstream (error code \(code))" + (started ? " mid-response" : "")
        case .http2NotNegotiated(let chosen):
            return "the upstream did not choose HTTP/2 by ALPN (it chose \(chosen.map { "\"\($0)\"" } ?? "nothing")) and upstream_http2 is always"
        }
    }

    /// The upstream cannot have acted on the request, so a fresh connection may retry it:
    /// nothing was written, or a reused keep-alive connection was closed by the server
    /// before any response byte (the classic race of RFC 9112 §9.3.1) for an idempotent method.
    public func isSafeToRetry(method: String, onReusedConnection: Bool) -> Bool {
        switch self {
        case .streamRefused:
            return true
        case .connectionClosed(let sent, let started):
            if !sent { return true }
            return onReusedConnection && !started && ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"].contains(method)
        default:
            return false
        }
    }
}
