import EventLoop

/// Counters the proxy keeps about itself (read by tests, the admin endpoint and shutdown).
public final class ProxyStats: @unchecked Sendable {
    private struct Counters {
        var inFlight = 0
        var requests = 0
        var byStatusClass: [Int: Int] = [:]
        var retries401 = 0
    }
    private let counters = Locked(Counters())

    public init() {}

    func requestStarted() { counters.withLock { $0.inFlight += 1; $0.requests += 1 } }
    func requestFinished(status: Int) {
        counters.withLock { $0.inFlight -= 1; $0.byStatusClass[status / 100, default: 0] += 1 }
    }
    func retryAfter401() { counters.withLock { $0.retries401 += 1 } }

    public var requestsInFlight: Int { counters.withLock { $0.inFlight } }
    public var requestsTotal: Int { counters.withLock { $0.requests } }
    public var retriesAfter401: Int { counters.withLock { $0.retries401 } }
    public func responses(statusClass: Int) -> Int { counters.withLock { $0.byStatusClass[statusClass, default: 0] } }
}
