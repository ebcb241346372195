import EventLoop
import HTTP1
import HTTP2

/// One HTTP/2 connection to the upstream (ALPN `h2` over TLS): many exchanges at once, each
/// an `HTTP2StreamChannel`. An `HTTP2Session` (nghttp2, on bytes) does the framing; this class
/// moves its bytes to and from the TLS stream on the connection's loop.
///
/// Flow control (RFC 9113 §5.2): received DATA is acknowledged at the connection level as it
/// arrives and at the stream level only when the exchange's client took it, so a slow client
/// holds back its own stream's WINDOW_UPDATEs and no other stream waits for it. What one
/// stream holds unacknowledged is at most its window (`HTTP2Settings.initialWindowSize`).
///
/// An idle connection is probed with PING after half the idle timeout; no answer within the
/// connect timeout drops it, and a connection idle for the whole idle timeout is closed.
public final class HTTP2ClientConnection: ByteStreamDelegate, HTTP2SessionDelegate, @unchecked Sendable {
    public let loop: EventLoop
    /// Streams this side opens at most at once, whatever the server allows.
    public let localStreamCap: Int
    /// Channels handed out and not finished (those without a stream id yet included).
    public private(set) var activeChannels = 0
    /// Exchanges started on this connection.
    public private(set) var exchangesStarted = 0
    public var isOpen: Bool { !closed }
    /// Open and not told to go away: may take new streams.
    public var acceptsStreams: Bool { !closed && !goingAway }
    /// Streams the connection may carry at once now: the server's SETTINGS_MAX_CONCURRENT_STREAMS
    /// (honoured as it changes) and the local cap.
    public var streamCapacity: Int { min(localStreamCap, session.remoteMaxConcurrentStreams) }
    public var hasCapacity: Bool { acceptsStreams && activeChannels < streamCapacity }

    let stream: ByteStream
    let session: HTTP2Session
    let timeouts: UpstreamTimeouts
    let authority: String
    var channels: [Int32: HTTP2StreamChannel] = [:]
    /// The channel `channel(_:)` found last (0: none): one response's events come in a row.
    private var lastChannelID: Int32 = 0
    private var lastChannel: HTTP2StreamChannel?
    private var output: [UInt8] = []
    /// nghttp2 is running (receiving or sending), and so are our callbacks: the session must
    /// not be entered again until it returns (nghttp2_session_mem_recv / mem_send may not be
    /// called from its own callbacks). A flush asked for meanwhile is the caller's to do.
    private var inSession = false
    /// `close()` was called from inside a callback: the flush after the session's call
    /// sends the GOAWAY and closes the socket.
    private var closeRequested = false
    private var flushScheduled = false
    private var closed = false
    private var goingAway = false
    private var idleTimer: LoopTimer!
    private var idlePhase = IdlePhase.none
    /// The deadlines of the streams' exchanges (`HTTP2StreamChannel.deadline`) share this
    /// timer: it is set for the earliest deadline it was told of; when it fires, the channels
    /// whose deadline has passed time out and it is set for the next one. A channel moves its
    /// deadline several times per exchange, nearly always later: that costs no timer work.
    private var streamTimer: LoopTimer!
    /// When `streamTimer` fires (loop clock nanoseconds), while it is armed.
    private var streamTimerDeadline: UInt64 = 0
    /// `timeouts.response` and `timeouts.bodyStall` in nanoseconds.
    let responseTimeout: UInt64
    let bodyStallTimeout: UInt64
    /// Told when the connection can take streams again, stopped taking them, or closed.
    var onStateChange: ((HTTP2ClientConnection) -> Void)?
    /// Told when a stream starts (+1) or ends (-1): streams in flight, for the metrics.
    var onStreamCount: ((Int) -> Void)?
    /// Told when a stream ends: the most body bytes it held at once (for the stats).
    var onStreamBufferPeak: ((Int) -> Void)?

    private enum IdlePhase { case none, pingDue, awaitingAck, closeDue }

    /// Frames are produced only while the socket holds less than this.
    private static let socketHighWater = 256 * 1024

    /// The receive windows: per stream the most one slow client leaves unacknowledged; the
    /// connection window is acknowledged as data arrives, so it only needs to cover a round trip.
    static func sessionSettings() -> HTTP2Settings {
        var settings = HTTP2Settings()
        settings.initialWindowSize = 1 << 20
        settings.connectionWindowSize = 16 << 20
        settings.maxHeaderListSize = 256 * 1024
        settings.maxHeaders = 1000
        // Every request carries the same bearer token: indexed, it is sent once per connection
        // instead of with each request. Guessing a whole field value through the table's size
        // effects (RFC 7541 §7.1) is hopeless for a token of a few hundred random characters,
        // and the clients cannot put Authorization fields of their own on this connection.
        settings.indexesAuthorization = true
        // Few connections, each carrying up to a hundred streams at once.
        settings.recyclesAllocations = true
        return settings
    }

