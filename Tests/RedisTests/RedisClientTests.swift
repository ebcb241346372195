import EventLoop
import Foundation
import Redis
import TestSupport
import Testing

/// The client against a real redis-server on a loopback port.
@Suite(.serialized) struct RedisClientTests {
    let group = EventLoopGroup(loopCount: 2)

    @Test func commandsAndRepliesOfEveryKind() throws {
        let server = try RedisServer()
        let client = try RedisClient.make(server.url, loop: group.loops[0])
        #expect(client.call("SET", "greeting", "hallo") == .success(.status("OK")))
        #expect(client.call("GET", "greeting") == .success(.bulk(Array("hallo".utf8))))
        #expect(client.call("GET", "missing") == .success(.null))
        #expect(client.call("INCRBY", "counter", "41") == .success(.integer(41)))
        #expect(client.call("RPUSH", "list", "a", "b") == .success(.integer(2)))
        #expect(client.call("LRANGE", "list", "0", "-1") == .success(.array([.bulk([97]), .bulk([98])])))
        guard case .success(.error(let message)) = client.call("NOSUCHCOMMAND") else {
            Issue.record("an unknown command must come back as an error reply")
            return
        }
        #expect(message.hasPrefix("ERR"))
        // Binary-safe arguments.
        let bytes: [UInt8] = [0, 13, 10, 255]
        _ = awaitOn(client.loop) { done in client.send(bytes: [Array("SET".utf8), Array("bin".utf8), bytes], completion: done) }
        #expect(client.call("GET", "bin") == .success(.bulk(bytes)))
        onLoop(client.loop) { client.close() }
    }

    @Test func passwordAndDatabaseAreSentOnConnect() throws {
        let server = try RedisServer(password: "s3cret pass")
        let client = try RedisClient.make("redis://:s3cret%20pass@127.0.0.1:\(server.port)/3", loop: group.loops[0])
        #expect(client.call("SET", "k", "in-3") == .success(.status("OK")))
        let other = try RedisClient.make("redis://:s3cret%20pass@127.0.0.1:\(server.port)/0", loop: group.loops[1])
        #expect(other.call("GET", "k") == .success(.null))
        #expect(other.call("SELECT", "3") == .success(.status("OK")))
        #expect(other.call("GET", "k") == .success(.bulk(Array("in-3".utf8))))

        let wrong = try RedisClient.make("redis://:wrong@127.0.0.1:\(server.port)/0", loop: group.loops[0])
        guard case .failure(.connect(let why)) = wrong.call("GET", "k") else {
            Issue.record("a wrong password must fail the command as a connect error")
            return
        }
        #expect(why.hasPrefix("AUTH refused"))
        #expect(!why.contains("wrong"))
        for c in [client, other, wrong] { onLoop(c.loop) { c.close() } }
    }

    @Test func aServerThatIsDownFailsAtOnceAndIsUsedAgainWhenBack() throws {
        let server = try RedisServer()
        let client = try RedisClient.make(server.url, loop: group.loops[0])
        #expect(client.call("SET", "k", "v") == .success(.status("OK")))
        #expect(onLoop(client.loop) { client.isConnected })

        server.stop()
        // The connection's end is seen, and the reconnect is refused: an error, no hang.
        let failure = client.call("GET", "k")
        guard case .failure(let error) = failure else {
            Issue.record("a command to a killed server must fail, got \(failure)")
            return
        }
        switch error {
        case .connectionLost, .connect: break
        default: Issue.record("expected the connection's loss, got \(error)")
        }
        guard case .failure(.connect) = client.call("GET", "k") else {
            Issue.record("with the server gone, connecting must fail")
            return
        }

        try server.start()
        // Nothing persisted: the key is gone, the connection is new.
        #expect(eventually { client.call("GET", "k") == .success(.null) })
        #expect(onLoop(client.loop) { client.isConnected })
        onLoop(client.loop) { client.close() }
    }

    @Test func aConnectFailureIsRememberedForTheReconnectDelay() throws {
        let port = RedisServer.freePort()
        let clock = ManualClock()
        let loops = EventLoopGroup(loopCount: 1, clock: clock)
        let endpoint = RedisEndpoint(host: "127.0.0.1", port: port)
        let client = onLoop(loops.loops[0]) { RedisClient(endpoint: endpoint, loop: loops.loops[0], reconnectDelay: .seconds(2)) }
        guard case .failure(.connect(let first)) = client.call("PING") else {
            Issue.record("nothing listens: connect must fail")
            return
        }
        // Within the delay the same error comes back without a new attempt.
        #expect(client.call("PING") == .failure(.connect(first)))
        clock.advance(by: .seconds(3))
        // Past the delay it tries again (and still finds nothing on that port).
        guard case .failure(.connect) = client.call("PING") else {
            Issue.record("past the delay it must try to connect again")
            return
        }
        onLoop(client.loop) { client.close() }
    }

    @Test func aServerThatStopsAnsweringTimesOutInsteadOfHanging() throws {
        let server = try RedisServer()
        let client = try RedisClient.make(server.url, loop: group.loops[0], timeout: .milliseconds(300))
        #expect(client.call("PING") == .success(.status("PONG")))
        server.pause()
        defer { server.resume() }
        #expect(client.call("PING") == .failure(.timeout))
        #expect(!onLoop(client.loop) { client.isConnected })
        server.resume()
        #expect(eventually { client.call("PING") == .success(.status("PONG")) })
        onLoop(client.loop) { client.close() }
    }

    @Test func closeFailsWhatIsOutstanding() throws {
        let server = try RedisServer()
        let client = try RedisClient.make(server.url, loop: group.loops[0])
        #expect(client.call("PING") == .success(.status("PONG")))
        server.pause()
        defer { server.resume() }
        let result: Result<RedisReply, RedisError> = awaitOn(client.loop) { done in
            client.send(["PING"], completion: done)
            client.close()
        }
        #expect(result == .failure(.closed))
        #expect(client.call("PING") == .failure(.closed))
    }

    @Test func anUnknownHostIsAConnectError() throws {
        let client = try RedisClient.make("redis://no-such-host.invalid:6379", loop: group.loops[0])
        guard case .failure(.connect) = client.call("PING") else {
            Issue.record("an unresolvable host must be a connect error")
            return
        }
    }
}
