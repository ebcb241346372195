import Config
import EventLoop
import Foundation
import Logging
import Proxy
import Sandbox
import TestSupport
import Testing
import TLS

/// HTTP/2 towards the API: ALPN outcomes for `upstream_http2`, the pipeline over h2 against
/// the sandbox, and faults (GOAWAY, REFUSED_STREAM, a reset stream) against a scripted h2 server.
@Suite struct UpstreamHTTP2Tests {
    /// The sandbox as IDM (and as API unless `api` is given) and the proxy in front.
    final class Scene: @unchecked Sendable {
        let sandbox: SandboxServer
        let proxy: ProxyServer
        let logs = LogCapture()
        let caFile: String
        var port: Int { proxy.localAddress.port }

        /// `clock`: the proxy's loops run on it (moved by the test); `loops`: how many.
        init(sandboxHTTP2: Bool = true, api: ScriptedHTTP2Upstream? = nil, apiPort: Int? = nil, apiCA: String? = nil,
             clock: ManualClock? = nil, loops: Int = 2, configure: (inout ProxyConfig) -> Void = { _ in }) throws {
            ignoreSIGPIPE()
            sandbox = try SandboxServer(address: SocketAddress(ip: "127.0.0.1", port: 0)!, tls: true, http2: sandboxHTTP2)
            caFile = NSTemporaryDirectory() + "floriday-proxy-h2-test-ca-\(UUID().uuidString).pem"
            try (sandbox.certificateAuthorityPEM! + (api?.ca.certificatePEM ?? apiCA ?? "")).write(toFile: caFile, atomically: true, encoding: .utf8)
            var config = Harness.config(for: sandbox, caFile: caFile)
            if let port = api?.port ?? apiPort { config.apiURL = try EndpointURL("https://localhost:\(port)", key: "api_url") }
            configure(&config)
            let logs = self.logs
            proxy = try ProxyServer(config: config, logger: Logger(label: "test") { _ in logs.handler() }, group: clock.map { EventLoopGroup(loopCount: loops, clock: $0) } ?? EventLoopGroup(loopCount: loops))
            proxy.start()
        }

        func client() throws -> TestClient { try TestClient(port: port, timeout: 10) }

        /// The `upstream_protocol` values of the access log lines.
        var upstreamProtocols: [String] {
            logs.all.filter { $0.hasPrefix("info access") }.compactMap { line in
                line.split(separator: " ").first { $0.hasPrefix("upstream_protocol=") }.map { String($0.dropFirst("upstream_protocol=".count)) }
            }
        }

        deinit {
            sandbox.stop()
            try? FileManager.default.removeItem(atPath: caFile)
            proxy.shutdown(grace: .zero) {}
        }
    }

    /// Runs `count` requests at once, each on its own client connection.
    static func concurrently(_ count: Int, _ request: @escaping @Sendable (Int) throws -> TestClient.Response) -> [Result<Int, Error>] {
        let results = Locked([Result<Int, Error>?](repeating: nil, count: count))
        DispatchQueue.concurrentPerform(iterations: count) { index in
            let outcome = Result { try request(index).status }
            results.withLock { $0[index] = outcome }
        }
        return results.withLock { $0.map { $0! } }
    }

    // MARK: ALPN

    @Test func autoUsesHTTP2WhenTheAPIOffersIt() throws {
        let s = try Scene()
        let response = try s.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/trade-items")
        #expect(response.status == 200)
        let echoed = response.json["headers"] as? [String: String] ?? [:]
        #expect(echoed["authorization"]?.hasPrefix("Bearer ") == true)
        #expect(echoed["x-api-key"] == "sandbox-api-key")
        #expect(eventually { s.upstreamProtocols == ["h2"] }, "\(s.upstreamProtocols)")
        #expect(s.proxy.pools.stats.http2Connections == 1)
        #expect(s.proxy.pools.stats.http1Connections == 0)
    }

