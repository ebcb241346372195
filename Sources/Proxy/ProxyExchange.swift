import Auth
import EventLoop
import HTTP1
import HTTPServer
import RateLimit
import Upstream

/// One client request on its way through the proxy, as named phases (after Pingora's
/// `ProxyHttp`):
///
/// 1. `requestFilter`: refuse what the proxy never forwards (in `ProxyHandler`), then
///    `awaitTurn`: the organisation's token bucket for this endpoint (`RateLimiter`);
/// 2. `obtainToken`: a cached token, or wait for the single fetch in flight;
/// 3. `sendUpstream`: pooled connection, rewritten head (`HeaderRewrite`), streamed body,
///    the first `retryBodyLimit` bytes kept for a replay;
/// 4. `responseFilter`: a 401 for token T drops T, fetches a fresh one and replays once
///    (RFC 6750 §3.1); anything else streams back to the client;
/// 5. `failToProxy`: errors become problem details; 6. `logged`: one access-log line.
///
/// Lives on the client connection's loop; the upstream connection comes from that loop's pool.
final class ProxyExchange: UpstreamResponseHandler {
    private let client: ServerExchange
    private let context: ProxyContext
    private let pool: UpstreamPool
    /// Read once, so a reload never changes a request half-way.
    private let settings: ProxySettings
    let requestID: String
    private let requestIDField: HTTPField
    /// Formatted once per client connection: it goes into X-Forwarded-For (again on a replay)
    /// and the access log.
    private var clientIP: String? { client.remoteIP }
    private let target: [UInt8]
    private let organization: OrganizationRoute
    private let endpoint: Endpoint?
    /// With a shared store: the endpoint with the limit of the whole budget (`endpoint` has
    /// this replica's share, for when the store is away).
    private let sharedEndpoint: Endpoint?
    private var waiter: RateLimiter.Waiter?
    /// Waiting for the turn the shared store gave.
    private var sharedTimer: LoopTimer?
    /// The shared bucket whose queue (in this replica) this request is in.
    private var sharedQueue: String?
    private var waitStart: ContinuousClock.Instant?
    private var rateLimitWait: Duration?

    // Request body: while `replayable`, `body` holds every byte received so far (for a 401
    // replay); after that it only queues bytes not yet written upstream.
    private var body: [UInt8] = []
    private var bodyBytesWritten = 0
    private var replayable = true
    private var requestBodyComplete: Bool { client.requestComplete }

    private var upstream: UpstreamChannel?
    private var upstreamProtocol: UpstreamProtocol?
    private var upstreamReused = false
    private var token: AccessToken?
    private var state = State.starting
    private var retriedAfter401 = false
    private var retriedStaleConnection = false
    private var upstreamStart: ContinuousClock.Instant?
    private var upstreamDuration: Duration?
    private var upstreamPaused = false
    /// The most body bytes held at once (`ProxyStats.bodyBufferPeak`).
    private var bufferedPeak = 0
    /// The trailer section of the response (HTTP/2 upstreams), sent with its end.
    private var trailers = HTTPHeaders()
    private var problemKind: Problem.Kind?

    private enum State {
        case starting, waitingForTurn, waitingForToken, connecting, sending, discarding401, relaying, done
    }

    /// Above this many unsent bytes the producer is paused (client body or upstream response).
    private static let highWater = 256 * 1024

    init(client: ServerExchange, context: ProxyContext, settings: ProxySettings, requestID: String, target: [UInt8],
         organization: OrganizationRoute) {
        self.client = client
        self.context = context
        self.pool = context.pools.pool(for: client.loop)
        self.settings = settings
        self.requestID = requestID
        requestIDField = HeaderRewrite.requestIDField(requestID)
        self.target = target
        self.organization = organization
        endpoint = settings.limiter?.endpoint(method: client.request.method, path: target)
        sharedEndpoint = settings.shared == nil ? nil : settings.fullLimits?.endpoint(method: client.request.method, path: target)
        context.stats.exchangeCreated()
    }

    deinit {
        leaveSharedQueue()
        context.stats.exchangeReleased()
    }

    // MARK: 1. request filter

