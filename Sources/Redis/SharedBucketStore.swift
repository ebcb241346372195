import COpenSSL
import EventLoop
import TLS

/// The rate budget that several proxy processes share through one Redis: the buckets of
/// `SharedTokenBuckets`, a client per event loop (clients are loop-confined), bucket names
/// that never contain an API key, and whether the store is usable now.
///
/// The store is *down* after a command failed on the way (connect, lost connection,
/// timeout) or Redis answered with an error about itself rather than the command (read-only,
/// out of memory, loading: `RedisError.isServerWide`): the caller then shapes with its own
/// buckets. It is *up* again after the next command that worked; while down, each loop's client tries to connect again at most
/// once per `reconnectDelay` and fails fast in between, so requests do not wait on a dead
/// server. `onChange` hears each change once (for the log line, the readiness detail and
/// the metric), on the loop that saw it.
public final class SharedBucketStore: @unchecked Sendable {
    public enum Health: Equatable, Sendable {
        case up
        case down(reason: String)
    }

    public let endpoint: RedisEndpoint
    private let slots: [ObjectIdentifier: Slot]
    private let timeout: Duration
    private let reconnectDelay: Duration
    private let tls: TLSContext?
    private let state = Locked<Health>(.up)
    private let onChange: @Sendable (Health) -> Void

    /// One loop's client, touched only on that loop.
    private final class Slot {
        var buckets: SharedTokenBuckets?
    }

    /// `tls` verifies a `rediss://` server (the system store when nil).
    public init(endpoint: RedisEndpoint, loops: [EventLoop], timeout: Duration, reconnectDelay: Duration = .seconds(1),
                tls: TLSContext? = nil, onChange: @escaping @Sendable (Health) -> Void = { _ in }) {
        self.endpoint = endpoint
        self.tls = tls
        self.timeout = timeout
        self.reconnectDelay = reconnectDelay
        self.onChange = onChange
        var slots: [ObjectIdentifier: Slot] = [:]
        for loop in loops { slots[ObjectIdentifier(loop)] = Slot() }
        self.slots = slots
    }

    public var health: Health { state.withLock { $0 } }

    /// The Redis key of the bucket for `apiKey` and `endpoint`: a SHA-256 of both, so the key
    /// itself never reaches Redis, its memory or its logs.
    public static func bucketName(apiKey: String, endpoint: String) -> String {
        var input = Array("floriday-proxy/bucket/v1\u{0}".utf8)
        input += Array(apiKey.utf8)
        input.append(0)
        input += Array(endpoint.utf8)
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let ok = input.withUnsafeBytes { raw in
            EVP_Digest(raw.baseAddress, raw.count, &digest, &length, EVP_sha256(), nil)
        }
        precondition(ok == 1, "SHA-256 failed")
        let hex = Array("0123456789abcdef".utf8)
        var name = Array("floriday-proxy:bucket:".utf8)
        for byte in digest[0..<Int(length)] {
            name.append(hex[Int(byte >> 4)])
            name.append(hex[Int(byte & 0x0f)])
        }
        return String(decoding: name, as: UTF8.self)
    }

    /// Takes a token from the shared bucket `bucket` (see `SharedTokenBuckets.take`). A
    /// failure means the store is down: shape locally. Call on `loop`; `completion` runs there.
    public func take(bucket: String, rate: Double, burst: Double, reserve: Double = 0, maxWait: Duration,
                     on loop: EventLoop, completion: @escaping (Result<SharedTokenBuckets.Answer, RedisError>) -> Void) {
        buckets(on: loop).take(key: bucket, rate: rate, burst: burst, reserve: reserve, maxWait: maxWait) { [self] result in
            observe(result.map { _ in () })
            completion(result)
        }
    }

    /// Empties the shared bucket for every replica (Floriday answered 429).
    public func drain(bucket: String, rate: Double, burst: Double, emptyFor: Duration = .zero,
                      on loop: EventLoop, completion: @escaping (Result<Void, RedisError>) -> Void = { _ in }) {
        buckets(on: loop).drain(key: bucket, rate: rate, burst: burst, emptyFor: emptyFor) { [self] result in
            observe(result)
            completion(result)
        }
    }

    /// Runs the bucket script on a key of its own on `loop`'s client and notes the outcome:
    /// how a store that is down finds out that it is back without a request paying for the
    /// attempt. Not `PING`: a read-only replica or a server out of memory answers that, but
    /// not the script every request needs. Call on `loop`.
    public func probe(on loop: EventLoop, completion: @escaping (Result<Void, RedisError>) -> Void = { _ in }) {
        buckets(on: loop).take(key: Self.probeKey, rate: 1000, burst: 1000, maxWait: .zero) { [self] result in
            let outcome = result.map { _ in () }
            observe(outcome)
            completion(outcome)
        }
    }

    static let probeKey = "floriday-proxy:probe"

    /// Closes every loop's client (on its loop).
    public func close() {
        for (_, slot) in slots {
            guard let buckets = slot.buckets else { continue }
            buckets.client.loop.execute {
                buckets.client.close()
            }
        }
    }

    private func buckets(on loop: EventLoop) -> SharedTokenBuckets {
        loop.assertInLoop()
        guard let slot = slots[ObjectIdentifier(loop)] else { preconditionFailure("loop \(loop.index) is not one of the store's") }
        if let buckets = slot.buckets { return buckets }
        let client = RedisClient(endpoint: endpoint, loop: loop, timeout: timeout, reconnectDelay: reconnectDelay, tls: tls)
        let buckets = SharedTokenBuckets(client: client)
        slot.buckets = buckets
        return buckets
    }

    private func observe(_ result: Result<Void, RedisError>) {
        let now: Health
        switch result {
        case .success: now = .up
        case .failure(let error) where error.isServerWide: now = .down(reason: error.description)
        // Any other error answer: Redis is there, and the error is the command's.
        case .failure(.server): now = .up
        case .failure(.closed): return
        case .failure(let error): now = .down(reason: error.description)
        }
        let changed = state.withLock { current -> Bool in
            switch (current, now) {
            case (.up, .up), (.down, .down): return false
            default:
                current = now
                return true
            }
        }
        if changed { onChange(now) }
    }
}