    @Test func autoFallsBackToHTTP1WhenTheAPIDoesNotOfferH2() throws {
        let s = try Scene(sandboxHTTP2: false)
        #expect(try s.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/a").status == 200)
        #expect(eventually { s.upstreamProtocols == ["http/1.1"] }, "\(s.upstreamProtocols)")
        #expect(s.proxy.pools.stats.http2Connections == 0)
    }

    @Test func neverOffersOnlyHTTP1() throws {
        let s = try Scene { $0.upstreamHTTP2 = .never }
        #expect(try s.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/a").status == 200)
        #expect(eventually { s.upstreamProtocols == ["http/1.1"] }, "\(s.upstreamProtocols)")
        #expect(s.proxy.pools.stats.http2Connections == 0)
    }

    @Test func alwaysRefusesAnAPIWithoutH2WithAClearProblem() throws {
        let s = try Scene(sandboxHTTP2: false) { $0.upstreamHTTP2 = .always }
        let response = try s.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/a")
        #expect(response.status == 502)
        #expect(response.json["type"] as? String == "urn:floriday-proxy:problem:upstream-tls-failure")
        #expect((response.json["detail"] as? String)?.contains("upstream_http2 is always") == true, "\(response.bodyString)")
        let good = try Scene { $0.upstreamHTTP2 = .always }
        #expect(try good.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/a").status == 200)
        #expect(eventually { good.upstreamProtocols == ["h2"] })
    }

    // MARK: The pipeline over h2

    @Test func concurrentRequestsShareOneConnectionPerLoop() throws {
        let s = try Scene()
        let port = s.port
        let results = Self.concurrently(100) { index in
            try TestClient(port: port, timeout: 20).request("GET", "/suppliers-api-2026v1/_sandbox/echo/item-\(index)")
        }
        #expect(results.allSatisfy { (try? $0.get()) == 200 }, "\(results.filter { (try? $0.get()) != 200 })")
        // Two loops, each with its own pool: at most one h2 connection each.
        #expect(s.proxy.pools.stats.http2Connections <= 2)
        #expect(s.proxy.pools.stats.handshakes <= 2)
        #expect(eventually { s.proxy.pools.stats.http2StreamsInFlight == 0 })
    }

    @Test func a401IsReplayedOnceWithTheKeptPostBody() throws {
        let s = try Scene()
        let client = try s.client()
        #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/warm").status == 200)
        _ = s.sandbox.state.revokeAllTokens()
        let body = Array("{\"order\":\"replayed over h2\"}".utf8)
        let response = try client.request("POST", "/suppliers-api-2026v1/_sandbox/echo/orders", headers: [("Content-Type", "application/json")], body: body)
        #expect(response.status == 200)
        #expect(response.json["body"] as? String == String(decoding: body, as: UTF8.self))
        #expect(s.proxy.stats.retriesAfter401 == 1)
        #expect(eventually { s.upstreamProtocols == ["h2", "h2"] }, "\(s.upstreamProtocols)")
    }

