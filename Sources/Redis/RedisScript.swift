/// A Lua script run with `EVALSHA`: loaded once per client with `SCRIPT LOAD`, and loaded
/// again when Redis answers `NOSCRIPT` (after a restart, a failover or `SCRIPT FLUSH`), so
/// the script's text crosses the network only then.
///
/// Loop-confined, like the client it uses.
public final class RedisScript {
    public let source: String
    /// The SHA-1 Redis gave for `source`, once loaded.
    public private(set) var sha: String?
    /// `SCRIPT LOAD`s sent so far (the first load included).
    public private(set) var loads = 0
    /// Runs waiting for the load in flight: concurrent first calls share one `SCRIPT LOAD`.
    private var waitingForLoad: [(keys: [String], arguments: [String], completion: (Result<RedisReply, RedisError>) -> Void)]?

    public init(source: String) {
        self.source = source
    }

    /// Runs the script with `keys` and `arguments`; an error reply is a `.server` failure.
    public func run(on client: RedisClient, keys: [String], arguments: [String],
                    completion: @escaping (Result<RedisReply, RedisError>) -> Void) {
        guard let sha else {
            load(on: client, then: keys, arguments, completion)
            return
        }
        client.send(["EVALSHA", sha, String(keys.count)] + keys + arguments) { [weak self] result in
            switch result {
            case .success(.error(let message)) where message.hasPrefix("NOSCRIPT"):
                guard let self else { return completion(.failure(.server(message))) }
                self.sha = nil
                self.load(on: client, then: keys, arguments, completion)
            case .success(.error(let message)):
                completion(.failure(.server(message)))
            default:
                completion(result)
            }
        }
    }

    private func load(on client: RedisClient, then keys: [String], _ arguments: [String],
                      _ completion: @escaping (Result<RedisReply, RedisError>) -> Void) {
        if waitingForLoad != nil {
            waitingForLoad!.append((keys, arguments, completion))
            return
        }
        waitingForLoad = [(keys, arguments, completion)]
        loads += 1
        client.send(["SCRIPT", "LOAD", source]) { [weak self] result in
            guard let self else { return completion(.failure(.closed)) }
            let waiting = self.waitingForLoad ?? []
            self.waitingForLoad = nil
            let failure: RedisError
            switch result {
            case .success(.bulk(let bytes)):
                let sha = String(decoding: bytes, as: UTF8.self)
                self.sha = sha
                // Once: a script flushed again at once fails these calls instead of looping.
                for run in waiting {
                    client.send(["EVALSHA", sha, String(run.keys.count)] + run.keys + run.arguments) { result in
                        if case .success(.error(let message)) = result { run.completion(.failure(.server(message))) } else { run.completion(result) }
                    }
                }
                return
            case .success(.error(let message)):
                failure = .server(message)
            case .success(let other):
                failure = .server("SCRIPT LOAD answered \(other)")
            case .failure(let error):
                failure = error
            }
            for run in waiting { run.completion(.failure(failure)) }
        }
    }
}
