import Config
import EventLoop
import Logging
import RateLimit
import Redis
import Synchronization
import TLS

/// The rate budget of `rate_limit.store: redis://…`: the token buckets live in Redis, shared
/// by every replica that names the same server (`SharedBucketStore`: one Lua script, run
/// with `EVALSHA`, per request; the bucket's name is a hash of the API key and the endpoint).
///
/// While Redis does not answer (refused, lost, or slower than `timeouts.connect`) or cannot run
/// the script (read-only, out of memory, loading), requests are shaped by the replica's local
/// buckets at `1 / rate_limit.replicas` of every limit, and the script run on a probe key once
/// a second finds out when it works again; requests then use Redis again. Each change
/// is logged once and shows in `/readyz` and `floriday_proxy_rate_limit_store_up`.
public final class SharedRateBudget: @unchecked Sendable {
    let store: SharedBucketStore
    public let replicas: Int
    private let loops: [EventLoop]
    private let logger: Logger
    private let probing = Atomic<Bool>(false)
    private let bucketNames = Mutex<[BucketName: String]>([:])
    /// This replica's requests that the store told to wait, per bucket, until their turn.
    /// Redis keeps no queue, only when the next token is due, so `rate_limit.max_waiting`
    /// is enforced here: per replica.
    private let queues = Mutex<[String: Queue]>([:])
    /// How often a store that is down is asked whether it is back.
    let probeInterval: Duration

    private struct BucketName: Hashable {
        var apiKey: String
        var endpoint: String
    }

    private struct Queue {
        var count = 0
        /// The wait the store gave the latest of them: about how long the queue takes to
        /// move (for `Retry-After` when it is full).
        var latestWait = Duration.zero
    }

    public init(endpoint: RedisEndpoint, replicas: Int, loops: [EventLoop], timeout: Duration,
                tls: TLSContext?, logger: Logger, probeInterval: Duration = .seconds(1)) {
        self.replicas = replicas
        self.loops = loops
        self.logger = logger
        self.probeInterval = probeInterval
        let relay = HealthRelay()
        // While down, requests do not ask the store (the probe does), so a client need not hold
        // back its next connect for long: once the probe finds Redis back, every loop's client
        // connects again at its next request.
        store = SharedBucketStore(endpoint: endpoint, loops: loops, timeout: timeout, reconnectDelay: .milliseconds(100), tls: tls,
                                  onChange: { health in relay.budget?.healthChanged(health) })
        relay.budget = self
    }

    /// Breaks the cycle store → closure → budget.
    private final class HealthRelay: @unchecked Sendable {
        weak var budget: SharedRateBudget?
    }

    /// What `/readyz`, the status and the metric show.
    public var health: SharedBucketStore.Health { store.health }
    public var isUp: Bool { store.health == .up }
    public var storeDescription: String { store.endpoint.description }

    /// The Redis key of a bucket, computed once per API key and endpoint (a SHA-256 each).
    func bucketName(apiKey: String, endpoint: Endpoint) -> String {
        let key = BucketName(apiKey: apiKey, endpoint: endpoint.name)
        if let name = bucketNames.withLock({ $0[key] }) { return name }
        let name = SharedBucketStore.bucketName(apiKey: apiKey, endpoint: endpoint.name)
        bucketNames.withLock { names in
            if names.count >= 10_000 { names.removeAll() }
            names[key] = name
        }
        return name
    }

    /// Asked before the store: when `maxWaiting` requests of this replica already wait for
    /// `bucket`, the wait the latest of them was given (the request is refused without asking
    /// Redis); nil otherwise. Requests whose answer is on its way when the queue fills still
    /// join it (their tokens are reserved), so it can hold a few more than `maxWaiting`.
    func fullQueueWait(bucket: String, maxWaiting: Int) -> Duration? {
        queues.withLock { queues in
            guard let queue = queues[bucket], queue.count >= maxWaiting else { return nil }
            return queue.latestWait
        }
    }

    /// The store told a request to wait `wait` for `bucket`: it is in the queue until `leave`.
    func enter(bucket: String, wait: Duration) {
        queues.withLock { queues in
            var queue = queues[bucket] ?? Queue()
            queue.count += 1
            queue.latestWait = wait
            queues[bucket] = queue
        }
    }

    func leave(bucket: String) {
        queues.withLock { queues in
            guard var queue = queues[bucket] else { return }
            queue.count -= 1
            queues[bucket] = queue.count > 0 ? queue : nil
        }
    }

    /// Takes a token from the shared `bucket` (of an API key at `endpoint`, with the limit of
    /// the whole budget, not this replica's share). Call on `loop`; `completion` runs there.
    /// A failure: shape locally.
    func take(bucket: String, endpoint: Endpoint, maxWait: Duration, on loop: EventLoop,
              completion: @escaping (Result<SharedTokenBuckets.Answer, RedisError>) -> Void) {
        store.take(bucket: bucket, rate: endpoint.limit.rate, burst: endpoint.limit.burst,
                   reserve: endpoint.limit.reserve, maxWait: maxWait, on: loop, completion: completion)
    }

    /// Floriday answered 429: the shared bucket is emptied for every replica.
    func drain(apiKey: String, endpoint: Endpoint, retryAfter: Duration?, on loop: EventLoop) {
        guard isUp else { return }
        store.drain(bucket: bucketName(apiKey: apiKey, endpoint: endpoint), rate: endpoint.limit.rate, burst: endpoint.limit.burst,
                    emptyFor: retryAfter ?? .zero, on: loop)
    }

    public func close() {
        store.close()
    }

    private func healthChanged(_ health: SharedBucketStore.Health) {
        switch health {
        case .up:
            logger.notice("rate_limit.store.up", metadata: ["store": "\(store.endpoint)"])
        case .down(let reason):
            logger.warning("rate_limit.store.down", metadata: [
                "store": "\(store.endpoint)", "reason": "\(reason)",
                "fallback": "local buckets at 1/\(replicas) of each limit until Redis answers again",
            ])
            startProbing()
        }
    }

    /// While the store is down: a probe (`SharedBucketStore.probe`) every `probeInterval` from
    /// the first loop.
    private func startProbing() {
        guard probing.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else { return }
        let loop = loops[0]
        func next() {
            loop.schedule(after: probeInterval) { [weak self] in
                guard let self else { return }
                guard !self.isUp else {
                    self.probing.store(false, ordering: .relaxed)
                    // A change to down between the check and the store above starts no probe: check again.
                    if !self.isUp { self.startProbing() }
                    return
                }
                self.store.probe(on: loop) { [weak self] _ in
                    guard let self else { return }
                    if self.isUp {
                        self.probing.store(false, ordering: .relaxed)
                        if !self.isUp { self.startProbing() }
                    } else {
                        next()
                    }
                }
            }
        }
        loop.execute { next() }
    }
}
