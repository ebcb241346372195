import EventLoop
import HTTP1
import HTTP2

/// An HTTP/2 server connection (cleartext, prior knowledge: RFC 9113 §3.3): drives an
/// `HTTP2Session` over a `ByteStream` and hands each request stream to the handler as a
/// `ServerExchange`, exactly as the HTTP/1.1 connection does, many at once.
///
/// Responses are framed by DATA frames. Each stream's response body is queued until the
/// client's flow-control window and the socket take it; `pendingWriteBytes` is that queue.
/// A paused request body stops acknowledging the stream's DATA, so the client stops after
/// one stream window (`HTTP2Settings.initialWindowSize`).
final class HTTP2ServerConnection: ByteStreamDelegate, ExchangeTransport, HTTP2SessionDelegate {
    /// Formatted at the first request, for every stream of the connection.
    private lazy var remoteIP: String? = stream.remoteAddress?.ipString
    let loop: EventLoop
    private let stream: ByteStream
    private let handler: HTTPServerHandler
    private let settings: HTTPServerSettings
    private let onClose: () -> Void
    private var session: HTTP2Session!
    private var exchanges: [Int32: ServerExchange] = [:]
    private var output: [UInt8] = []
    private var receiving = false
    private var flushScheduled = false
    private var closed = false
    private var goingAway = false
    private var idleTimer: LoopTimer!
    private var writeTimer: LoopTimer!
    /// Frames are produced only while the socket holds less than this.
    private static let socketHighWater = 256 * 1024

    init(stream: ByteStream, handler: HTTPServerHandler, settings: HTTPServerSettings, onClose: @escaping () -> Void) {
        self.stream = stream
        self.loop = stream.loop
        self.handler = handler
        self.settings = settings
        self.onClose = onClose
        var http2 = HTTP2Settings()
        http2.maxHeaderListSize = settings.limits.maxHeaderBytes
        http2.maxHeaders = settings.limits.maxHeaders
        http2.maxTargetBytes = settings.limits.maxTargetBytes
        session = HTTP2Session(role: .server, settings: http2, delegate: self)
        output.reserveCapacity(64 * 1024)
        idleTimer = LoopTimer(loop: loop) { [unowned self] in idleTimerFired() }
        writeTimer = LoopTimer(loop: loop) { [unowned self] in writeStalled() }
    }

    /// Takes over a started stream whose first bytes (the preface, at least) were already read.
    func start(after bytes: UnsafeRawBufferPointer) {
        loop.assertInLoop()
        stream.delegate = self
        // The first request must come within the head timeout, as over HTTP/1.1.
        idleTimer.schedule(after: settings.requestHeadTimeout)
        streamDidRead(bytes)
    }

    /// Graceful close: GOAWAY, so the client opens no new streams (RFC 9113 §6.8); the
    /// connection closes once the streams in progress are done.
    func closeWhenIdle() {
        loop.assertInLoop()
        guard !closed, !goingAway else { return }
        goingAway = true
        session.goAway()
        flush()
    }

    // MARK: ByteStreamDelegate

    func streamDidRead(_ bytes: UnsafeRawBufferPointer) {
        guard !closed else { return }
        receiving = true
        do {
            try session.receive(bytes)
        } catch {
            // A connection error (bad preface, flood, ...): send what nghttp2 queued (GOAWAY), close.
            receiving = false
            flush()
            if !closed { stream.close() }
            return
        }
        receiving = false
        flush()
    }

    func streamDidDrain() {
        writeTimer.disarm()
        flush()
    }

    func streamDidClose(_ error: StreamError?) {
        guard !closed else { return }
        closed = true
        idleTimer.cancel()
        writeTimer.cancel()
        let open = exchanges
        exchanges = [:]
        for exchange in open.values {
            exchange.transport = nil
            if !isFinished(exchange) { exchange.deliverAbort(.clientGone(error)) }
            exchange.clearHandlers()
        }
        onClose()
    }

    // MARK: Output

    private func scheduleFlush() {
        if receiving || flushScheduled || closed { return }
        flushScheduled = true
        loop.scheduleAtEndOfTurn(self)
    }

