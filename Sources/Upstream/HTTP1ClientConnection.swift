import EventLoop
import HTTP1

/// Receives one upstream response, piece by piece, on the connection's loop.
public protocol UpstreamResponseHandler: AnyObject {
    func upstreamResponseHead(_ head: HTTPResponseHead)
    /// Only valid during the call.
    func upstreamResponseBody(_ bytes: UnsafeRawBufferPointer)
    func upstreamResponseEnd()
    /// The exchange failed; no further calls follow.
    func upstreamFailed(_ error: UpstreamError)
    /// The request side drained its write buffer: more body may be written.
    func upstreamWritable()
    /// A trailer section, just before `upstreamResponseEnd` (chunked HTTP/1.1 responses and
    /// HTTP/2 responses).
    func upstreamResponseTrailers(_ fields: [HTTPField])
}

extension UpstreamResponseHandler {
    public func upstreamResponseTrailers(_ fields: [HTTPField]) {}
}

public struct UpstreamTimeouts: Sendable {
    /// Time to connect and finish the TLS handshake.
    public var connect: Duration = .seconds(5)
    /// Time from sending the request to the first byte of the response head.
    public var response: Duration = .seconds(60)
    /// Time without a response body byte.
    public var bodyStall: Duration = .seconds(30)
    /// Time an unused keep-alive connection is kept.
    public var idle: Duration = .seconds(75)
    public init() {}
}

/// One HTTP/1.1 connection to the upstream, carrying one exchange at a time.
public final class HTTP1ClientConnection: ByteStreamDelegate, @unchecked Sendable {
    public let loop: EventLoop
    /// Exchanges completed on this connection (0 on a fresh one).
    public private(set) var exchangesCompleted = 0
    public var isOpen: Bool { !closed }
    public var pendingWriteBytes: Int { stream.pendingWriteBytes }

    private let stream: ByteStream
    private let timeouts: UpstreamTimeouts
    private var parser: HTTP1ResponseParser
    private var handler: UpstreamResponseHandler?
    private var requestChunked = false
    private var requestSent = false
    private var requestEnded = false
    private var responseStarted = false
    private var responseHeadSeen = false
    private var closed = false
    private var keepAlive = true
    private var readPaused = false
    /// The request on its way out: its head waits for the first body bytes (or the end of the
    /// request, or the end of this turn of the loop), so a small request is one TLS record in
    /// one write rather than two.
    private let output = HTTP1MessageOutput()
    private var outputFlushScheduled = false
    private var timer: LoopTimer!
    private var timerPhase = "waiting for the response"
    /// Called when the exchange completed and the connection may be reused (`true`) or not.
    var onExchangeDone: ((HTTP1ClientConnection, Bool) -> Void)?
    /// Called when an idle connection closes.
    var onIdleClose: ((HTTP1ClientConnection) -> Void)?

    init(stream: ByteStream, timeouts: UpstreamTimeouts, limits: HTTP1Limits) {
        self.stream = stream
        self.loop = stream.loop
        self.timeouts = timeouts
        self.parser = HTTP1ResponseParser(limits: limits)
        timer = LoopTimer(loop: loop) { [unowned self] in timedOut() }
        stream.delegate = self
        stream.start()
    }

    // MARK: Sending

    /// Starts an exchange: writes the request head. The body, if any, follows with
    /// `writeBody` and `endRequest` (chunked framing is added when the head says so).
    public func sendRequest(_ head: HTTPRequestHead, handler: UpstreamResponseHandler) {
        loop.assertInLoop()
        precondition(self.handler == nil, "one exchange at a time")
        self.handler = handler
        requestSent = false
        requestEnded = false
        responseStarted = false
        responseHeadSeen = false
        keepAlive = head.keepAlive
        requestChunked = head.headers.firstString("transfer-encoding")?.lowercased() == "chunked"
        parser.requestMethod = head.method
        guard !closed else {
            fail(.connectionClosed(requestSent: false, responseStarted: false))
            return
        }
        requestSent = true
        output.hold { HTTP1Serializer.appendRequestHead(head, to: &$0) }
        if !outputFlushScheduled {
            // The body may come later (a streamed upload): the head must not wait for it.
            outputFlushScheduled = true
            loop.scheduleAtEndOfTurn(self)
        }
        // The response timeout counts from the end of the request (endRequest); while the
        // body is still being sent, the bound is progress (body stall).
        arm(timeouts.bodyStall, phase: "sending the request")
    }

    public func writeBody(_ bytes: UnsafeRawBufferPointer) {
        loop.assertInLoop()
        guard !closed, !requestEnded, bytes.count > 0 else { return }
        output.writeBody(bytes, chunked: requestChunked) { stream.write($0) }
        if !responseHeadSeen { arm(timeouts.bodyStall, phase: "sending the request body") }
    }

    public func endRequest() {
        loop.assertInLoop()
        guard !closed, !requestEnded else { return }
        requestEnded = true
        output.end(chunked: requestChunked) { stream.write($0) }
        if !responseHeadSeen { arm(timeouts.response, phase: "waiting for the response") }
    }

    /// Hands the held output to the stream.
    private func flushOutput() {
        if closed {
            output.discard()
        } else {
            output.flush { stream.write($0) }
        }
    }

    /// Backpressure from the client side: stop reading the response for a while.
    public func pauseResponse() {
        guard !readPaused else { return }
        readPaused = true
        timer.disarm()
        stream.pauseReading()
    }

    public func resumeResponse() {
        guard readPaused else { return }
        readPaused = false
        if handler != nil { arm(responseHeadSeen ? timeouts.bodyStall : timeouts.response, phase: timerPhase) }
        stream.resumeReading()
    }