    init(stream: ByteStream, timeouts: UpstreamTimeouts, authority: String, localStreamCap: Int) {
        self.stream = stream
        self.loop = stream.loop
        self.timeouts = timeouts
        self.authority = authority
        self.localStreamCap = max(1, localStreamCap)
        responseTimeout = timeouts.response.clampedNanoseconds
        bodyStallTimeout = timeouts.bodyStall.clampedNanoseconds
        session = HTTP2Session(role: .client, settings: Self.sessionSettings())
        session.delegate = self
        output.reserveCapacity(64 * 1024)
        idleTimer = LoopTimer(loop: loop) { [weak self] in self?.idleTimerFired() }
        streamTimer = LoopTimer(loop: loop) { [weak self] in self?.streamTimerFired() }
        stream.delegate = self
        stream.start()
        flush()   // the connection preface and SETTINGS (RFC 9113 §3.4)
        becameIdle()
    }

    /// A channel for one exchange; counts against the capacity until it finishes.
    func makeChannel() -> HTTP2StreamChannel {
        loop.assertInLoop()
        activeChannels += 1
        idleTimerStopIfWaiting()
        return HTTP2StreamChannel(connection: self, reused: exchangesStarted > 0)
    }

    /// Closes the connection: GOAWAY, then the socket once what is queued is written.
    func close() {
        guard !closed else { return }
        goingAway = true
        session.goAway()
        if inSession {
            closeRequested = true
            return
        }
        flush()
        if !closed { stream.close() }
    }

    /// Takes no new streams; closes once the streams in progress have ended.
    func closeWhenIdle() {
        guard !closed else { return }
        goingAway = true
        idleTimer.cancel()
        if activeChannels == 0 { close() }
    }

    // MARK: From the channels

    /// Opens the stream; returns its id or nil when the session cannot open one.
    func open(_ channel: HTTP2StreamChannel, head: HTTPRequestHead, hasBody: Bool) -> Int32? {
        guard acceptsStreams else { return nil }
        let id = session.submitRequest(head, scheme: "https", authority: authority, hasBody: hasBody)
        guard id > 0 else { return nil }
        channels[id] = channel
        exchangesStarted += 1
        onStreamCount?(1)
        scheduleFlush()
        return id
    }

    /// The channel is done (its exchange ended, failed or was abandoned).
    func channelFinished(_ channel: HTTP2StreamChannel) {
        activeChannels -= 1
        if let id = channel.streamID, channels.removeValue(forKey: id) != nil {
            if id == lastChannelID { forgetLastChannel() }
            onStreamCount?(-1)
        }
        if activeChannels == 0 {
            if goingAway {
                close()
            } else {
                becameIdle()
            }
        }
        onStateChange?(self)
    }

    func scheduleFlush() {
        if inSession || flushScheduled || closed { return }
        flushScheduled = true
        loop.scheduleAtEndOfTurn(self)
    }

