import EventLoop
import Foundation
import RateLimit

/// Floriday's rate limits, as the sandbox enforces them (`sandbox --rate-limit FACTOR`): a
/// token bucket per API key and endpoint, from the same published table the proxy ships,
/// with rates multiplied by `scale`. A request that finds its bucket empty gets what Floriday
/// answers: 429 with a `ValidationProblemDetails` body and no `Retry-After`. It never waits.
///
/// So tests and the demo show shaping against a limit the proxy does not control.
public final class SandboxRateLimit: @unchecked Sendable {
    private let table: EndpointTable
    private let clock: any MonotonicClock
    private let lock = NSLock()
    private var buckets: [String: TokenBucket] = [:]
    private var admittedCount = 0
    private var refusedCount = 0
    private var arrivals: [String: [UInt64]] = [:]
    /// Records the arrival time (clock nanoseconds) of every admitted request per endpoint name.
    public var recordsArrivals = false

    /// - Parameters:
    ///   - scale: rates are multiplied by it (bursts stay), so a test need not wait for real ones.
    ///   - rules: limits that replace the table's for the paths they match (as `rate_limit.endpoints`).
    public init(scale: Double = 1, clock: any MonotonicClock = SystemClock(), rules: [EndpointRule] = [],
                defaultLimit: BucketLimit = BucketLimit(rate: 3.4, burst: 1000)) {
        let operations = PublishedLimits.operations.map { operation in
            var operation = operation
            operation.rate = operation.rate.map { $0 * scale }
            return operation
        }
        table = EndpointTable(operations: operations, rules: rules, defaultLimit: defaultLimit.scaled(by: scale))
        self.clock = clock
    }

    /// Requests let through, and refused with 429, so far.
    public var admitted: Int { lock.withLock { admittedCount } }
    public var refused: Int { lock.withLock { refusedCount } }

    /// Arrival times (nanoseconds of the clock) of the admitted requests at `endpoint`, oldest first.
    public func arrivals(endpoint: String) -> [UInt64] { lock.withLock { arrivals[endpoint] ?? [] } }

    /// The endpoint name the table gives `method` on `path` (as the proxy names it in metrics).
    public func endpointName(method: String, path: String) -> String {
        table.classify(method: method, path: Array(path.utf8)).name
    }

    /// nil: go on; else the 429 to send. Requests without an API key are left to the key check.
    func check(_ request: SandboxRequest) -> SandboxResponse? {
        guard let apiKey = request.header("X-Api-Key") else { return nil }
        let endpoint = table.classify(method: request.method, path: Array(request.path.utf8))
        let now = clock.nanoseconds
        let allowed: Bool = lock.withLock {
            let key = "\(endpoint.id) \(apiKey)"
            var bucket = buckets[key] ?? TokenBucket(limit: endpoint.limit, now: now)
            let allowed = bucket.take(now: now)
            buckets[key] = bucket
            if allowed {
                admittedCount += 1
                if recordsArrivals { arrivals[endpoint.name, default: []].append(now) }
            } else {
                refusedCount += 1
            }
            return allowed
        }
        return allowed ? nil : .problem(429, detail: "Rate limit exceeded for this API key and endpoint (\(endpoint.limit)).")
    }
}
