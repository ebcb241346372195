import EventLoop
import HTTP1

/// One request on a server connection and the response to it.
///
/// The handler receives it when the request head is complete; body bytes follow through
/// `onBody`, then `onEnd`. The response is written with `writeHead`, `writeBody` and `end`.
/// Everything happens on the connection's loop.
public final class ServerExchange: @unchecked Sendable {
    public let request: HTTPRequestHead
    public let loop: EventLoop
    public let remoteAddress: SocketAddress?
    /// The client's address as text (no port), formatted once per connection.
    public let remoteIP: String?
    /// How the request body is framed (`.none` when there is no body).
    public let bodyFraming: HTTP1BodyFraming
    /// When the request head was complete (monotonic).
    public let startTime: ContinuousClock.Instant

    /// Request body bytes, only valid during the call.
    public var onBody: ((UnsafeRawBufferPointer) -> Void)?
    /// The request body is complete.
    public var onEnd: (() -> Void)?
    /// The client went away or sent a malformed body; the exchange is over.
    public var onAbort: ((ServerExchangeError) -> Void)?
    /// The client connection's write buffer drained (resume a paused producer).
    public var onWritable: (() -> Void)?

    public private(set) var requestComplete = false
    public private(set) var responseHeadSent = false
    public private(set) var responseComplete = false
    public private(set) var isAborted = false
    public private(set) var responseStatus = 0
    public private(set) var bytesIn = 0
    public private(set) var bytesOut = 0

    /// The connection carrying the exchange (HTTP/1.1 or HTTP/2); nil once it is over. Strong:
    /// the connection clears it when the exchange completes or the connection closes (a weak
    /// reference would give every connection a side table, and every retain of it the slow path).
    var transport: (any ExchangeTransport)?
    /// HTTP/2 only: the stream, and whether the response carries no body (HEAD, 204, 304).
    let streamID: Int32
    var noResponseBody = false
    /// HTTP/2 only: the consumer paused the body; received bytes not yet acknowledged.
    var bodyPaused = false
    var unconsumedBytes = 0
    /// HTTP/1.1 only: how the response body is framed.
    var responseFraming = ResponseFraming.none

    enum ResponseFraming { case none, length, chunked, close }

    init(request: HTTPRequestHead, framing: HTTP1BodyFraming, transport: any ExchangeTransport, loop: EventLoop,
         remoteAddress: SocketAddress?, remoteIP: String?, streamID: Int32 = 0) {
        self.request = request
        self.bodyFraming = framing
        self.transport = transport
        self.loop = loop
        self.remoteAddress = remoteAddress
        self.remoteIP = remoteIP
        self.streamID = streamID
        self.startTime = .now
        self.requestComplete = framing == .none || framing == .contentLength(0)
    }

    /// Bytes of the response waiting to reach the client.
    public var pendingWriteBytes: Int { transport?.pendingWriteBytes(for: self) ?? 0 }

    /// Stops reading the request body (the consumer is slow); `resumeBody` starts it again.
    public func pauseBody() { transport?.pauseReading(for: self) }
    public func resumeBody() { transport?.resumeReading(for: self) }

    /// Sends the response head. Over HTTP/1.1 the body framing follows RFC 9112 §6: a
    /// `Content-Length` in `head` is used as is; without one the body is chunked for HTTP/1.1
    /// clients and delimited by closing the connection for HTTP/1.0 ones. Over HTTP/2 DATA
    /// frames delimit it. HEAD, 1xx, 204 and 304 carry no body.
    public func writeHead(_ head: HTTPResponseHead) {
        loop.assertInLoop()
        guard !responseHeadSent, !isAborted, let transport else { return }
        responseHeadSent = true
        responseStatus = head.status
        bytesOut += transport.writeResponseHead(head, for: self)
    }

    /// Sends body bytes (framed as announced by the head).
    public func writeBody(_ bytes: UnsafeRawBufferPointer) {
        loop.assertInLoop()
        guard responseHeadSent, !responseComplete, !isAborted, bytes.count > 0, let transport else { return }
        bytesOut += transport.writeResponseBody(bytes, for: self)
    }

    public func writeBody(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { writeBody($0) }
    }

    /// Completes the response. `trailers`: a trailer section (RFC 9110 §6.5), sent when the
    /// framing can carry one (chunked over HTTP/1.1, a HEADERS frame over HTTP/2) and dropped
    /// otherwise (a body delimited by Content-Length or by closing the connection).
    public func end(trailers: HTTPHeaders = HTTPHeaders()) {
        loop.assertInLoop()
        guard responseHeadSent, !responseComplete, !isAborted, let transport else { return }
        responseComplete = true
        transport.endResponse(for: self, trailers: trailers)
    }

    /// Convenience: a whole response at once.
    public func respond(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        var head = HTTPResponseHead(status: status, headers: headers)
        head.headers.replaceOrAdd("Content-Length", String(body.count))
        writeHead(head)
        writeBody(body)
        end()
    }

    /// Ends the exchange abnormally, so that a response under way looks broken to the client
    /// rather than complete: over HTTP/1.1 the connection closes (a chunked stream without its
    /// last chunk, or fewer bytes than Content-Length); over HTTP/2 the stream is reset with
    /// INTERNAL_ERROR (RFC 9113 §8.1).
    public func abort() {
        loop.assertInLoop()
        guard !isAborted else { return }
        isAborted = true
        transport?.abortExchange(self)
    }

    // MARK: From the connection

    func deliverBody(_ bytes: UnsafeRawBufferPointer) {
        bytesIn += bytes.count
        onBody?(bytes)
    }

    func deliverEnd() {
        requestComplete = true
        onEnd?()
    }

    func deliverAbort(_ error: ServerExchangeError) {
        guard !isAborted else { return }
        isAborted = true
        let handler = onAbort
        clearHandlers()
        handler?(error)
    }

    func clearHandlers() {
        onBody = nil
        onEnd = nil
        onAbort = nil
        onWritable = nil
    }
}

public enum ServerExchangeError: Error, Sendable, CustomStringConvertible {
    /// The client closed the connection (or it broke, or reset the HTTP/2 stream) before the
    /// exchange completed.
    case clientGone(StreamError?)
    /// The request body broke HTTP/1.1 framing rules (or, over HTTP/2, the body size limit).
    case malformedBody(HTTP1ParseError)
    /// No body byte arrived within the body-stall timeout.
    case bodyStalled

    public var description: String {
        switch self {
        case .clientGone(let error): return "client went away" + (error.map { " (\($0))" } ?? "")
        case .malformedBody(let error): return "malformed request body: \(error.message)"
        case .bodyStalled: return "request body stalled"
        }
    }
}

/// What an exchange needs from the connection that carries it. Called on the loop only.
protocol ExchangeTransport: AnyObject {
    func pendingWriteBytes(for exchange: ServerExchange) -> Int
    func pauseReading(for exchange: ServerExchange)
    func resumeReading(for exchange: ServerExchange)
    /// Sends the head; returns the bytes it counts for.
    func writeResponseHead(_ head: HTTPResponseHead, for exchange: ServerExchange) -> Int
    /// Sends body bytes; returns those accepted (0 when the response has no body).
    func writeResponseBody(_ bytes: UnsafeRawBufferPointer, for exchange: ServerExchange) -> Int
    func endResponse(for exchange: ServerExchange, trailers: HTTPHeaders)
    func abortExchange(_ exchange: ServerExchange)
}