    func start() {
        client.onBody = { [unowned self] bytes in self.clientBody(bytes) }
        client.onEnd = { [unowned self] in self.clientBodyEnded() }
        client.onAbort = { [unowned self] error in self.clientAborted(error) }
        client.onWritable = { [unowned self] in self.clientWritable() }
        if case .contentLength(let length) = client.bodyFraming, length > UInt64(settings.retryBodyLimit) {
            replayable = false
        }
        context.stats.requestStarted()
        awaitTurn()
    }

    // MARK: 1b. rate limit

    /// Waits, without any upstream connection, until the organisation's bucket for this
    /// endpoint has a token; refuses at once when that would take longer than `max_wait`.
    /// With a shared store that is up, the bucket is in Redis: its script answers how long
    /// until this request's token, and the request waits that long here (no asking again).
    private func awaitTurn() {
        guard let limiter = settings.limiter, let endpoint else { return obtainToken() }
        state = .waitingForTurn
        guard let shared = settings.shared, let sharedEndpoint, shared.isUp else {
            return awaitLocalTurn(limiter, endpoint)
        }
        let maxWait = limiter.policy.maxWait
        let bucket = shared.bucketName(apiKey: organization.apiKey, endpoint: sharedEndpoint)
        if let latestWait = shared.fullQueueWait(bucket: bucket, maxWaiting: limiter.policy.maxWaiting) {
            return refuse(sharedEndpoint, retryAfter: Self.wholeSeconds(latestWait), queueFull: true)
        }
        shared.take(bucket: bucket, endpoint: sharedEndpoint, maxWait: maxWait, on: client.loop) { [self] result in
            guard state == .waitingForTurn else { return }
            switch result {
            case .success(.granted(let wait)) where wait <= .zero:
                context.metrics.rateLimit(organization: organization.name, endpoint: endpoint.name, outcome: .admitted)
                obtainToken()
            case .success(.granted(let wait)):
                shared.enter(bucket: bucket, wait: wait)
                sharedQueue = bucket
                startWaiting(endpoint)
                sharedTimer = client.loop.schedule(after: wait) { [self] in
                    guard state == .waitingForTurn, sharedTimer != nil else { return }
                    sharedTimer = nil
                    leaveSharedQueue()
                    stopWaiting()
                    context.metrics.rateLimit(organization: organization.name, endpoint: endpoint.name, outcome: .waited)
                    obtainToken()
                }
            case .success(.refused(let wait)):
                refuse(sharedEndpoint, retryAfter: Self.wholeSeconds(wait - maxWait), queueFull: false)
            case .failure:
                // The store is away (or answered with an error): this replica's share, locally.
                awaitLocalTurn(limiter, endpoint)
            }
        }
    }

    private func leaveSharedQueue() {
        guard let bucket = sharedQueue, let shared = settings.shared else { return }
        sharedQueue = nil
        shared.leave(bucket: bucket)
    }

    /// `Retry-After` in whole seconds, at least 1 (RFC 9110 §10.2.3).
    private static func wholeSeconds(_ duration: Duration) -> Int {
        max(1, Int((Double(duration.nanoseconds) / 1e9).rounded(.up)))
    }

    private func awaitLocalTurn(_ limiter: RateLimiter, _ endpoint: Endpoint) {
        let admission = limiter.admit(apiKey: organization.apiKey, endpoint: endpoint, loop: client.loop) { [self] in
            guard state == .waitingForTurn else { return }
            waiter = nil
            stopWaiting()
            context.metrics.rateLimit(organization: organization.name, endpoint: endpoint.name, outcome: .waited)
            obtainToken()
        }
        switch admission {
        case .now:
            context.metrics.rateLimit(organization: organization.name, endpoint: endpoint.name, outcome: .admitted)
            obtainToken()
        case .waiting(let waiter, _):
            self.waiter = waiter
            startWaiting(endpoint)
        case .refused(let retryAfter, let queueFull):
            refuse(endpoint, retryAfter: retryAfter, queueFull: queueFull)
        }
    }

