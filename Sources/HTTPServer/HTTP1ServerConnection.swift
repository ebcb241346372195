import EventLoop
import HTTP1
import HTTP2

/// What a server connection asks of the application above it.
public protocol HTTPServerHandler: AnyObject {
    /// A request head arrived. Called on the connection's loop; answer through the exchange.
    func handle(_ exchange: ServerExchange)
    /// The response to a request the server refuses before any exchange exists
    /// (malformed head, head timeout). The connection closes after it.
    func errorResponse(status: Int, code: String, detail: String) -> (HTTPHeaders, [UInt8])
}

public struct HTTPServerSettings: Sendable {
    public var limits = HTTP1Limits()
    /// Time to receive a complete request head (slowloris guard); answered with 408.
    public var requestHeadTimeout: Duration = .seconds(10)
    /// Time a keep-alive connection may sit between requests.
    public var idleTimeout: Duration = .seconds(75)
    /// Time without a body byte in either direction.
    public var bodyStallTimeout: Duration = .seconds(30)
    /// Whether a cleartext listener also serves HTTP/2 with prior knowledge (RFC 9113 §3.3),
    /// chosen per connection by its first bytes.
    public var acceptsHTTP2 = true
    public init() {}
}

/// An HTTP/1.1 server connection: parses requests from a `ByteStream`, hands each to the
/// handler as a `ServerExchange` and writes the responses, one at a time, in order.
///
/// Requests are handled one after another (RFC 9112 §9.3.2: responses to pipelined requests
/// go out in order); bytes of a pipelined next request wait, bounded, until the current
/// response is complete.
///
/// With `sniffHTTP2`, the first bytes are compared with the HTTP/2 connection preface
/// (RFC 9113 §3.4); when they are the preface, the stream is handed to an
/// `HTTP2ServerConnection` together with the bytes already read.
public final class HTTP1ServerConnection: ByteStreamDelegate, ExchangeTransport, @unchecked Sendable {
    public let loop: EventLoop
    public var remoteAddress: SocketAddress? { stream.remoteAddress }
    /// Formatted at the first request, for every request of the connection.
    private lazy var remoteIP: String? = stream.remoteAddress?.ipString
    var closeAfterResponse = false

