import Dispatch
import EventLoop
import Redis
import TestSupport

/// Runs `body` on `loop` and waits for the value it hands to its callback.
func awaitOn<T>(_ loop: EventLoop, timeout: Double = 30, _ body: @escaping (@escaping (T) -> Void) -> Void) -> T {
    let done = DispatchSemaphore(value: 0)
    let box = Locked<T?>(nil)
    loop.execute {
        body { value in
            box.withLock { $0 = value }
            done.signal()
        }
    }
    precondition(done.wait(timeout: .now() + timeout) == .success, "no answer within \(timeout) s")
    return box.withLock { $0! }
}

extension RedisClient {
    /// A client made on its loop (clients are loop-confined).
    static func make(_ url: String, loop: EventLoop, timeout: Duration = .seconds(5), reconnectDelay: Duration = .zero) throws -> RedisClient {
        let endpoint = try RedisEndpoint(url: url)
        return onLoop(loop) { RedisClient(endpoint: endpoint, loop: loop, timeout: timeout, reconnectDelay: reconnectDelay) }
    }

    func call(_ arguments: String...) -> Result<RedisReply, RedisError> {
        awaitOn(loop) { done in self.send(arguments, completion: done) }
    }
}

extension SharedTokenBuckets {
    func take(_ key: String, rate: Double, burst: Double, reserve: Double = 0, maxWait: Duration) -> Result<Answer, RedisError> {
        awaitOn(client.loop) { done in self.take(key: key, rate: rate, burst: burst, reserve: reserve, maxWait: maxWait, completion: done) }
    }
}