    private func refuse(_ endpoint: Endpoint, retryAfter: Int, queueFull: Bool) {
        context.metrics.rateLimit(organization: organization.name, endpoint: endpoint.name, outcome: .refused)
        let why = queueFull
            ? "too many requests are already waiting for this endpoint (rate_limit.max_waiting)"
            : "its turn would come later than rate_limit.max_wait allows"
        failToProxy(Problem(.rateLimited, detail: "Floriday allows \(endpoint.limit) for this API key and endpoint; this request was not sent because \(why).",
                            reason: queueFull ? "queue-full" : "max-wait", retryAfter: retryAfter))
    }

    private func startWaiting(_ endpoint: Endpoint) {
        waitStart = .now
        context.organizations.counts(for: organization.name).waiting.add(1, ordering: .relaxed)
        context.metrics.waiting(organization: organization.name, endpoint: endpoint.name, delta: 1)
    }

    /// The wait is over (its turn came, or the client left).
    private func stopWaiting() {
        guard let start = waitStart, let endpoint else { return }
        waitStart = nil
        rateLimitWait = .now - start
        context.organizations.counts(for: organization.name).waiting.subtract(1, ordering: .relaxed)
        context.metrics.waiting(organization: organization.name, endpoint: endpoint.name, delta: -1)
        context.metrics.rateLimitWait(organization: organization.name, rateLimitWait!)
    }

    // MARK: 2. token

    private func obtainToken() {
        state = .waitingForToken
        context.tokens.token(on: client.loop) { [self] result in
            guard state == .waitingForToken else { return }
            switch result {
            case .success(let token):
                self.token = token
                acquireUpstream()
            case .failure(let error):
                failToProxy(Problem(.tokenUnavailable, detail: "No access token could be obtained from the identity server: \(error.message)",
                                    reason: error.kind.rawValue, retryAfter: error.retryAfter))
            }
        }
    }

    // MARK: 3. send

    private func acquireUpstream() {
        state = .connecting
        upstreamStart = upstreamStart ?? .now
        pool.acquire { [self] result in
            guard state == .connecting else {
                if case .success(let acquired) = result { acquired.connection.abandon() }
                return
            }
            switch result {
            case .success(let acquired):
                upstream = acquired.connection
                upstreamProtocol = acquired.connection.upstreamProtocol
                upstreamReused = acquired.reused
                context.stats.upstreamAcquired(reused: acquired.reused)
                sendUpstream()
            case .failure(let error):
                failToProxy(Self.problem(for: error))
            }
        }
    }

    private func sendUpstream() {
        guard let upstream, let token else { return }
        state = .sending
        let forwardChunked = client.bodyFraming == .chunked
        let head = HeaderRewrite.upstreamRequest(
            from: client.request, target: target,
            injected: .init(host: context.upstreamHostField, authorization: token.authorizationField, apiKey: organization.apiKeyField),
            clientIP: clientIP, requestID: requestIDField, forwardedChunked: forwardChunked)
        bodyBytesWritten = 0
        upstream.sendRequest(head, handler: self)
        writePendingBody()
        if requestBodyComplete { upstream.endRequest() }
        updateClientBodyFlow()
    }

    private func clientBody(_ bytes: UnsafeRawBufferPointer) {
        if replayable && body.count + bytes.count > settings.retryBodyLimit {
            // Too large to keep for a replay: from here on the body only streams.
            replayable = false
        }
        if state == .sending || state == .relaying, let upstream, !replayable, body.count == bodyBytesWritten {
            // Fast path: straight through, nothing queued.
            if !body.isEmpty { body.removeAll(keepingCapacity: false); bodyBytesWritten = 0 }
            upstream.writeBody(bytes)
        } else {
            body.append(contentsOf: bytes)
            writePendingBody()
        }
        updateClientBodyFlow()
    }

    private func clientBodyEnded() {
        guard state == .sending || state == .relaying, let upstream else { return }
        writePendingBody()
        upstream.endRequest()
    }

    /// Writes queued body bytes upstream; drops them afterwards unless kept for a replay.
    private func writePendingBody() {
        guard state == .sending || state == .relaying, let upstream, bodyBytesWritten < body.count else { return }
        body.withUnsafeBytes { upstream.writeBody(UnsafeRawBufferPointer(rebasing: $0[bodyBytesWritten...])) }
        bodyBytesWritten = body.count
        if !replayable {
            body.removeAll(keepingCapacity: true)
            bodyBytesWritten = 0
        }
    }