    /// Moves frames from the session to the socket while the socket takes them.
    func flush() {
        // Inside the session (a stream that closes as its last frame leaves finishes its
        // channel, which may close the connection): the running call's flush goes on.
        guard !closed, !inSession else { return }
        var idleRounds = 0
        do {
            while stream.pendingWriteBytes < Self.socketHighWater {
                try sendFrames()
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
            connectionLost(.invalidResponse("HTTP/2: \(error)"))
            return
        }
        if !closed && (closeRequested || goingAway && activeChannels == 0 && !session.wantsWrite) {
            stream.close()
        }
    }

    private func sendFrames() throws {
        inSession = true
        defer { inSession = false }
        try session.send(into: &output)
    }

    // MARK: ByteStreamDelegate

    public func streamDidRead(_ bytes: UnsafeRawBufferPointer) {
        guard !closed else { return }
        inSession = true
        do {
            try session.receive(bytes)
        } catch {
            // A connection error: nghttp2 queued a GOAWAY; send it and give up the connection.
            inSession = false
            flush()
            stream.abort()
            connectionLost(.invalidResponse("HTTP/2 protocol error: \(error)"))
            return
        }
        inSession = false
        flush()
    }

    public func streamDidDrain() {
        flush()
    }

    public func streamDidClose(_ error: StreamError?) {
        connectionLost(nil)
    }

    /// The connection is gone: every stream in progress fails (a response cut short is never
    /// reported as complete).
    private func connectionLost(_ reason: UpstreamError?) {
        guard !closed else { return }
        closed = true
        goingAway = true
        idleTimer.cancel()
        streamTimer.cancel()
        let open = channels
        channels = [:]
        forgetLastChannel()
        for (id, channel) in open.sorted(by: { $0.key < $1.key }) {
            _ = id
            onStreamCount?(-1)
            channel.connectionLost(reason)
        }
        onStateChange?(self)
    }

    @inline(__always)
    private func channel(_ id: Int32) -> HTTP2StreamChannel? {
        if id == lastChannelID, let lastChannel { return lastChannel }
        guard let channel = channels[id] else { return nil }
        lastChannelID = id
        lastChannel = channel
        return channel
    }

    private func forgetLastChannel() {
        lastChannelID = 0
        lastChannel = nil
    }

    // MARK: HTTP2SessionDelegate

    public func http2ResponseHead(stream id: Int32, head: HTTPResponseHead, endStream: Bool) {
        channel(id)?.responseHead(head, endStream: endStream)
    }

    public func http2Data(stream id: Int32, bytes: UnsafeRawBufferPointer) {
        session.consumeConnection(count: bytes.count)
        if let channel = channel(id) {
            channel.responseData(bytes)
        } else {
            session.consumeStream(id, count: bytes.count)
        }
    }

    public func http2Trailers(stream id: Int32, fields: [HTTPField]) {
        channel(id)?.trailers = fields
    }

    public func http2StreamEnded(stream id: Int32) {
        channel(id)?.remoteEnded()
    }

    public func http2StreamClosed(stream id: Int32, errorCode: UInt32) {
        channel(id)?.streamClosed(errorCode: errorCode)
    }

    public func http2StreamWritable(stream id: Int32) {
        channel(id)?.writable()
    }

    /// RFC 9113 §6.8: streams above `lastStreamID` were not processed; nghttp2 closes them with
    /// REFUSED_STREAM, so their exchanges go again on another connection. The others run to
    /// their end; no new stream opens here.
    public func http2GoAway(lastStreamID: Int32, errorCode: UInt32) {
        guard !goingAway else { return }
        goingAway = true
        idleTimer.cancel()
        onStateChange?(self)
        if activeChannels == 0 { close() }
    }

    public func http2PingAcknowledged() {
        guard idlePhase == .awaitingAck else { return }
        if activeChannels == 0 {
            idlePhase = .closeDue
            idleTimer.schedule(after: timeouts.idle - timeouts.idle / 2)
        } else {
            idlePhase = .none
            idleTimer.disarm()
        }
    }

    public func http2RemoteSettingsChanged() {
        // A raised SETTINGS_MAX_CONCURRENT_STREAMS may let waiting exchanges in.
        onStateChange?(self)
    }

    // MARK: Stream deadlines

    /// A deadline `timeout` nanoseconds from now for a channel's exchange; `streamTimer` fires
    /// by then.
    func streamDeadline(after timeout: UInt64) -> UInt64 {
        let now = loop.clock.nanoseconds
        let deadline = now &+ timeout
        if !streamTimer.isArmed || deadline < streamTimerDeadline {
            streamTimerDeadline = deadline
            streamTimer.schedule(afterNanoseconds: timeout)
        }
        return deadline
    }

    private func streamTimerFired() {
        guard !closed else { return }
        let now = loop.clock.nanoseconds
        var expired: [(Int32, HTTP2StreamChannel)] = []
        var next = UInt64.max
        for (id, channel) in channels where channel.deadline != 0 {
            if channel.deadline <= now { expired.append((id, channel)) } else { next = min(next, channel.deadline) }
        }
        if next != .max {
            streamTimerDeadline = next
            streamTimer.schedule(afterNanoseconds: next - now)
        }
        // In stream order, as separate timers firing in one tick would (mostly) have.
        for (_, channel) in expired.sorted(by: { $0.0 < $1.0 }) { channel.deadlinePassed() }
    }

    // MARK: Idle

    private func becameIdle() {
        guard !closed, !goingAway, idlePhase != .awaitingAck else { return }
        idlePhase = .pingDue
        idleTimer.schedule(after: timeouts.idle / 2)
    }

    private func idleTimerStopIfWaiting() {
        if idlePhase == .pingDue || idlePhase == .closeDue {
            idlePhase = .none
            idleTimer.disarm()
        }
    }

    private func idleTimerFired() {
        guard !closed else { return }
        switch idlePhase {
        case .none:
            break
        case .pingDue:
            idlePhase = .awaitingAck
            session.ping()
            flush()
            idleTimer.schedule(after: timeouts.connect)
        case .awaitingAck:
            // No answer to PING: the connection (or the server) is dead.
            idlePhase = .none
            stream.abort()
            connectionLost(.timedOut(phase: "waiting for the answer to an HTTP/2 PING"))
        case .closeDue:
            idlePhase = .none
            if activeChannels == 0 { close() }
        }
    }
}

/// One exchange on an `HTTP2ClientConnection`: one stream.
public final class HTTP2StreamChannel: UpstreamChannel, @unchecked Sendable {
    public var loop: EventLoop { connection.loop }
    public var upstreamProtocol: UpstreamProtocol { .http2 }
    public var pendingWriteBytes: Int {
        guard let streamID else { return 0 }
        return connection.session.queuedBytes(stream: streamID)
    }