    /// Moves frames from the session to the socket while the socket takes them; closes the
    /// connection once neither side has anything more to say.
    private func flush() {
        guard !closed else { return }
        var idleRounds = 0
        do {
            while stream.pendingWriteBytes < Self.socketHighWater {
                try session.send(into: &output)
                if output.isEmpty {
                    // Writable streams may have queued more during `send`: one more round.
                    if !session.wantsWrite || idleRounds > 0 { break }
                    idleRounds += 1
                    continue
                }
                idleRounds = 0
                stream.write(output)
                output.removeAll(keepingCapacity: true)
                if closed { return }
            }
        } catch {
            stream.abort()
            streamDidClose(.aborted)
            return
        }
        if stream.pendingWriteBytes > 0 && !writeTimer.isArmed {
            writeTimer.schedule(after: settings.bodyStallTimeout)
        }
        if !session.wantsWrite && (!session.wantsRead || goingAway && exchanges.isEmpty) {
            stream.close()
        }
    }

    // MARK: HTTP2SessionDelegate

    func http2RequestHead(stream id: Int32, head: HTTPRequestHead, endStream: Bool) {
        let framing: HTTP1BodyFraming
        if endStream {
            framing = .none
        } else if let length = head.headers.first("content-length").flatMap({ UInt64(String(decoding: $0, as: UTF8.self)) }) {
            // nghttp2 has checked that it is a number and that the DATA will match it.
            framing = .contentLength(length)
        } else {
            // A body of unknown length: forwarded over HTTP/1.1 as chunked.
            framing = .chunked
        }
        if case .contentLength(let length) = framing, let limit = settings.limits.maxBodyBytes, length > limit {
            refuse(stream: id, .init(status: 413, code: "body-too-large", message: "The message body is larger than allowed."))
            return
        }
        let exchange = ServerExchange(request: head, framing: framing, transport: self, loop: loop,
                                      remoteAddress: stream.remoteAddress, remoteIP: remoteIP, streamID: id)
        exchanges[id] = exchange
        idleTimer.disarm()
        handler.handle(exchange)
        // RFC 9110 §10.1.1 (RFC 9113 §8.1 allows interim responses): a client that sent
        // "Expect: 100-continue" waits for one before the body.
        if !endStream, !exchange.responseHeadSent, !exchange.isAborted,
           let expect = head.headers.firstString("expect"), expect.lowercased() == "100-continue" {
            session.submitInterim(stream: id, status: 100)
        }
    }

    func http2RequestRefused(stream id: Int32, error: HTTP1ParseError) {
        refuse(stream: id, error)
    }

    func http2Data(stream id: Int32, bytes: UnsafeRawBufferPointer) {
        guard let exchange = exchanges[id], !exchange.isAborted else {
            session.consume(stream: id, count: bytes.count)
            return
        }
        if let limit = settings.limits.maxBodyBytes, UInt64(exchange.bytesIn + bytes.count) > limit {
            session.consume(stream: id, count: bytes.count)
            let error = HTTP1ParseError(status: 413, code: "body-too-large", message: "The message body is larger than allowed.")
            exchange.deliverAbort(.malformedBody(error))
            if exchange.responseHeadSent {
                session.reset(stream: id, errorCode: HTTP2ErrorCode.internalError)
            } else {
                refuse(stream: id, error)
            }
            return
        }
        exchange.deliverBody(bytes)
        if exchange.bodyPaused {
            exchange.unconsumedBytes += bytes.count
        } else {
            session.consume(stream: id, count: bytes.count)
        }
    }

    func http2StreamEnded(stream id: Int32) {
        guard let exchange = exchanges[id], !exchange.requestComplete, !exchange.isAborted else { return }
        exchange.deliverEnd()
    }

    func http2StreamClosed(stream id: Int32, errorCode: UInt32) {
        guard let exchange = exchanges.removeValue(forKey: id) else { return }
        exchange.transport = nil
        if !isFinished(exchange) { exchange.deliverAbort(.clientGone(nil)) }
        exchange.clearHandlers()
        if exchanges.isEmpty && !closed { idleTimer.schedule(after: settings.idleTimeout) }
    }

