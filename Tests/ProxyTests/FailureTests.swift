import Config
import EventLoop
import Foundation
import HTTP1
import Sandbox
import TestSupport
import Testing

/// Things going wrong: the IDM, the upstream, TLS, the client. Every case gets a clear
/// problem+json answer in bounded time, and no secret anywhere.
@Suite struct FailureTests {
    /// A port on loopback where nothing listens, for the rest of the test run: a socket is bound
    /// to it and never listens, so a connection is refused, and no other socket can take the
    /// port meanwhile (a port merely found free could be taken by the time it is used).
    static func closedPort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        precondition(fd >= 0, "socket failed")
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = 0
        inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr)
        let bound = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        precondition(bound == 0, "bind failed")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        reservedPorts.withLock { $0.append(fd) }
        return Int(UInt16(bigEndian: sin.sin_port))
    }

    /// The sockets holding `closedPort()`s; never closed.
    private static let reservedPorts = Locked<[Int32]>([])

    /// A port on loopback that was free a moment ago, for a child process to listen on. Unlike
    /// `closedPort()` it cannot be held for the child, so another socket could take it first.
    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = 0
        inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr)
        _ = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        close(fd)
        return Int(UInt16(bigEndian: sin.sin_port))
    }

    private func expectProblem(_ response: TestClient.Response, status: Int, type: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(response.status == status, sourceLocation: sourceLocation)
        #expect(response.header("content-type") == "application/problem+json", sourceLocation: sourceLocation)
        #expect(response.json["type"] as? String == "urn:floriday-proxy:problem:\(type)", sourceLocation: sourceLocation)
        #expect(response.json["status"] as? Int == status, sourceLocation: sourceLocation)
        #expect(response.json["title"] is String, sourceLocation: sourceLocation)
        #expect(response.json["detail"] is String, sourceLocation: sourceLocation)
    }

    @Test func idmDownGives503WithRetryAfterAndBacksOff() throws {
        let port = Self.closedPort()
        let h = try Harness { $0.issuerURL = try! EndpointURL("https://127.0.0.1:\(port)/oauth2/x", key: "issuer_url") }
        let started = Date()
        let response = try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/x")
        expectProblem(response, status: 503, type: "token-unavailable")
        #expect(response.header("retry-after").flatMap(Int.init) ?? 0 >= 1)
        #expect(Date().timeIntervalSince(started) < 5)
        // Inside the back-off, the next request fails at once without a new attempt.
        let again = try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/x")
        expectProblem(again, status: 503, type: "token-unavailable")
        #expect(h.proxy.tokens.fetchCount <= 1)
        #expect(h.state.apiRequests == 0)
    }

    @Test func invalidClientIsReportedWithoutTheSecret() throws {
        let h = try Harness { $0.clientSecret = Secret("not-the-secret-xyz") }
        let response = try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/x")
        expectProblem(response, status: 503, type: "token-unavailable")
        #expect(response.json["reason"] as? String == "invalid_client")
        #expect(!response.bodyString.contains("not-the-secret-xyz"))
        #expect(!h.logs.text.contains("not-the-secret-xyz"))
        #expect(h.logs.text.contains("invalid_client"))
        #expect(h.state.apiRequests == 0)
    }

    @Test func idmServerErrorAndMalformedAnswers() throws {
        for failure in [IDMFailure.status(500), .malformedJSON, .missingAccessToken] {
            let h = try Harness()
            h.state.idmFailure = failure
            let response = try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/x")
            expectProblem(response, status: 503, type: "token-unavailable")
        }
    }

    @Test func untrustedAPICertificateMeansNoRequestIsSent() throws {
        // IDM trusted (the harness CA); the API is a second sandbox whose CA the proxy does not know.
        let api = try SandboxServer(address: SocketAddress(ip: "127.0.0.1", port: 0)!, tls: true)
        defer { api.stop() }
        let h = try Harness { $0.apiURL = try! EndpointURL(api.baseURL, key: "api_url") }
        let response = try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/x")
        expectProblem(response, status: 502, type: "upstream-tls-failure")
        #expect(response.json["reason"] as? String == "certificate-verification")
        #expect(api.state.apiRequests == 0)
    }

    @Test func untrustedIDMCertificateMeansNoCredentialsAreSent() throws {
        let idm = try SandboxServer(address: SocketAddress(ip: "127.0.0.1", port: 0)!, tls: true)
        defer { idm.stop() }
        let h = try Harness { $0.issuerURL = try! EndpointURL(idm.issuerURL, key: "issuer_url") }
        let response = try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/x")
        expectProblem(response, status: 503, type: "token-unavailable")
        #expect(idm.state.tokenRequests == 0)
        #expect(idm.state.metadataRequests == 0)
    }

    @Test func upstreamUnreachableGives502() throws {
        let port = Self.closedPort()
        let h = try Harness { $0.apiURL = try! EndpointURL("https://127.0.0.1:\(port)", key: "api_url") }
        let response = try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/x")
        expectProblem(response, status: 502, type: "upstream-unreachable")
    }

    @Test func upstreamTimeoutGives504() throws {
        // The API would answer after a minute; the proxy's clock is moved past the 5 s timeout
        // once the request has reached the API, so only the timeout can answer.
        let clock = ManualClock()
        let h = try Harness(clock: clock) { $0.timeouts.request = .seconds(5) }
        let client = try h.client(timeout: 30)
        try client.send("GET /suppliers-api-2026v1/_sandbox/delay?ms=60000 HTTP/1.1\r\nHost: p\r\n\r\n")
        #expect(eventually { h.state.apiRequests == 1 })
        advance(clock, by: .seconds(4), firingTimersOn: h.proxy.group.loops)
        #expect(h.proxy.stats.requestsInFlight == 1, "answered before the timeout")
        advance(clock, by: .seconds(2), firingTimersOn: h.proxy.group.loops)
        let response = try client.readResponse()
        expectProblem(response, status: 504, type: "upstream-timeout")
    }

    @Test func upstreamThatVanishesGives502() throws {
        let h = try Harness()
        let response = try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/drop")
        expectProblem(response, status: 502, type: "upstream-connection-closed")
    }

    @Test func malformedRequestGives400AndCloses() throws {
        let h = try Harness()
        let client = try h.client()
        try client.send("GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
        let response = try client.readResponse()
        expectProblem(response, status: 400, type: "bad-request")
        #expect(client.isClosedByPeer())
        #expect(h.state.apiRequests == 0)
    }

    @Test func connectAndTraceAreRefused() throws {
        let h = try Harness()
        expectProblem(try h.client().request("CONNECT", "example.com:443"), status: 405, type: "method-not-allowed")
        expectProblem(try h.client().request("TRACE", "/x"), status: 405, type: "method-not-allowed")
        #expect(h.state.apiRequests == 0)
    }

    @Test func noSecretOrTokenInLogsOrErrors() throws {
        let h = try Harness()
        let client = try h.client()
        _ = try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x?secret-query=1")
        h.state.revokeAllTokens()
        _ = try client.request("POST", "/suppliers-api-2026v1/_sandbox/echo/y", body: Array("abc".utf8))
        let token = try #require(h.proxy.tokens.cachedToken?.value)
        let logs = h.logs.text
        #expect(logs.contains("access"))
        for secret in [token, SandboxClient.default.clientSecret, "sandbox-api-key"] {
            #expect(!logs.contains(secret))
        }
        #expect(!logs.contains("secret-query"))   // queries are left out of the access log by default
    }
}

