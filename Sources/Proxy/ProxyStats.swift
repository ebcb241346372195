import Synchronization

/// Counters the proxy keeps about itself (read by tests, the admin endpoint and shutdown).
/// Every request touches them from whichever loop serves it: atomics, not a lock.
public final class ProxyStats: Sendable {
    private let inFlight = Atomic<Int>(0)
    private let requests = Atomic<Int>(0)
    private let retries401 = Atomic<Int>(0)
    private let exchanges = Atomic<Int>(0)
    private let informational = Atomic<Int>(0)
    private let successful = Atomic<Int>(0)
    private let redirection = Atomic<Int>(0)
    private let clientError = Atomic<Int>(0)
    private let serverError = Atomic<Int>(0)
    private let retries401Finished = Atomic<Int>(0)
    private let retries401Succeeded = Atomic<Int>(0)
    private let upstreamSends = Atomic<Int>(0)
    private let upstreamReuses = Atomic<Int>(0)
    private let bufferPeak = Atomic<Int>(0)

    /// For the status page: responses per second, the latest problems, token fetches.
    public let history = RequestHistory()
    public let recentProblems = RecentProblems()
    public let tokenFetches = TokenFetchHistory()
    /// When the proxy started, on the wall clock and on the monotonic one.
    public let startedAt: WallTime = wallNow()
    public let started = ContinuousClock.Instant.now

    public init() {}

    /// The counter of a status class (1 for 1xx … 5 for 5xx).
    private func counter<Result>(statusClass: Int, _ body: (borrowing Atomic<Int>) -> Result) -> Result? {
        switch statusClass {
        case 1: body(informational)
        case 2: body(successful)
        case 3: body(redirection)
        case 4: body(clientError)
        case 5: body(serverError)
        default: nil
        }
    }

    func requestStarted() {
        inFlight.add(1, ordering: .relaxed)
        requests.add(1, ordering: .relaxed)
    }

    func requestFinished(status: Int) {
        inFlight.subtract(1, ordering: .relaxed)
        _ = counter(statusClass: status / 100) { $0.add(1, ordering: .relaxed) }
        history.record(status: status, second: history.second())
    }

    func retryAfter401() { retries401.add(1, ordering: .relaxed) }
    /// A replayed request finished; `succeeded` unless the replay got 401 again or failed.
    func retryFinished(succeeded: Bool) {
        retries401Finished.add(1, ordering: .relaxed)
        if succeeded { retries401Succeeded.add(1, ordering: .relaxed) }
    }
    /// A request got an upstream connection: one kept open from earlier, or a new one.
    func upstreamAcquired(reused: Bool) {
        upstreamSends.add(1, ordering: .relaxed)
        if reused { upstreamReuses.add(1, ordering: .relaxed) }
    }
    /// An exchange's most body bytes held at once (see `bodyBufferPeak`).
    func bufferedBody(peak: Int) {
        var current = bufferPeak.load(ordering: .relaxed)
        while peak > current {
            let (exchanged, original) = bufferPeak.compareExchange(expected: current, desired: peak, ordering: .relaxed)
            if exchanged { break }
            current = original
        }
    }
    func exchangeCreated() { exchanges.add(1, ordering: .relaxed) }
    func exchangeReleased() { exchanges.subtract(1, ordering: .relaxed) }

    public var requestsInFlight: Int { inFlight.load(ordering: .relaxed) }
    public var requestsTotal: Int { requests.load(ordering: .relaxed) }
    public var retriesAfter401: Int { retries401.load(ordering: .relaxed) }
    /// Finished replays after a 401 that got an answer other than 401, and those that did not
    /// (401 again, an error, or the client left).
    public var retriesAfter401Succeeded: Int { retries401Succeeded.load(ordering: .relaxed) }
    public var retriesAfter401Failed: Int { retries401Finished.load(ordering: .relaxed) - retriesAfter401Succeeded }
    /// Requests sent upstream (replays included), and how many of them on a reused connection.
    public var upstreamRequests: Int { upstreamSends.load(ordering: .relaxed) }
    public var upstreamRequestsOnReusedConnections: Int { upstreamReuses.load(ordering: .relaxed) }
    /// Proxied exchanges still in memory: back to zero once the traffic stops, or something
    /// holds on to finished requests (a reference cycle, a callback never called).
    public var exchangesInMemory: Int { exchanges.load(ordering: .relaxed) }
    /// The most body bytes one exchange held in the proxy at once, since the start: request
    /// body kept for a replay or not yet sent upstream, or response body in the client
    /// connection's write buffer. Bounded by `retry_body_limit` and the flow-control marks,
    /// whatever the size of the bodies.
    public var bodyBufferPeak: Int { bufferPeak.load(ordering: .relaxed) }
    public func responses(statusClass: Int) -> Int {
        counter(statusClass: statusClass) { $0.load(ordering: .relaxed) } ?? 0
    }
}