    let connection: HTTP2ClientConnection
    /// The connection carried exchanges before this one.
    let reused: Bool
    private(set) var streamID: Int32?
    private var handler: UpstreamResponseHandler?
    private var finished = false
    private var hasBody = false
    private var requestEnded = false
    private var responseStarted = false
    private var responseHeadSeen = false
    /// Body received while the client is paused; acknowledged when it is delivered.
    private var held: [UInt8] = []
    private var heldOffset = 0
    /// The most body bytes held at once: `held`, or the request body queued in the session.
    private var bufferedPeak = 0
    private var paused = false
    private var ended = false
    private var delivering = false
    var trailers: [HTTPField]?
    /// When the exchange times out, in nanoseconds of the loop's clock (0: no deadline); the
    /// connection's stream timer checks it.
    private(set) var deadline: UInt64 = 0
    private var timerPhase = "waiting for the response"

    init(connection: HTTP2ClientConnection, reused: Bool) {
        self.connection = connection
        self.reused = reused
    }

    public func sendRequest(_ head: HTTPRequestHead, handler: UpstreamResponseHandler) {
        loop.assertInLoop()
        precondition(self.handler == nil && streamID == nil && !finished, "one exchange per channel")
        self.handler = handler
        hasBody = head.announcesBody
        requestEnded = !hasBody
        guard let id = connection.open(self, head: head, hasBody: hasBody) else {
            // No stream could open (GOAWAY arrived, the connection closed): nothing was sent,
            // so another connection may carry it. Reported on the next turn, as a socket
            // error would be, so the caller has finished `sendRequest` first.
            loop.execute { [self] in fail(.streamRefused) }
            return
        }
        streamID = id
        arm(hasBody ? connection.bodyStallTimeout : connection.responseTimeout, phase: hasBody ? "sending the request body" : "waiting for the response")
    }

    public func writeBody(_ bytes: UnsafeRawBufferPointer) {
        guard !finished, let streamID, !requestEnded, bytes.count > 0 else { return }
        connection.session.enqueueData(stream: streamID, bytes)
        let queued = connection.session.queuedBytes(stream: streamID)
        if queued > bufferedPeak { bufferedPeak = queued }
        connection.scheduleFlush()
        if !responseHeadSeen { arm(connection.bodyStallTimeout, phase: "sending the request body") }
    }

    public func endRequest() {
        guard !finished, let streamID, !requestEnded else { return }
        requestEnded = true
        connection.session.endData(stream: streamID)
        connection.scheduleFlush()
        if !responseHeadSeen { arm(connection.responseTimeout, phase: "waiting for the response") }
    }

    public func pauseResponse() {
        guard !paused else { return }
        paused = true
        deadline = 0
    }

    public func resumeResponse() {
        guard paused else { return }
        paused = false
        if handler != nil && !finished { arm(responseHeadSeen ? connection.bodyStallTimeout : connection.responseTimeout, phase: timerPhase) }
        deliverHeld()
    }

    public func abandon() {
        loop.assertInLoop()
        guard !finished else { return }
        handler = nil
        if let streamID, connection.session.streamExists(streamID) {
            connection.session.reset(stream: streamID, errorCode: HTTP2ErrorCode.cancel)
            connection.scheduleFlush()
        }
        finish()
    }

    // MARK: From the connection

    func responseHead(_ head: HTTPResponseHead, endStream: Bool) {
        guard !finished else { return }
        responseStarted = true
        responseHeadSeen = true
        arm(connection.bodyStallTimeout, phase: "reading the response body")
        handler?.upstreamResponseHead(head)
        if endStream { remoteEnded() }
    }

