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

    weak var connection: HTTP1ServerConnection?
    private var responseFraming = ResponseFraming.none
    private var headBuffer: [UInt8] = []

    enum ResponseFraming { case none, length, chunked, close }

    init(request: HTTPRequestHead, framing: HTTP1BodyFraming, connection: HTTP1ServerConnection) {
        self.request = request
        self.bodyFraming = framing
        self.connection = connection
        self.loop = connection.loop
        self.remoteAddress = connection.remoteAddress
        self.startTime = .now
        self.requestComplete = framing == .none || framing == .contentLength(0)
    }

    /// Bytes of the response waiting to reach the client.
    public var pendingWriteBytes: Int { connection?.pendingWriteBytes ?? 0 }

    /// Stops reading the request body (the consumer is slow); `resumeBody` starts it again.
    public func pauseBody() { connection?.pauseReading(for: self) }
    public func resumeBody() { connection?.resumeReading(for: self) }

    /// Sends the response head. The body framing follows RFC 9112 §6: a `Content-Length` in
    /// `head` is used as is; without one the body is chunked for HTTP/1.1 clients and
    /// delimited by closing the connection for HTTP/1.0 ones. HEAD, 1xx, 204 and 304 carry no body.
    public func writeHead(_ head: HTTPResponseHead) {
        loop.assertInLoop()
        guard !responseHeadSent, !isAborted, let connection else { return }
        responseHeadSent = true
        responseStatus = head.status
        var head = head
        head.version = .http1_1
        let noBody = request.method == "HEAD" || head.status == 204 || head.status == 304 || (100..<200).contains(head.status)
        if head.status == 204 || head.status == 304 || (100..<200).contains(head.status) {
            head.headers.remove("content-length")
            head.headers.remove("transfer-encoding")
        }
        if noBody {
            responseFraming = .none
        } else if head.headers.contains("content-length") {
            responseFraming = .length
        } else if request.version == .http1_1 {
            head.headers.add("Transfer-Encoding", "chunked")
            responseFraming = .chunked
        } else {
            responseFraming = .close
        }
        let keepAlive = connection.wantsKeepAlive(after: self) && responseFraming != .close && !head.headers.connectionTokens().contains("close")
        if !keepAlive {
            connection.closeAfterResponse = true
            if !head.headers.connectionTokens().contains("close") { head.headers.add("Connection", "close") }
        } else if request.version == .http1_0 {
            head.headers.add("Connection", "keep-alive")
        }
        headBuffer.removeAll(keepingCapacity: true)
        HTTP1Serializer.appendResponseHead(head, to: &headBuffer)
        bytesOut += headBuffer.count
        connection.writeRaw(headBuffer)
    }

    /// Sends body bytes (framed as announced by the head).
    public func writeBody(_ bytes: UnsafeRawBufferPointer) {
        loop.assertInLoop()
        guard responseHeadSent, !responseComplete, !isAborted, bytes.count > 0, let connection else { return }
        switch responseFraming {
        case .none:
            return
        case .length, .close:
            connection.writeRaw(bytes)
        case .chunked:
            headBuffer.removeAll(keepingCapacity: true)
            HTTP1Serializer.appendChunkHeader(size: bytes.count, to: &headBuffer)
            connection.writeRaw(headBuffer)
            connection.writeRaw(bytes)
            HTTP1Serializer.chunkTerminator.withUnsafeBytes { connection.writeRaw($0) }
        }
        bytesOut += bytes.count
    }

    public func writeBody(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { writeBody($0) }
    }

    /// Completes the response.
    public func end() {
        loop.assertInLoop()
        guard responseHeadSent, !responseComplete, !isAborted, let connection else { return }
        responseComplete = true
        if responseFraming == .chunked {
            HTTP1Serializer.lastChunk.withUnsafeBytes { connection.writeRaw($0) }
        }
        connection.exchangeDidComplete(self)
    }

    /// Convenience: a whole response at once.
    public func respond(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        var head = HTTPResponseHead(status: status, headers: headers)
        head.headers.replaceOrAdd("Content-Length", String(body.count))
        writeHead(head)
        writeBody(body)
        end()
    }

    /// Ends the exchange abnormally: the client sees the connection close, which marks a
    /// response that was under way as broken rather than complete (a chunked stream without
    /// its last chunk, or fewer bytes than Content-Length).
    public func abort() {
        loop.assertInLoop()
        guard !isAborted else { return }
        isAborted = true
        connection?.abortConnection()
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
    /// The client closed the connection (or it broke) before the exchange completed.
    case clientGone(StreamError?)
    /// The request body broke HTTP/1.1 framing rules.
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