    private let stream: ByteStream
    private let handler: HTTPServerHandler
    private let settings: HTTPServerSettings
    private let onClose: () -> Void
    private var parser: HTTP1RequestParser
    private var current: ServerExchange?
    private var pendingInput: [UInt8] = []
    private var parsing = false
    private var closed = false
    private var pausedByHandler = false
    private var pausedForPipelining = false
    private var readTimer: LoopTimer!
    /// Made when a write first has to wait for the client: most connections never need it,
    /// and an idle keep-alive connection is smaller without it.
    private var writeTimer: LoopTimer?
    private var readTimerMode = ReadTimerMode.firstRequest
    /// Bytes of the current (incomplete) head seen so far: a silent idle connection is closed
    /// quietly, a half-sent head earns a 408.
    private var headStarted = false
    /// Until the first bytes decide the protocol: the bytes so far, all a prefix of the preface.
    private var sniffing: Bool
    private var sniffed: [UInt8] = []
    private var upgraded: HTTP2ServerConnection?
    /// Response heads and chunk headers are serialized here (one buffer per connection).
    private var scratch: [UInt8] = []
    /// The response on its way out: its head waits for the first body bytes (or the end of the
    /// response, or the end of this turn of the loop), so a small response is one write.
    private let output = HTTP1MessageOutput()
    private var outputFlushScheduled = false
    private static let pipelineBufferLimit = 64 * 1024
    private static let continueResponse: [UInt8] = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)

    private enum ReadTimerMode { case firstRequest, head, idle, body, none }

    public init(stream: ByteStream, handler: HTTPServerHandler, settings: HTTPServerSettings, sniffHTTP2: Bool = false,
                onClose: @escaping () -> Void) {
        self.stream = stream
        self.sniffing = sniffHTTP2
        self.loop = stream.loop
        self.handler = handler
        self.settings = settings
        self.onClose = onClose
        self.parser = HTTP1RequestParser(limits: settings.limits)
        readTimer = LoopTimer(loop: loop) { [unowned self] in readTimerFired() }
    }

    public func start() {
        loop.assertInLoop()
        stream.delegate = self
        setReadTimer(.firstRequest)
        stream.start()
    }

    /// Closes the connection when it is between requests; otherwise after the current response.
    public func closeWhenIdle() {
        loop.assertInLoop()
        if let upgraded {
            upgraded.closeWhenIdle()
            return
        }
        if current == nil && !headStarted { stream.close() } else { closeAfterResponse = true }
    }

    // MARK: ByteStreamDelegate

    public func streamDidRead(_ bytes: UnsafeRawBufferPointer) {
        if sniffing {
            sniff(bytes)
            return
        }
        if current != nil && (current!.requestComplete || pausedForPipelining) || !pendingInput.isEmpty {
            // Between the end of this request and the end of its response: keep what the
            // client pipelines, bounded, and keep reading so a client that leaves is noticed.
            pendingInput.append(contentsOf: bytes)
            if pendingInput.count > Self.pipelineBufferLimit && !pausedForPipelining {
                pausedForPipelining = true
                updateReading()
            }
            if current == nil { processPendingInput() }
            return
        }
        parse(bytes)
    }

    public func streamDidDrain() {
        writeTimer?.disarm()
        current?.onWritable?()
    }

    public func streamDidClose(_ error: StreamError?) {
        guard !closed else { return }
        closed = true
        readTimer.cancel()
        writeTimer?.cancel()
        if let exchange = current, !exchange.responseComplete {
            exchange.deliverAbort(.clientGone(error))
        }
        current?.transport = nil
        current = nil
        onClose()
    }

    // MARK: HTTP/2 with prior knowledge

    private func sniff(_ bytes: UnsafeRawBufferPointer) {
        let preface = http2ClientPreface
        let seen = sniffed.count
        let compared = min(bytes.count, preface.count - seen)
        for index in 0..<compared where bytes[index] != preface[seen + index] {
            // Not HTTP/2: everything read so far is HTTP/1.1.
            sniffing = false
            if sniffed.isEmpty {
                streamDidRead(bytes)
            } else {
                let input = sniffed + bytes
                sniffed = []
                input.withUnsafeBytes { streamDidRead($0) }
            }
            return
        }
        if seen + bytes.count < preface.count {
            sniffed.append(contentsOf: bytes)
            return
        }
        sniffing = false
        let input = sniffed + bytes
        sniffed = []
        closed = true
        readTimer.cancel()
        writeTimer?.cancel()
        let connection = HTTP2ServerConnection(stream: stream, handler: handler, settings: settings, onClose: onClose)
        upgraded = connection
        input.withUnsafeBytes { connection.start(after: $0) }
    }

    // MARK: Parsing

    /// Parses `bytes`; what cannot be parsed yet (a pipelined request behind one still being
    /// answered) is kept in `pendingInput`.
    private func parse(_ bytes: UnsafeRawBufferPointer) {
        parsing = true
        defer { parsing = false }
        var offset = 0
        do {
            while !closed {
                // The parser stops after each head, so the head is handled outside the parser's
                // own call (the handler may read the parser's framing and start the response).
                var head: HTTPRequestHead?
                offset += try parser.parse(UnsafeRawBufferPointer(rebasing: bytes[offset...])) { event in
                    switch event {
                    case .head(let h):
                        head = h
                        return .pause
                    case .body(let chunk):
                        if self.readTimerMode == .body { self.readTimer.schedule(after: self.settings.bodyStallTimeout) }
                        self.current?.deliverBody(chunk)
                        return .proceed
                    case .trailers:
                        // A request's trailer section is checked and not relayed (RFC 9110
                        // §6.5.1 allows that; the API uses none).
                        return .proceed
                    case .end:
                        guard let exchange = self.current else { return .proceed }
                        self.setReadTimer(.none)
                        exchange.deliverEnd()
                        // A response completed inside the handler: go straight on to the next request.
                        return self.current == nil && !self.closed && !self.closeAfterResponse ? .proceed : .pause
                    }
                }
                guard let head else { break }
                requestHeadArrived(head)
            }
        } catch let error as HTTP1ParseError {
            malformed(error)
            return
        } catch {
            stream.abort()
            return
        }
        // Unparsed bytes with no exchange under way are the start of the next head; with one,
        // they are its body.
        if !headStarted && current == nil && !parser.isIdle {
            headStarted = true
            if readTimerMode == .idle || readTimerMode == .firstRequest { setReadTimer(.head) }
        }
        if offset < bytes.count && !closed {
            pendingInput.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[offset...]))
        }
    }

    private func requestHeadArrived(_ head: HTTPRequestHead) {
        headStarted = false
        let framing = parser.bodyFraming ?? .none
        let exchange = ServerExchange(request: head, framing: framing, transport: self, loop: loop, remoteAddress: stream.remoteAddress, remoteIP: remoteIP)
        current = exchange
        setReadTimer(framing == .none ? .none : .body)
        handler.handle(exchange)
        // RFC 9110 §10.1.1: a client that sent "Expect: 100-continue" waits for an interim
        // answer before the body; give it one unless the handler already answered finally.
        if framing != .none, framing != .contentLength(0), !exchange.responseHeadSent, !exchange.isAborted, head.version == .http1_1,
           let expect = head.headers.firstString("expect"), expect.lowercased() == "100-continue" {
            Self.continueResponse.withUnsafeBytes { stream.write($0) }
        }
    }

    private func malformed(_ error: HTTP1ParseError) {
        setReadTimer(.none)
        if let exchange = current {
            exchange.deliverAbort(.malformedBody(error))
            if exchange.responseHeadSent {
                stream.abort()
                return
            }
        }
        writeErrorAndClose(status: error.status, code: error.code, detail: error.message)
    }

    private func writeErrorAndClose(status: Int, code: String, detail: String) {
        let (headers, body) = handler.errorResponse(status: status, code: code, detail: detail)
        var head = HTTPResponseHead(status: status, headers: headers)
        head.headers.replaceOrAdd("Content-Length", String(body.count))
        head.headers.replaceOrAdd("Connection", "close")
        var bytes: [UInt8] = []
        HTTP1Serializer.appendResponseHead(head, to: &bytes)
        bytes.append(contentsOf: body)
        flushOutput()
        stream.write(bytes)
        current?.transport = nil
        current = nil
        stream.close()
    }

    private func processPendingInput() {
        guard !pendingInput.isEmpty, current == nil, !closed else { return }
        let input = pendingInput
        pendingInput = []
        if pausedForPipelining {
            pausedForPipelining = false
            updateReading()
        }
        input.withUnsafeBytes { parse($0) }
    }

    // MARK: From the exchange

    func pendingWriteBytes(for exchange: ServerExchange) -> Int { stream.pendingWriteBytes }

    func writeResponseHead(_ head: HTTPResponseHead, for exchange: ServerExchange) -> Int {
        var head = head
        head.version = .http1_1
        let request = exchange.request
        let noBody = request.method == "HEAD" || head.status == 204 || head.status == 304 || (100..<200).contains(head.status)
        if head.status == 204 || head.status == 304 || (100..<200).contains(head.status) {
            head.headers.remove("content-length")
            head.headers.remove("transfer-encoding")
        }
        if noBody {
            exchange.responseFraming = .none
        } else if head.headers.contains("content-length") {
            exchange.responseFraming = .length
        } else if request.version == .http1_1 {
            head.headers.add("Transfer-Encoding", "chunked")
            exchange.responseFraming = .chunked
        } else {
            exchange.responseFraming = .close
        }
        let keepAlive = !closeAfterResponse && request.keepAlive && exchange.responseFraming != .close && !head.headers.connectionHas("close")
        if !keepAlive {
            closeAfterResponse = true
            if !head.headers.connectionHas("close") { head.headers.add("Connection", "close") }
        } else if request.version == .http1_0 {
            head.headers.add("Connection", "keep-alive")
        }
        let size = output.hold { HTTP1Serializer.appendResponseHead(head, to: &$0) }
        if !outputFlushScheduled {
            // The body may come in a later read: the head must not wait for it.
            outputFlushScheduled = true
            loop.scheduleAtEndOfTurn(self)
        }
        return size
    }

    func writeResponseBody(_ bytes: UnsafeRawBufferPointer, for exchange: ServerExchange) -> Int {
        guard exchange.responseFraming != .none else { return 0 }
        if closed { return bytes.count }
        output.writeBody(bytes, chunked: exchange.responseFraming == .chunked) { writeRaw($0) }
        return bytes.count
    }

    func endResponse(for exchange: ServerExchange, trailers: HTTPHeaders) {
        if !closed { output.end(chunked: exchange.responseFraming == .chunked, trailers: trailers) { writeRaw($0) } }
        // An idle keep-alive connection holds no buffer (thousands of them may be open).
        output.discard(releasingStorage: true)
        exchangeDidComplete(exchange)
    }

    /// Hands the held output to the stream.
    private func flushOutput() {
        if closed {
            output.discard()
        } else {
            output.flush { writeRaw($0) }
        }
    }

    func abortExchange(_ exchange: ServerExchange) {
        abortConnection()
    }

    private func writeRaw(_ bytes: UnsafeRawBufferPointer) {
        stream.write(bytes)
        if stream.pendingWriteBytes > 0 {
            let timer = writeTimer ?? LoopTimer(loop: loop) { [unowned self] in writeStalled() }
            writeTimer = timer
            if !timer.isArmed { timer.schedule(after: settings.bodyStallTimeout) }
        }
    }

    private func writeRaw(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { writeRaw($0) }
    }

    func pauseReading(for exchange: ServerExchange) {
        guard exchange === current, !pausedByHandler else { return }
        pausedByHandler = true
        if readTimerMode == .body { readTimer.disarm() }
        updateReading()
    }

    func resumeReading(for exchange: ServerExchange) {
        guard exchange === current, pausedByHandler else { return }
        pausedByHandler = false
        if readTimerMode == .body { readTimer.schedule(after: settings.bodyStallTimeout) }
        updateReading()
    }

    private func exchangeDidComplete(_ exchange: ServerExchange) {
        guard exchange === current else { return }
        exchange.clearHandlers()
        if !exchange.requestComplete || closeAfterResponse {
            // The request body was not read to its end: the connection's framing is lost.
            current = nil
            exchange.transport = nil
            stream.close()
            return
        }
        current = nil
        exchange.transport = nil
        if pausedByHandler { pausedByHandler = false; updateReading() }
        setReadTimer(.idle)
        if !parsing { processPendingInput() }
    }

    private func abortConnection() {
        current?.clearHandlers()
        stream.abort()
        streamDidClose(.aborted)
    }

    // MARK: Timers and flow control

    private func updateReading() {
        if pausedByHandler || pausedForPipelining { stream.pauseReading() } else { stream.resumeReading() }
    }

    private func setReadTimer(_ mode: ReadTimerMode) {
        readTimerMode = mode
        switch mode {
        case .firstRequest, .head: readTimer.schedule(after: settings.requestHeadTimeout)
        case .idle: readTimer.schedule(after: settings.idleTimeout)
        case .body: readTimer.schedule(after: settings.bodyStallTimeout)
        case .none: readTimer.disarm()
        }
    }

    private func readTimerFired() {
        guard !closed else { return }
        switch readTimerMode {
        case .firstRequest where !headStarted, .idle where !headStarted:
            stream.close()   // an idle connection ends quietly
        case .firstRequest, .idle, .head:
            writeErrorAndClose(status: 408, code: "request-timeout", detail: "The request head did not arrive in time.")
        case .body:
            if let exchange = current {
                exchange.deliverAbort(.bodyStalled)
                if !exchange.responseHeadSent {
                    writeErrorAndClose(status: 408, code: "request-timeout", detail: "The request body stalled.")
                    return
                }
            }
            stream.abort()
            streamDidClose(.aborted)
        case .none:
            break
        }
    }

    private func writeStalled() {
        guard !closed, stream.pendingWriteBytes > 0 else { return }
        // The client stopped reading the response.
        stream.abort()
        streamDidClose(.aborted)
    }
}

extension HTTP1ServerConnection: EndOfTurnWork {
    /// Held output (a head waiting for its body) leaves at the end of the loop's turn.
    public func runAtEndOfTurn() {
        outputFlushScheduled = false
        flushOutput()
    }
}