    /// Gives up on the exchange and the connection (its framing state is unknown).
    /// The pool hears of it, so the connection's slot is given back.
    public func abandon() {
        loop.assertInLoop()
        let wasInExchange = handler != nil
        handler = nil
        let wasOpen = !closed
        close()
        if wasInExchange || wasOpen { onExchangeDone?(self, false) }
    }

    func close() {
        guard !closed else { return }
        closed = true
        timer.cancel()
        stream.abort()
    }

    // MARK: ByteStreamDelegate

    public func streamDidRead(_ bytes: UnsafeRawBufferPointer) {
        guard handler != nil else {
            // Bytes on an idle connection: the upstream broke framing; never reuse it.
            close()
            onIdleClose?(self)
            return
        }
        responseStarted = true
        var offset = 0
        do {
            while handler != nil {
                // Stop after each head: the framing is read outside the parser's own call.
                var head: HTTPResponseHead?
                var ended = false
                offset += try parser.parse(UnsafeRawBufferPointer(rebasing: bytes[offset...])) { event in
                    switch event {
                    case .head(let h):
                        head = h
                        return .pause
                    case .body(let chunk):
                        if self.responseHeadSeen {
                            if !self.readPaused { self.arm(self.timeouts.bodyStall, phase: "reading the response body") }
                            self.handler?.upstreamResponseBody(chunk)
                        }
                        return .proceed
                    case .trailers(let fields):
                        if self.responseHeadSeen { self.handler?.upstreamResponseTrailers(fields.fields) }
                        return .proceed
                    case .end:
                        if self.responseHeadSeen {
                            ended = true
                            return .pause
                        }
                        return .proceed
                    }
                }
                if ended {
                    // Bytes after a complete response that nobody asked for: the upstream has
                    // lost the framing (or is trying to smuggle a response); never reuse it.
                    if offset < bytes.count { keepAlive = false }
                    responseHeadSeen = false
                    responseComplete()
                    break
                }
                guard let head else { break }
                // 1xx: 100 Continue and friends are not relayed; 101 is never asked for.
                if head.status == 101 { throw UpstreamError.invalidResponse("unexpected 101 Switching Protocols") }
                if head.status < 200 { continue }
                if let codings = head.headers.firstString("transfer-encoding"), codings.lowercased() != "chunked" {
                    // Codings beyond chunked (gzip, ...) would reach the client undeclared once the
                    // hop-by-hop Transfer-Encoding is dropped; refuse rather than relay them.
                    throw UpstreamError.invalidResponse("transfer coding \"\(codings)\" is not relayed")
                }
                responseHeadSeen = true
                if !head.keepAlive || parser.bodyFraming == .untilClose { keepAlive = false }
                arm(timeouts.bodyStall, phase: "reading the response body")
                handler?.upstreamResponseHead(head)
            }
            if handler == nil && offset < bytes.count && !closed {
                // Bytes beyond the response: the upstream broke framing; never reuse this connection.
                close()
            }
        } catch let error as UpstreamError {
            fail(error)
        } catch let error as HTTP1ParseError {
            fail(.invalidResponse(error.message))
        } catch {
            fail(.invalidResponse("\(error)"))
        }
    }

    public func streamDidDrain() {
        if handler != nil && !requestEnded && !responseHeadSeen { arm(timeouts.bodyStall, phase: "sending the request body") }
        handler?.upstreamWritable()
    }

    public func streamDidClose(_ error: StreamError?) {
        guard !closed else { return }
        if handler != nil {
            // A close-delimited body ends here (RFC 9112 §6.3 rule 8).
            do {
                var ended = false
                _ = try parser.finish { event in
                    if case .end = event { ended = true }
                    return .proceed
                }
                if ended {
                    keepAlive = false
                    responseComplete()
                    return
                }
            } catch {}
            closed = true
            timer.cancel()
            fail(.connectionClosed(requestSent: requestSent, responseStarted: responseStarted))
        } else {
            closed = true
            timer.cancel()
            onIdleClose?(self)
        }
    }

    // MARK: Internals

    /// The exchange is over. The connection is settled first (back in the pool when the
    /// request was written completely and both sides agreed to keep it, else closed), then the
    /// handler hears of the end: whatever it starts next (a pipelined request, a 401 replay)
    /// can reuse the connection instead of opening another.
    private func responseComplete() {
        timer.disarm()
        let handler = self.handler
        self.handler = nil
        exchangesCompleted += 1
        let reusable = keepAlive && requestEnded && !closed && parser.isIdle
        if !reusable {
            close()
        } else if readPaused {
            // The handler paused the response on its last bytes: an idle connection must read
            // again, or the next exchange on it never sees its response (and a close by the
            // server goes unnoticed).
            readPaused = false
            stream.resumeReading()
        }
        onExchangeDone?(self, reusable)
        handler?.upstreamResponseEnd()
    }

    private func fail(_ error: UpstreamError) {
        let handler = self.handler
        self.handler = nil
        close()
        onExchangeDone?(self, false)
        handler?.upstreamFailed(error)
    }

    private func arm(_ duration: Duration, phase: String) {
        timerPhase = phase
        timer.schedule(after: duration)
    }

    private func timedOut() {
        guard handler != nil, !readPaused else { return }
        fail(.timedOut(phase: timerPhase))
    }
}

extension HTTP1ClientConnection: EndOfTurnWork {
    /// Held output (a head waiting for its body) leaves at the end of the loop's turn.
    public func runAtEndOfTurn() {
        outputFlushScheduled = false
        flushOutput()
    }
}
