import Config
import EventLoop
import Foundation
import HTTP1
import Sandbox
import TestSupport
import Testing

/// End to end: client → proxy → sandbox (IDM + API over TLS), all on loopback.
@Suite struct ProxyTests {
    @Test func injectsCredentialsAndStripsTheClients() throws {
        let h = try Harness()
        let response = try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/trade-items", headers: [
            ("Authorization", "Bearer client-token"), ("X-Api-Key", "client-key"), ("Connection", "X-Secret, Authorization"),
            ("X-Secret", "hop"), ("Keep-Alive", "timeout=1"), ("X-Custom", "kept"), ("X-Request-Id", "req-123"),
        ])
        #expect(response.status == 200)
        let echoed = response.json["headers"] as? [String: String] ?? [:]
        let token = try #require(h.proxy.tokens.cachedToken?.value)
        #expect(echoed["authorization"] == "Bearer \(token)")
        #expect(echoed["x-api-key"] == "sandbox-api-key")
        #expect(echoed["x-custom"] == "kept")
        #expect(echoed["x-secret"] == nil)
        #expect(echoed["keep-alive"] == nil)
        #expect(echoed["connection"] == nil)
        #expect(echoed["x-forwarded-for"] == "127.0.0.1")
        #expect(echoed["x-forwarded-proto"] == "http")
        #expect(echoed["x-request-id"] == "req-123")
        #expect(echoed["host"] == URL(string: h.sandbox.baseURL)!.host! + ":\(h.sandbox.port)")
        #expect(response.header("x-request-id") == "req-123")
    }

    @Test func forwardsPathAndQueryByteForByte() throws {
        let h = try Harness()
        let client = try h.client()
        for target in ["/suppliers-api-2026v1/_sandbox/echo/trade-items?x=a%2Fb&y=%20&z=%7e~&empty=&q=%C3%A9", "/customers-api-2026v1/_sandbox/echo/a%2Fb/./c/../d//e;p=1?", "/suppliers-api-2026v1/_sandbox/echo/x?a=1&a=2&b=%ZZ"] {
            let response = try client.request("GET", target)
            #expect(response.status == 200)
            #expect(response.json["target"] as? String == target)
        }
    }

    @Test func absoluteFormGoesToTheConfiguredAPIOnly() throws {
        let h = try Harness()
        let response = try h.client().request("GET", "http://evil.example:9999/suppliers-api-2026v1/_sandbox/echo/x?y=1", host: "evil.example:9999")
        #expect(response.status == 200)
        #expect(response.json["target"] as? String == "/suppliers-api-2026v1/_sandbox/echo/x?y=1")
        #expect((response.json["headers"] as? [String: String])?["host"]?.hasPrefix("127.0.0.1:") == true)
    }

    @Test func cachesTheTokenAcrossRequestsAndConnections() throws {
        let h = try Harness()
        for _ in 0..<3 {
            let client = try h.client()
            for _ in 0..<5 {
                #expect(try client.request("GET", "/suppliers-api-2026v1/auth/key").status == 200)
            }
        }
        #expect(h.state.tokenRequests == 1)
        #expect(h.proxy.tokens.fetchCount == 1)
    }

    @Test func singleFlightUnderConcurrency() throws {
        let h = try Harness()
        let statuses = Locked<[Int]>([])
        DispatchQueue.concurrentPerform(iterations: 40) { _ in
            let status = (try? TestClient(port: h.port).request("GET", "/customers-api-2026v1/identities").status) ?? -1
            statuses.withLock { $0.append(status) }
        }
        #expect(statuses.withLock { $0 } == Array(repeating: 200, count: 40))
        #expect(h.state.tokenRequests == 1)
    }

    @Test func refreshesAheadOfExpiryWithoutMakingTheRequestWait() throws {
        // Time is moved by hand, on the proxy's clock and the sandbox's alike. A one-hour token
        // and the default 60 s margin: refresh-ahead starts at 3540 s.
        let clock = ManualClock()
        let h = try Harness(tokenLifetime: 3600, clock: clock)
        let first = try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/x")
        let firstToken = (first.json["headers"] as? [String: String])?["authorization"]
        #expect(h.state.tokenRequests == 1)
        h.state.advanceClock(by: 3545)
        advance(clock, by: .seconds(3545), firingTimersOn: h.proxy.group.loops)
        // Inside the margin: this request still goes out with the current token (a new
        // connection: the old one's keep-alive ran out meanwhile)...
        let second = try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/x")
        #expect(second.status == 200)
        #expect((second.json["headers"] as? [String: String])?["authorization"] == firstToken)
        // ...and one background refresh has started and, soon after, replaced the token.
        #expect(eventually { h.proxy.tokens.cachedToken.map { "Bearer \($0.value)" } != firstToken })
        let third = try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/x")
        #expect((third.json["headers"] as? [String: String])?["authorization"] != firstToken)
        #expect(h.state.tokenRequests == 2)
    }

    @Test func idleProxyFetchesNothing() throws {
        let clock = ManualClock()
        let h = try Harness(tokenLifetime: 3600, clock: clock)
        #expect(try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/x").status == 200)
        // The token expires while nobody asks for one. Every timer that came due has fired and
        // anything it started on the token's loop has run before the count is read.
        h.state.advanceClock(by: 3700)
        advance(clock, by: .seconds(3700), firingTimersOn: h.proxy.group.loops)
        onLoop(h.proxy.group.loops[0]) {}
        #expect(h.proxy.tokens.fetchCount == 1)
        #expect(h.state.tokenRequests == 1)
        // The expired token is never sent: the next request fetches a fresh one first.
        #expect(try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/x").status == 200)
        #expect(h.state.tokenRequests == 2)
        #expect(h.state.apiUnauthorized == 0)
    }

    @Test func retriesOnceOn401WithTheReplayedBody() throws {
        let h = try Harness()
        let client = try h.client()
        #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x").status == 200)
        h.state.revokeAllTokens()
        let body = Array("{\"tradeItemId\":\"abc\",\"note\":\"replayed\"}".utf8)
        let response = try client.request("POST", "/suppliers-api-2026v1/_sandbox/echo/trade-items", headers: [("Content-Type", "application/json")], body: body)
        #expect(response.status == 200)
        #expect(response.json["body"] as? String == String(decoding: body, as: UTF8.self))
        #expect(h.state.apiUnauthorized == 1)
        #expect(h.state.tokenRequests == 2)
        #expect(h.proxy.stats.retriesAfter401 == 1)
    }

    @Test func replaysAChunkedBodyToo() throws {
        let h = try Harness()
        let client = try h.client()
        #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x").status == 200)
        h.state.revokeAllTokens()
        try client.send("POST /suppliers-api-2026v1/_sandbox/echo/y HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.json["body"] as? String == "hello world")
        #expect(h.state.tokenRequests == 2)
    }

    @Test func manyConcurrent401sCauseOneRefresh() throws {
        let h = try Harness()
        #expect(try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/x").status == 200)
        h.state.revokeAllTokens()
        let statuses = Locked<[Int]>([])
        DispatchQueue.concurrentPerform(iterations: 20) { _ in
            let status = (try? TestClient(port: h.port).request("GET", "/suppliers-api-2026v1/_sandbox/echo/x").status) ?? -1
            statuses.withLock { $0.append(status) }
        }
        #expect(statuses.withLock { $0 } == Array(repeating: 200, count: 20))
        #expect(h.state.tokenRequests == 2)
    }

    @Test func aSecond401GoesBackAsItCame() throws {
        let h = try Harness()
        h.state.apiFailure = 401
        let response = try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/x")
        #expect(response.status == 401)
        #expect(response.header("www-authenticate")?.hasPrefix("Bearer") == true)
        #expect(h.state.apiRequests == 2)          // the original and one replay, never a third
        #expect(h.state.tokenRequests == 2)
    }

    @Test func largeBodyIsNotReplayed() throws {
        let h = try Harness { $0.retryBodyLimit = 1024 }
        let client = try h.client()
        #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x").status == 200)
        h.state.revokeAllTokens()
        let response = try client.request("POST", "/suppliers-api-2026v1/_sandbox/echo/x", body: [UInt8](repeating: 65, count: 4096))
        #expect(response.status == 401)
        #expect(h.state.apiRequests == 2)
    }

    @Test func forbiddenIsNeverRetried() throws {
        let h = try Harness { $0.apiKey = Secret("wrong-key") }
        let response = try h.client().request("GET", "/customers-api-2026v1/identities")
        #expect(response.status == 403)
        #expect(response.header("content-type")?.hasPrefix("application/problem+json") == true)
        #expect(h.state.tokenRequests == 1)
        #expect(h.state.apiRequests == 1)
    }

    @Test func rateLimitAndLockedPassThroughWithTheirHeaders() throws {
        let h = try Harness()
        for status in [429, 423, 503] {
            h.state.apiFailure = status
            let response = try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/x")
            #expect(response.status == status)
        }
        #expect(h.state.tokenRequests == 1)
    }

    @Test func keepAliveOnBothSides() throws {
        let h = try Harness()
        let client = try h.client()
        for i in 0..<20 {
            let response = try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x?i=\(i)")
            #expect(response.status == 200)
            #expect(response.json["target"] as? String == "/suppliers-api-2026v1/_sandbox/echo/x?i=\(i)")
        }
        // One TLS handshake to the API served all twenty requests.
        #expect(h.proxy.pools.stats.handshakes == 1)
        #expect(h.proxy.activeClientConnections == 1)
    }

    @Test func chunkedBodiesBothWays() throws {
        let h = try Harness()
        let client = try h.client()
        try client.send("POST /suppliers-api-2026v1/_sandbox/echo/chunks HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.json["body"] as? String == "abcdefg")
        let chunked = try client.request("GET", "/suppliers-api-2026v1/_sandbox/bytes?size=100000&chunked=1")
        #expect(chunked.status == 200)
        #expect(chunked.header("transfer-encoding") == "chunked")
        #expect(chunked.body.count == 100_000)
        #expect(chunked.body.enumerated().allSatisfy { $0.element == UInt8($0.offset % 251) })
    }

    @Test func fiftyMebibytesBothWays() throws {
        let h = try Harness { $0.limits.maxBodyBytes = 64 << 20 }
        let client = try h.client(timeout: 60)
        let size = 50 << 20
        var received = 0
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        let download: TestClient.Response
        do {
            download = try client.readResponseAfter("GET /suppliers-api-2026v1/_sandbox/bytes?size=\(size) HTTP/1.1\r\nHost: p\r\n\r\n") { bytes in
                received += bytes.count
                hash = fnv1a64(bytes, seed: hash)
            }
        } catch {
            Issue.record("download failed after \(received) bytes: \(error)")
            throw error
        }
        #expect(download.status == 200)
        #expect(received == size)
        let pattern = (0..<(251 * 4096)).map { UInt8($0 % 251) }
        var expected: UInt64 = 0xcbf2_9ce4_8422_2325
        var sent = 0
        while sent < size { let n = min(pattern.count, size - sent); expected = fnv1a64(pattern[0..<n], seed: expected); sent += n }
        #expect(hash == expected)

        // Upload: chunked, in pieces, so neither side can know the length up front.
        try client.send("POST /suppliers-api-2026v1/_sandbox/echo/upload HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n")
        sent = 0
        while sent < size {
            let n = min(pattern.count, size - sent)
            do {
                try client.send(Array(String(n, radix: 16).utf8) + [13, 10] + pattern[0..<n] + [13, 10])
            } catch {
                Issue.record("upload send failed after \(sent) bytes: \(error)")
                throw error
            }
            sent += n
        }
        try client.send("0\r\n\r\n")
        let upload: TestClient.Response
        do {
            upload = try client.readResponse()
        } catch {
            Issue.record("upload response failed after sending \(sent) bytes: \(error)")
            throw error
        }
        #expect(upload.status == 200)
        #expect(upload.json["bodyBytes"] as? Int == size)
        #expect(upload.json["fnv1a64"] as? String == String(expected, radix: 16))
    }

    @Test func bodyThatArrivesBeforeTheUpstreamIsReadyStillFlows() throws {
        // A fresh proxy: no token, no pooled connection. The body queues until both exist,
        // the client is paused, and must be resumed even if the queued bytes then go out at once.
        for size in [3 << 20, 300 << 10] {
            let h = try Harness()
            let client = try h.client(timeout: 20)
            let body = [UInt8](repeating: 0x61, count: size)
            let response = try client.request("POST", "/suppliers-api-2026v1/_sandbox/echo/upload", body: body)
            #expect(response.status == 200)
            #expect(response.json["bodyBytes"] as? Int == size)
        }
    }

    @Test func theResponseTimeoutCountsFromTheEndOfTheRequest() throws {
        // An upload that takes longer than `timeouts.request` is not a timeout while it
        // progresses. The proxy's clock moves a second per piece: 8 s of upload against a 5 s
        // response timeout, in well under a second of real time.
        let clock = ManualClock()
        let h = try Harness(clock: clock) { $0.timeouts.request = .seconds(5) }
        let client = try h.client()
        // Token and upstream connection first, so no connect deadline runs while time moves.
        #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/warm").status == 200)
        let piece = [UInt8](repeating: 0x62, count: 64 * 1024)
        try client.send("POST /suppliers-api-2026v1/_sandbox/echo/slow-upload HTTP/1.1\r\nHost: p\r\nContent-Length: \(piece.count * 8)\r\n\r\n")
        for _ in 0..<8 {
            try client.send(piece)
            advance(clock, by: .seconds(1), firingTimersOn: h.proxy.group.loops)
        }
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.json["bodyBytes"] as? Int == piece.count * 8)
    }

    @Test func bodiesOverTheLimitGet413() throws {
        let h = try Harness { $0.limits.maxBodyBytes = 1000 }
        let client = try h.client()
        try client.send("POST /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nHost: p\r\nContent-Length: 1001\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 413)
        #expect(response.json["type"] as? String == "urn:floriday-proxy:problem:payload-too-large")
        #expect(h.state.apiRequests == 0)
    }
}

extension TestClient {
    func readResponseAfter(_ request: String, onBody: @escaping (UnsafeRawBufferPointer) -> Void) throws -> Response {
        try send(request)
        return try readResponse(onBody: onBody)
    }
}