    /// Backpressure on the request body: the client is paused while too much of its body waits,
    /// either unsent (no upstream connection yet) or in the upstream connection's write buffer,
    /// and resumed as soon as that is no longer so. Re-evaluated after every change, so a pause
    /// never waits for a drain event that cannot come.
    private func updateClientBodyFlow() {
        if body.count > bufferedPeak { bufferedPeak = body.count }
        let unsent = body.count - bodyBytesWritten
        let inFlight = upstream?.pendingWriteBytes ?? 0
        let allowance = replayable ? max(Self.highWater, settings.retryBodyLimit) : Self.highWater
        if unsent > allowance || inFlight > Self.highWater {
            client.pauseBody()
        } else {
            client.resumeBody()
        }
    }

    func upstreamWritable() {
        updateClientBodyFlow()
    }

    // MARK: 4. response filter

    func upstreamResponseHead(_ head: HTTPResponseHead) {
        if upstreamDuration == nil, let start = upstreamStart { upstreamDuration = .now - start }
        if head.status == 401, !retriedAfter401, replayable, let token {
            // RFC 6750 §3.1: the token was refused; a fresh one may succeed. Drop T only if
            // it is still the cached one, so fifty concurrent 401s cause a single refresh.
            // RFC 9110 §9.2.2 allows one automatic retry, not two.
            retriedAfter401 = true
            context.tokens.invalidate(token)
            context.stats.retryAfter401()
            state = .discarding401
            return
        }
        if head.status == 429, let limiter = settings.limiter, let endpoint {
            // Floriday's bucket for this key and endpoint is empty: ours is emptied too, so the
            // requests behind this one wait instead of collecting 429s. The response itself
            // goes back unchanged.
            let retryAfter = Self.retryAfter(head.headers)
            limiter.upstreamRefused(apiKey: organization.apiKey, endpoint: endpoint, retryAfter: retryAfter)
            // And the shared one, for every replica.
            if let shared = settings.shared, let sharedEndpoint {
                shared.drain(apiKey: organization.apiKey, endpoint: sharedEndpoint, retryAfter: retryAfter, on: client.loop)
            }
        }
        state = .relaying
        client.writeHead(HeaderRewrite.clientResponse(from: head, requestID: requestIDField))
    }

    func upstreamResponseBody(_ bytes: UnsafeRawBufferPointer) {
        guard state == .relaying else { return }   // a discarded 401 body
        client.writeBody(bytes)
        let pending = client.pendingWriteBytes
        if pending > bufferedPeak { bufferedPeak = pending }
        if pending > Self.highWater, let upstream, !upstreamPaused {
            upstreamPaused = true
            upstream.pauseResponse()
        }
    }

    func upstreamResponseTrailers(_ fields: [HTTPField]) {
        guard state == .relaying else { return }
        trailers = HeaderRewrite.clientTrailers(from: fields)
    }

    func upstreamResponseEnd() {
        upstream = nil
        if state == .discarding401 {
            token = nil
            upstreamPaused = false
            // Next turn of the loop: the 401's connection goes back to the pool first and
            // can carry the replay.
            client.loop.execute { [self] in
                if state == .discarding401 { obtainToken() }
            }
            return
        }
        guard state == .relaying else { return }
        client.end(trailers: trailers)
        finish()
    }

    private func clientWritable() {
        if upstreamPaused, let upstream {
            upstreamPaused = false
            upstream.resumeResponse()
        }
    }

    func upstreamFailed(_ error: UpstreamError) {
        upstream = nil
        if state == .relaying {
            // Mid-response: the client must see a broken response, never a shorter "complete" one.
            problemKind = .upstreamClosed
            context.logger.warning("upstream.broken", metadata: ["request_id": "\(requestID)", "error": "\(error)"])
            client.abort()
            finish()
            return
        }
        if !retriedStaleConnection, replayable || bodyBytesWritten == 0 && body.isEmpty,
           error.isSafeToRetry(method: client.request.method, onReusedConnection: upstreamReused) {
            // A pooled connection the server had already closed: nothing was processed.
            retriedStaleConnection = true
            acquireUpstream()
            return
        }
        failToProxy(Self.problem(for: error))
    }