/// Finished requests leave nothing behind, however they ended.
@Suite struct ExchangeLifetimeTests {
    /// Clients that hang up right after sending, while the proxy is still getting an upstream
    /// connection or waiting for the answer: every exchange is released afterwards.
    @Test func abortedRequestsAreReleased() throws {
        let h = try Harness()
        #expect(try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/warm").status == 200)
        for index in 0..<40 {
            // Closed when it goes out of scope, right after sending.
            let client = try h.client()
            // Half wait on a slow answer; the other half also force a new upstream connection,
            // since every abandoned exchange takes its connection down with it.
            let target = index % 2 == 0 ? "/suppliers-api-2026v1/_sandbox/delay?ms=200" : "/suppliers-api-2026v1/_sandbox/echo/left-\(index)"
            try client.send("GET \(target) HTTP/1.1\r\nHost: p\r\n\r\n")
        }
        #expect(eventually { h.proxy.stats.requestsInFlight == 0 && h.proxy.activeClientConnections == 0 })
        #expect(eventually { h.proxy.stats.exchangesInMemory == 0 }, "\(h.proxy.stats.exchangesInMemory) exchanges still in memory")
        // And ordinary traffic, for comparison.
        for index in 0..<10 {
            #expect(try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/after-\(index)").status == 200)
        }
        #expect(eventually { h.proxy.stats.exchangesInMemory == 0 }, "\(h.proxy.stats.exchangesInMemory) exchanges still in memory")
    }
}