    func http2GoAway(lastStreamID: Int32, errorCode: UInt32) {
        goingAway = true
    }

    func http2StreamWritable(stream id: Int32) {
        exchanges[id]?.onWritable?()
    }

    /// Answers a stream without an exchange (a limit broken before the handler saw it).
    private func refuse(stream id: Int32, _ error: HTTP1ParseError) {
        let (headers, body) = handler.errorResponse(status: error.status, code: error.code, detail: error.message)
        var responseHeaders = headers
        responseHeaders.replaceOrAdd("Content-Length", String(body.count))
        session.submitResponse(stream: id, status: error.status, headers: responseHeaders, hasBody: true)
        body.withUnsafeBytes { session.enqueueData(stream: id, $0) }
        session.endData(stream: id)
        scheduleFlush()
    }

    /// A response with no body is complete once its head is sent (it carried END_STREAM).
    private func isFinished(_ exchange: ServerExchange) -> Bool {
        exchange.responseComplete || exchange.isAborted || exchange.noResponseBody && exchange.responseHeadSent
    }

    // MARK: ExchangeTransport

    func pendingWriteBytes(for exchange: ServerExchange) -> Int {
        session.queuedBytes(stream: exchange.streamID)
    }

    func pauseReading(for exchange: ServerExchange) {
        exchange.bodyPaused = true
    }

    func resumeReading(for exchange: ServerExchange) {
        guard exchange.bodyPaused else { return }
        exchange.bodyPaused = false
        acknowledge(exchange)
    }

    private func acknowledge(_ exchange: ServerExchange) {
        guard exchange.unconsumedBytes > 0 else { return }
        session.consume(stream: exchange.streamID, count: exchange.unconsumedBytes)
        exchange.unconsumedBytes = 0
        scheduleFlush()
    }

    func writeResponseHead(_ head: HTTPResponseHead, for exchange: ServerExchange) -> Int {
        let status = head.status
        var headers = head.headers
        let noBodyStatus = status == 204 || status == 304 || (100..<200).contains(status)
        if noBodyStatus { headers.remove("content-length") }
        // HEAD, 204 and 304 end the stream with the head (RFC 9110 §6.4.1).
        exchange.noResponseBody = noBodyStatus || exchange.request.method == "HEAD"
        session.submitResponse(stream: exchange.streamID, status: status, headers: headers, hasBody: !exchange.noResponseBody)
        scheduleFlush()
        var size = 12
        for field in headers.fields { size += field.name.count + field.value.count + 4 }
        return size
    }

    func writeResponseBody(_ bytes: UnsafeRawBufferPointer, for exchange: ServerExchange) -> Int {
        guard !exchange.noResponseBody else { return 0 }
        session.enqueueData(stream: exchange.streamID, bytes)
        scheduleFlush()
        return bytes.count
    }

    func endResponse(for exchange: ServerExchange, trailers: HTTPHeaders) {
        if !exchange.noResponseBody { session.endData(stream: exchange.streamID, trailers: trailers) }
        exchange.clearHandlers()
        // A request body still arriving is discarded from now on.
        exchange.bodyPaused = false
        acknowledge(exchange)
        scheduleFlush()
    }

    func abortExchange(_ exchange: ServerExchange) {
        // RFC 9113 §8.1: a stream reset before END_STREAM tells the client the response is
        // incomplete (INTERNAL_ERROR, §7), however much of it arrived.
        exchange.clearHandlers()
        session.reset(stream: exchange.streamID, errorCode: HTTP2ErrorCode.internalError)
        scheduleFlush()
    }

    // MARK: Timers

    private func idleTimerFired() {
        guard !closed, exchanges.isEmpty else { return }
        goingAway = true
        session.goAway()
        flush()
        if !closed { stream.close() }
    }

    private func writeStalled() {
        guard !closed, stream.pendingWriteBytes > 0 else { return }
        // The client stopped reading.
        stream.abort()
        streamDidClose(.aborted)
    }
}

extension HTTP2ServerConnection: EndOfTurnWork {
    /// Frames queued during the turn (by many streams, often) leave together at its end.
    func runAtEndOfTurn() {
        flushScheduled = false
        flush()
    }
}