    // MARK: 5. errors

    private func failToProxy(_ problem: Problem) {
        problemKind = problem.kind
        if let upstream {
            self.upstream = nil
            upstream.abandon()
        }
        if client.responseHeadSent {
            client.abort()
        } else {
            client.respond(status: problem.status, headers: problem.headers(requestID: requestID), body: problem.body(requestID: requestID))
        }
        finish()
    }

    static func problem(for error: UpstreamError) -> Problem {
        switch error {
        case .connectFailed(let reason):
            return Problem(.upstreamUnreachable, detail: "Could not connect to the Floriday API: \(reason).")
        case .tlsFailed(let reason, let verification):
            return Problem(.upstreamTLS, detail: "TLS with the Floriday API failed: \(reason).", reason: verification ? "certificate-verification" : "handshake")
        case .timedOut(let phase):
            return Problem(.upstreamTimeout, detail: "The Floriday API did not answer in time (\(phase)).")
        case .connectionClosed:
            return Problem(.upstreamClosed, detail: "The Floriday API closed the connection before a complete response.")
        case .invalidResponse(let reason):
            return Problem(.upstreamInvalidResponse, detail: "The Floriday API sent a response that breaks HTTP/1.1: \(reason).")
        case .shutdown:
            return Problem(.upstreamUnreachable, detail: "The proxy is shutting down.")
        case .streamRefused:
            return Problem(.upstreamClosed, detail: "The Floriday API refused the request's HTTP/2 stream, also when it was sent again.")
        case .streamReset(let code, _):
            return Problem(.upstreamClosed, detail: "The Floriday API reset the request's HTTP/2 stream (error code \(code)).")
        case .http2NotNegotiated:
            return Problem(.upstreamTLS, detail: "The Floriday API did not agree to HTTP/2 and upstream_http2 is always.", reason: "alpn")
        }
    }

    /// `Retry-After` in seconds (RFC 9110 §10.2.3); an HTTP-date is not honoured (nil).
    static func retryAfter(_ headers: HTTPHeaders) -> Duration? {
        guard let value = headers.first("retry-after"), !value.isEmpty, value.count <= 9,
              value.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
        return .seconds(Int(String(decoding: value, as: UTF8.self))!)
    }

    private func clientAborted(_ error: ServerExchangeError) {
        guard state != .done else { return }
        if let waiter, let limiter = settings.limiter {
            // A client that hangs up while waiting leaves the queue.
            self.waiter = nil
            limiter.cancel(waiter)
            stopWaiting()
        }
        if let sharedTimer {
            self.sharedTimer = nil
            sharedTimer.cancel()
            stopWaiting()
        }
        leaveSharedQueue()
        if case .malformedBody(let parseError) = error {
            problemKind = Problem.from(parseStatus: parseError.status, code: parseError.code, detail: parseError.message).kind
        }
        // The client left: abandon the upstream exchange; its connection is not reused dirty.
        if let upstream {
            self.upstream = nil
            upstream.abandon()
        }
        finish(clientGone: true)
    }

    // MARK: 6. log

    private func finish(clientGone: Bool = false) {
        guard state != .done else { return }
        state = .done
        body = []
        context.stats.bufferedBody(peak: bufferedPeak)
        context.record(AccessRecord(
            method: client.request.method, target: target, status: client.responseStatus != 0 ? client.responseStatus : (problemKind?.status ?? 0),
            bytesIn: client.bytesIn, bytesOut: client.bytesOut, duration: .now - client.startTime,
            upstreamDuration: upstreamDuration, retried: retriedAfter401, client: clientIP ?? "-",
            requestID: requestID, problem: problemKind, clientGone: clientGone,
            organization: organization.name, endpoint: endpoint?.name, rateLimitWait: rateLimitWait,
            upstreamProtocol: upstreamProtocol?.rawValue), method: client.request.method)
    }
}