    func responseData(_ bytes: UnsafeRawBufferPointer) {
        guard let streamID else { return }
        guard !finished, handler != nil else {
            connection.session.consumeStream(streamID, count: bytes.count)
            return
        }
        responseStarted = true
        if paused || heldOffset < held.count || delivering {
            held.append(contentsOf: bytes)
            if held.count - heldOffset > bufferedPeak { bufferedPeak = held.count - heldOffset }
            return
        }
        if !paused { arm(connection.bodyStallTimeout, phase: "reading the response body") }
        delivering = true
        handler?.upstreamResponseBody(bytes)
        delivering = false
        if !finished { connection.session.consumeStream(streamID, count: bytes.count) }
    }

    func remoteEnded() {
        guard !finished else { return }
        ended = true
        if heldOffset == held.count && !paused { complete() }
    }

    func writable() {
        guard !finished else { return }
        if !requestEnded && !responseHeadSeen { arm(connection.bodyStallTimeout, phase: "sending the request body") }
        handler?.upstreamWritable()
    }

    func streamClosed(errorCode: UInt32) {
        guard !finished else { return }
        if errorCode == HTTP2ErrorCode.noError && ended {
            // Closed after END_STREAM; the response completes once the held body is delivered.
            return
        }
        if errorCode == HTTP2ErrorCode.refusedStream && !responseStarted {
            // RFC 9113 §8.7: a refused stream was not processed; it may be sent again.
            fail(.streamRefused)
        } else if errorCode == HTTP2ErrorCode.noError && !responseStarted {
            fail(.connectionClosed(requestSent: true, responseStarted: false))
        } else {
            fail(.streamReset(errorCode: errorCode, responseStarted: responseStarted))
        }
    }

    func connectionLost(_ reason: UpstreamError?) {
        guard !finished else { return }
        if ended {
            // The whole response arrived; only the held part is still on its way to the client.
            return
        }
        fail(reason ?? .connectionClosed(requestSent: true, responseStarted: responseStarted))
    }

    // MARK: Internals

    private func deliverHeld() {
        guard let streamID, !delivering else { return }
        delivering = true
        while !paused, !finished, heldOffset < held.count {
            let count = min(held.count - heldOffset, 64 * 1024)
            held.withUnsafeBytes { handler?.upstreamResponseBody(UnsafeRawBufferPointer(rebasing: $0[heldOffset..<heldOffset + count])) }
            heldOffset += count
            if !finished { connection.session.consumeStream(streamID, count: count) }
        }
        delivering = false
        if heldOffset == held.count {
            held.removeAll(keepingCapacity: false)
            heldOffset = 0
        }
        connection.scheduleFlush()   // the WINDOW_UPDATE
        if ended && !paused && heldOffset == held.count && !finished { complete() }
    }

    private func complete() {
        deadline = 0
        let handler = self.handler
        self.handler = nil
        if let streamID, connection.session.streamExists(streamID), !requestEnded || connection.session.queuedBytes(stream: streamID) > 0 {
            // The server answered before the request body ended (RFC 9113 §8.1): stop sending it.
            connection.session.reset(stream: streamID, errorCode: HTTP2ErrorCode.cancel)
            connection.scheduleFlush()
        }
        finish()
        if let trailers, !trailers.isEmpty { handler?.upstreamResponseTrailers(trailers) }
        handler?.upstreamResponseEnd()
    }

    private func fail(_ error: UpstreamError) {
        guard !finished else { return }
        let handler = self.handler
        self.handler = nil
        if let streamID, case .timedOut = error {
            connection.session.reset(stream: streamID, errorCode: HTTP2ErrorCode.cancel)
            connection.scheduleFlush()
        }
        finish()
        handler?.upstreamFailed(error)
    }

    /// Gives the channel's slot back (exactly once).
    private func finish() {
        guard !finished else { return }
        finished = true
        deadline = 0
        if bufferedPeak > 0 { connection.onStreamBufferPeak?(bufferedPeak) }
        held = []
        heldOffset = 0
        connection.channelFinished(self)
    }

    private func arm(_ timeout: UInt64, phase: String) {
        timerPhase = phase
        deadline = connection.streamDeadline(after: timeout)
    }

    /// From the connection's stream timer: the deadline has passed.
    func deadlinePassed() {
        deadline = 0
        guard handler != nil, !paused, !finished else { return }
        fail(.timedOut(phase: timerPhase))
    }
}

extension HTTP2ClientConnection: EndOfTurnWork {
    /// Frames queued during the turn (by many streams, often) leave together at its end.
    public func runAtEndOfTurn() {
        flushScheduled = false
        flush()
    }
}