    @Test func fiftyMebibytesEachWayWithoutBufferingTheBody() throws {
        let s = try Scene { $0.limits.maxBodyBytes = 64 << 20 }
        let size = 50 << 20
        let window = 1 << 20   // HTTP2ClientConnection's stream window

        // Down, to a client that reads slowly (a small receive buffer, a pause after every
        // 512 KiB): the stream stops at its window, the proxy holds no more than that.
        let slow = try TestClient(port: s.port, timeout: 30)
        var small: Int32 = 64 * 1024
        setsockopt(slow.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        try slow.send("GET /suppliers-api-2026v1/_sandbox/bytes?size=\(size) HTTP/1.1\r\nHost: p\r\n\r\n")
        var received = 0
        var patternHolds = true
        var sincePause = 0
        let response = try slow.readResponse { bytes in
            for (i, byte) in bytes.enumerated() where byte != UInt8((received + i) % 251) { patternHolds = false; break }
            received += bytes.count
            sincePause += bytes.count
            if sincePause >= 512 * 1024 {
                sincePause = 0
                usleep(2_000)
            }
        }
        #expect(response.status == 200)
        #expect(received == size)
        #expect(patternHolds)
        // The client was slow enough for the stream to wait for it (bytes were held), and what
        // waited never passed the stream window (one DATA frame of slack).
        let streamPeak = s.proxy.pools.stats.http2StreamBufferPeak
        #expect(streamPeak > 0, "the client never made the stream wait")
        #expect(streamPeak <= window + 16 * 1024, "a stream held \(streamPeak) bytes")

        // Up, from a client that writes as fast as it can: it is paused while the stream's send
        // window and the proxy's mark are full.
        var head = Array("POST /suppliers-api-2026v1/_sandbox/echo/upload HTTP/1.1\r\nHost: p\r\nContent-Length: \(size)\r\n\r\n".utf8)
        let piece = [UInt8](repeating: 0x5a, count: 1 << 20)
        try slow.send(head)
        head = []
        for _ in 0..<(size >> 20) { try slow.send(piece) }
        let echoed = try slow.readResponse()
        #expect(echoed.status == 200)
        #expect(echoed.json["bodyBytes"] as? Int == size)
        #expect(eventually { s.upstreamProtocols == ["h2", "h2"] })

        // Whatever the body size, an exchange held at most the replay copy (retry_body_limit,
        // 1 MiB) and the flow-control marks (256 KiB), a stream at most its window.
        let exchangePeak = s.proxy.stats.bodyBufferPeak
        #expect(exchangePeak <= (1 << 20) + 512 * 1024, "an exchange held \(exchangePeak) bytes")
        #expect(s.proxy.pools.stats.http2StreamBufferPeak <= window + 16 * 1024)
    }

    @Test func aSlowClientDoesNotStallOtherStreams() throws {
        let s = try Scene { $0.limits.maxUpstreamConnections = 2 }
        let slow = try s.client()
        try slow.send("GET /suppliers-api-2026v1/_sandbox/bytes?size=50000000 HTTP/1.1\r\nHost: p\r\n\r\n")
        #expect(try slow.readSome() != nil)   // the head and a first piece; then it stops reading
        for i in 0..<10 {
            do {
                #expect(try s.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/meanwhile-\(i)").status == 200)
            } catch {
                Issue.record("meanwhile-\(i) stalled: \(error)")
            }
        }
        #expect(s.proxy.pools.stats.http2Connections <= 2)
        // The slow client reads on: its stream resumes (its WINDOW_UPDATEs go out again).
        var total = 0
        while total < 4_000_000, let chunk = try slow.readSome() { total += chunk.count }
        #expect(total >= 4_000_000)
    }

    // MARK: Faults

    @Test func goAwayMidLoadLosesNothingAndDoublesNothing() throws {
        let api = try ScriptedHTTP2Upstream(script: .init(goAwayAfter: 5, holdResponses: false))
        defer { api.stop() }
        let s = try Scene(api: api) { $0.limits.maxUpstreamConnections = 2 }
        let port = s.port
        let results = Self.concurrently(20) { index in
            try TestClient(port: port, timeout: 20).request("GET", "/suppliers-api-2026v1/job-\(index)")
        }
        #expect(results.allSatisfy { (try? $0.get()) == 200 }, "\(results)")
        let paths = api.processed.map(\.path)
        #expect(paths.count == 20, "processed: \(paths.sorted())")
        #expect(Set(paths) == Set((0..<20).map { "/suppliers-api-2026v1/job-\($0)" }))
        #expect(api.processed.allSatisfy { $0.authorization?.hasPrefix("Bearer ") == true && $0.apiKey == "sandbox-api-key" })
        #expect(api.connectionCount >= 2)
    }

    @Test func aRefusedStreamIsSentAgainOnce() throws {
        let api = try ScriptedHTTP2Upstream(script: .init(refuseFirst: 1))
        defer { api.stop() }
        let s = try Scene(api: api)
        #expect(try s.client().request("GET", "/suppliers-api-2026v1/once").status == 200)
        #expect(api.refusedCount == 1)
        #expect(api.processed.map(\.path) == ["/suppliers-api-2026v1/once"])

        let twice = try ScriptedHTTP2Upstream(script: .init(refuseFirst: 2))
        defer { twice.stop() }
        let t = try Scene(api: twice)
        let response = try t.client().request("GET", "/suppliers-api-2026v1/twice")
        #expect(response.status == 502)
        #expect(response.json["type"] as? String == "urn:floriday-proxy:problem:upstream-connection-closed")
        #expect(twice.refusedCount == 2)
        #expect(twice.processed.isEmpty)
    }

    @Test func aResetStreamBreaksOnlyItsResponse() throws {
        let api = try ScriptedHTTP2Upstream(script: .init())
        defer { api.stop() }
        let s = try Scene(api: api)
        let client = try s.client()
        #expect(throws: (any Error).self) { try client.request("GET", "/suppliers-api-2026v1/reset") }
        // The connection carries the next exchange: only the stream was reset.
        for i in 0..<4 {
            #expect(try s.client().request("GET", "/suppliers-api-2026v1/after-\(i)").status == 200)
        }
        #expect(api.connectionCount <= 2)   // one per loop at most
    }

    @Test func aLoweredStreamLimitIsHonoured() throws {
        // The server lowers SETTINGS_MAX_CONCURRENT_STREAMS to 2 after the first request head
        // and holds its responses: the proxy's one connection (one loop, one connection allowed)
        // must never carry more than 2 streams at once, and the others wait their turn.
        // (Beyond the limit, nghttp2 on the server side would refuse the stream, and a second
        // refusal would be a 502.)
        let api = try ScriptedHTTP2Upstream(script: .init(lowerMaxConcurrentStreamsTo: 2, holdResponses: true))
        defer { api.stop() }
        let s = try Scene(api: api, loops: 1) { $0.limits.maxUpstreamConnections = 1 }
        let first = try s.client()
        try first.send("GET /suppliers-api-2026v1/first HTTP/1.1\r\nHost: p\r\n\r\n")
        #expect(eventually { api.heldCount == 1 })
        api.release()
        #expect(try first.readResponse().status == 200)

        let count = 12
        let clients = try (0..<count).map { _ in try s.client() }
        for (i, client) in clients.enumerated() {
            try client.send("GET /suppliers-api-2026v1/n-\(i) HTTP/1.1\r\nHost: p\r\n\r\n")
        }
        var released = 0
        while released < count {
            // Two streams open at the server, their responses held: the others must wait.
            guard eventually({ api.heldCount == min(2, count - released) }) else {
                Issue.record("held \(api.heldCount) after \(released) released")
                break
            }
            #expect(api.maxOpenStreamsSeen <= 2)
            // The proxy opens no more itself (nghttp2 would also hold back a stream beyond the
            // peer's limit, but then the exchange would wait inside the session, past its timer).
            #expect(s.proxy.pools.stats.http2StreamsInFlight <= 2)
            released += api.heldCount
            api.release()
        }
        for client in clients { #expect(try client.readResponse().status == 200) }
        #expect(api.maxOpenStreamsSeen == 2)
        #expect(api.processed.count == count + 1)
        #expect(api.connectionCount == 1)
    }

    @Test func anIdleConnectionUnansweredPingIsDropped() throws {
        let clock = ManualClock()
        let api = try ScriptedHTTP2Upstream(script: .init(answerPings: false))
        defer { api.stop() }
        let s = try Scene(api: api, clock: clock, loops: 1) {
            $0.timeouts.idle = .seconds(60)
            $0.timeouts.connect = .seconds(5)
        }
        let loops = s.proxy.group.loops
        #expect(try s.client().request("GET", "/suppliers-api-2026v1/first").status == 200)
        #expect(api.connectionCount == 1)
        // timeouts.idle / 2 without a stream: PING.
        advance(clock, by: .seconds(29), firingTimersOn: loops)
        #expect(s.proxy.pools.stats.http2Connections == 1)
        advance(clock, by: .seconds(1), firingTimersOn: loops)
        #expect(eventually { api.pingsReceived == 1 })
        // No answer within timeouts.connect: the connection is dropped, not a moment before.
        advance(clock, by: .seconds(4), firingTimersOn: loops)
        #expect(s.proxy.pools.stats.http2Connections == 1)
        #expect(api.closedConnections == 0)
        advance(clock, by: .seconds(1), firingTimersOn: loops)
        #expect(eventually { s.proxy.pools.stats.http2Connections == 0 })
        #expect(eventually { api.closedConnections == 1 })
        // The next request gets a new connection.
        #expect(try s.client().request("GET", "/suppliers-api-2026v1/after").status == 200)
        #expect(api.connectionCount == 2)
        #expect(api.processed.map(\.connection) == [1, 2])
    }

    @Test func anIdleConnectionThatAnswersPingStaysUntilTheIdleTimeout() throws {
        let clock = ManualClock()
        let api = try ScriptedHTTP2Upstream(script: .init(answerPings: true))
        defer { api.stop() }
        let s = try Scene(api: api, clock: clock, loops: 1) {
            $0.timeouts.idle = .seconds(60)
            $0.timeouts.connect = .seconds(5)
        }
        let loops = s.proxy.group.loops
        #expect(try s.client().request("GET", "/suppliers-api-2026v1/first").status == 200)
        advance(clock, by: .seconds(30), firingTimersOn: loops)
        #expect(eventually { api.pingsReceived == 1 })
        // The server acknowledged the PING before it read this request, so when the response is
        // in, the acknowledgement reached the proxy first (one TCP stream, in order).
        #expect(try s.client().request("GET", "/suppliers-api-2026v1/second").status == 200)
        #expect(api.connectionCount == 1)
        // Past the connect timeout: still there.
        advance(clock, by: .seconds(10), firingTimersOn: loops)
        #expect(s.proxy.pools.stats.http2Connections == 1)
        #expect(api.closedConnections == 0)
        // Idle again since the second request: probed again after idle / 2.
        advance(clock, by: .seconds(20), firingTimersOn: loops)
        #expect(eventually { api.pingsReceived == 2 })
        #expect(try s.client().request("GET", "/suppliers-api-2026v1/third").status == 200)
        #expect(api.connectionCount == 1)
    }
    @Test func eachStreamTimesOutOnItsOwnDeadline() throws {
        // The streams of a connection share one timer, but each keeps its own deadline: two
        // unanswered requests time out after timeouts.request, one sent later only after its own.
        let clock = ManualClock()
        let api = try ScriptedHTTP2Upstream(script: .init(holdResponses: true))
        defer { api.stop() }
        let s = try Scene(api: api, clock: clock, loops: 1) { $0.timeouts.request = .seconds(10) }
        let loops = s.proxy.group.loops
        let early = try (0..<2).map { _ in try s.client() }
        for (index, client) in early.enumerated() {
            try client.send("GET /suppliers-api-2026v1/early-\(index) HTTP/1.1\r\nHost: p\r\n\r\n")
        }
        #expect(eventually { api.heldCount == 2 })
        advance(clock, by: .seconds(6), firingTimersOn: loops)
        let late = try s.client()
        try late.send("GET /suppliers-api-2026v1/late HTTP/1.1\r\nHost: p\r\n\r\n")
        #expect(eventually { api.heldCount == 3 })
        advance(clock, by: .seconds(3), firingTimersOn: loops)
        #expect(s.proxy.pools.stats.http2StreamsInFlight == 3)
        advance(clock, by: .seconds(1), firingTimersOn: loops)
        for client in early { #expect(try client.readResponse().status == 504) }
        #expect(eventually { s.proxy.pools.stats.http2StreamsInFlight == 1 })
        // Nine seconds for the late one: still waiting, and answered when the API answers.
        advance(clock, by: .seconds(5), firingTimersOn: loops)
        #expect(s.proxy.pools.stats.http2StreamsInFlight == 1)
        api.release()
        #expect(try late.readResponse().status == 200)
    }
}
