/// Token buckets kept in Redis, so that several proxy processes draw on one budget.
///
/// Each bucket is a Redis hash (`tokens`, `at`: the level and the server time in µs when it
/// was last computed), updated by one Lua script, which Redis runs atomically: two replicas
/// can never both take the last token. The time is Redis's own (`TIME`), so the replicas'
/// clocks need not agree. A request that finds no token reserves the next one (the level
/// goes below zero) and is told how long until it is due, so it waits in its own process
/// and does not ask again; one whose wait would exceed `maxWait` reserves nothing.
/// Keys expire once their bucket would be full again.
///
/// Loop-confined, like the client it uses.
public final class SharedTokenBuckets {
    public enum Answer: Equatable, Sendable {
        /// A token is reserved: go after `wait` (zero: now).
        case granted(wait: Duration)
        /// Waiting would take longer than allowed; nothing was reserved.
        case refused(wait: Duration)
    }

    /// KEYS[1] the bucket; ARGV: rate (tokens/s), burst, max wait (ms), mode ("take" or
    /// "drain"), for "drain" how long the bucket stays empty (ms), the reserve (tokens a
    /// grant must leave in the bucket). Returns {granted, wait ms}.
    static let source = """
        local rate = tonumber(ARGV[1])
        local burst = tonumber(ARGV[2])
        local now = redis.call('TIME')
        now = tonumber(now[1]) * 1000000 + tonumber(now[2])
        local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
        local tokens = tonumber(state[1]) or burst
        local at = tonumber(state[2]) or now
        if now > at then tokens = math.min(burst, tokens + (now - at) * rate / 1000000) end
        local reserve = tonumber(ARGV[6]) or 0
        local granted, wait = 1, 0
        if ARGV[4] == 'drain' then
          tokens = math.min(tokens, 0) - tonumber(ARGV[5]) * rate / 1000
          granted = 0
        elseif tokens >= 1 + reserve then
          tokens = tokens - 1
        else
          wait = math.ceil((1 + reserve - tokens) * 1000 / rate)
          if wait > tonumber(ARGV[3]) then granted = 0 else tokens = tokens - 1 end
        end
        redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
        redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
        return {granted, wait}
        """

    public let client: RedisClient
    private let script = RedisScript(source: SharedTokenBuckets.source)
    /// `SCRIPT LOAD`s so far (for tests and metrics).
    public var scriptLoads: Int { script.loads }

    public init(client: RedisClient) {
        self.client = client
    }

    /// Takes a token from `key` (a bucket of `burst` tokens refilled at `rate` per second),
    /// leaving at least `reserve` tokens in it (a margin for requests admitted here that reach
    /// Floriday a little later than their turn).
    public func take(key: String, rate: Double, burst: Double, reserve: Double = 0, maxWait: Duration,
                     completion: @escaping (Result<Answer, RedisError>) -> Void) {
        script.run(on: client, keys: [key], arguments: [Self.number(rate), Self.number(burst), String(Self.milliseconds(maxWait)), "take", "0", Self.number(reserve)]) { result in
            completion(result.flatMap { reply in
                guard case .array(let values) = reply, values.count == 2,
                      case .integer(let granted) = values[0], case .integer(let wait) = values[1] else {
                    return .failure(.server("unexpected reply from the bucket script: \(reply)"))
                }
                return .success(granted == 1 ? .granted(wait: .milliseconds(wait)) : .refused(wait: .milliseconds(wait)))
            })
        }
    }

    /// Empties `key` (Floriday answered 429): it stays empty for `emptyFor` (a `Retry-After`),
    /// then refills at `rate`. Requests that hold reservations keep them.
    public func drain(key: String, rate: Double, burst: Double, emptyFor: Duration = .zero,
                      completion: @escaping (Result<Void, RedisError>) -> Void) {
        script.run(on: client, keys: [key], arguments: [Self.number(rate), Self.number(burst), "0", "drain", String(Self.milliseconds(emptyFor)), "0"]) { result in
            completion(result.map { _ in () })
        }
    }

    static func number(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }

    static func milliseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
    }
}
