import EventLoop
import HTTP1

/// The protocol an upstream exchange travels on, as ALPN names it.
public enum UpstreamProtocol: String, Sendable {
    case http1 = "http/1.1"
    case http2 = "h2"
}

/// Whether the API is spoken to over HTTP/2 (config key `upstream_http2`).
public enum UpstreamHTTP2Mode: String, Sendable, CaseIterable {
    /// Offer `h2` and `http/1.1`; use what the server picks.
    case auto
    /// Offer `h2` and `http/1.1`; a server that does not pick `h2` is an error.
    case always
    /// Offer `http/1.1` only.
    case never

    /// The ALPN list the TLS client offers in this mode, in order of preference.
    public var alpnProtocols: [String] {
        switch self {
        case .auto, .always: ["h2", "http/1.1"]
        case .never: ["http/1.1"]
        }
    }
}

/// What carries one exchange to the upstream: a whole HTTP/1.1 connection, or one stream of
/// an HTTP/2 connection. The pool hands one out per exchange; the caller uses it once.
///
/// The request goes out as an HTTP/1.1-style head (`sendRequest`), body pieces and an end;
/// the response comes back through the `UpstreamResponseHandler`. Every call is on `loop`.
public protocol UpstreamChannel: AnyObject {
    var loop: EventLoop { get }
    var upstreamProtocol: UpstreamProtocol { get }
    /// Request body bytes accepted and not yet on their way (backpressure on the client).
    var pendingWriteBytes: Int { get }
    /// Starts the exchange. A request has a body when its head has `Transfer-Encoding` or a
    /// `Content-Length` above zero; it follows with `writeBody` and `endRequest`.
    func sendRequest(_ head: HTTPRequestHead, handler: UpstreamResponseHandler)
    func writeBody(_ bytes: UnsafeRawBufferPointer)
    func endRequest()
    /// Backpressure from the client side: stop delivering response body for a while.
    func pauseResponse()
    func resumeResponse()
    /// Gives up on the exchange; the handler hears nothing more. An HTTP/1.1 connection is
    /// closed (its framing state is unknown); an HTTP/2 stream is reset and the connection lives on.
    func abandon()
}

extension HTTP1ClientConnection: UpstreamChannel {
    public var upstreamProtocol: UpstreamProtocol { .http1 }
}

extension HTTPRequestHead {
    /// Whether a body follows the head (RFC 9112 §6.3: Transfer-Encoding, or a Content-Length
    /// above zero; the first Content-Length counts). One pass over the fields, borrowed in
    /// place, without Strings for the usual all-digit length: it runs for every request.
    var announcesBody: Bool {
        headers.fields.withUnsafeBufferPointer { fields in
            var contentLength: Int?
            for index in fields.indices {
                switch fields[index].name.count {
                case 17 where fields[index].hasName("transfer-encoding"): return true
                case 14 where contentLength == nil && fields[index].hasName("content-length"): contentLength = index
                default: break
                }
            }
            guard let contentLength else { return false }
            let value = fields[contentLength].value
            if (1...18).contains(value.count), value.allSatisfy({ $0 &- 0x30 < 10 }) {
                return value.contains { $0 != 0x30 }
            }
            return UInt64(String(decoding: value, as: UTF8.self)).map { $0 > 0 } ?? false
        }
    }
}
