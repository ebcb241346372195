import EventLoop
import Foundation
import HTTP1
import HTTP2
import HTTPServer
import Testing

/// A blocking HTTP/2 client with prior knowledge (h2c) on a raw socket, for tests: an nghttp2
/// client session driven with a deadline, so a server bug shows as a failure, not a hang.
final class H2TestClient: HTTP2SessionDelegate {
    let fd: Int32
    let port: Int
    let session = HTTP2Session(role: .client)
    var responses: [Int32: HTTPResponseHead] = [:]
    var bodies: [Int32: [UInt8]] = [:]
    var closed: [Int32: UInt32] = [:]
    var goAway: UInt32?
    var peerClosed = false

    struct Failure: Error, CustomStringConvertible { var description: String }

    struct Response {
        var status: Int
        var headers: HTTPHeaders
        var body: [UInt8]
        /// RST_STREAM code; `noError` for a complete response.
        var errorCode: UInt32
        func header(_ name: String) -> String? { headers.firstString(name) }
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:] }
    }

    init(port: Int) throws {
        self.port = port
        fd = try TestClient.rawConnect(port: port, timeout: 60)
        session.delegate = self
    }

    deinit { close(fd) }

    /// Opens a stream; the body, if any, is queued whole.
    @discardableResult
    func start(_ method: String, _ target: String, headers: [(String, String)] = [], body: [UInt8]? = nil) -> Int32 {
        let head = HTTPRequestHead(method: method, target: Array(target.utf8), headers: HTTPHeaders(headers))
        let id = session.submitRequest(head, authority: "127.0.0.1:\(port)", hasBody: body != nil)
        lastStarted = id
        if let body {
            body.withUnsafeBytes { session.enqueueData(stream: id, $0) }
            session.endData(stream: id)
        }
        return id
    }

    /// What each stream got so far, for a timeout's message.
    var progress: String {
        let ids = Set(responses.keys).union(bodies.keys).sorted()
        let streams = ids.map { "stream \($0): status \(responses[$0]?.status ?? 0), \(bodies[$0]?.count ?? 0) body bytes, closed \(closed[$0].map(String.init) ?? "no")" }
        return streams.joined(separator: "; ") + "; \(session.queuedBytes(stream: lastStarted)) request body bytes still queued"
    }
    private var lastStarted: Int32 = 0

    func response(_ id: Int32) throws -> Response {
        guard let code = closed[id] else { throw Failure(description: "stream \(id) is still open") }
        return Response(status: responses[id]?.status ?? 0, headers: responses[id]?.headers ?? HTTPHeaders(), body: bodies[id] ?? [], errorCode: code)
    }

    func request(_ method: String, _ target: String, headers: [(String, String)] = [], body: [UInt8]? = nil) throws -> Response {
        let id = start(method, target, headers: headers, body: body)
        try run { self.closed[id] != nil }
        return try response(id)
    }

    /// Exchanges bytes with the server until `condition` holds, the server closes, or the deadline.
    func run(timeout: Double = 60, until condition: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            try flush()
            if condition() || peerClosed { return }
            guard Date() < deadline else { throw Failure(description: "timed out: \(progress)") }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 50) > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 {
                peerClosed = true
                return
            }
            try buffer.withUnsafeBytes { try session.receive(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
    }

    private func flush() throws {
        var output: [UInt8] = []
        try session.send(into: &output)
        var offset = 0
        while offset < output.count {
            let n = output[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else {
                if errno == EPIPE || errno == ECONNRESET { peerClosed = true; return }
                throw Failure(description: "send failed: \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }

    // MARK: HTTP2SessionDelegate

    func http2ResponseHead(stream: Int32, head: HTTPResponseHead, endStream: Bool) { responses[stream] = head }
    func http2Data(stream: Int32, bytes: UnsafeRawBufferPointer) {
        bodies[stream, default: []].append(contentsOf: bytes)
        session.consume(stream: stream, count: bytes.count)
    }
    func http2StreamClosed(stream: Int32, errorCode: UInt32) { closed[stream] = errorCode }
    func http2GoAway(lastStreamID: Int32, errorCode: UInt32) { goAway = errorCode }
}

/// End to end over HTTP/2 with prior knowledge: client → proxy (h2c) → sandbox (HTTP/1.1 over TLS).
@Suite struct HTTP2ProxyTests {
    @Test func injectsCredentialsOverHTTP2() throws {
        let h = try Harness()
        let client = try H2TestClient(port: h.port)
        let response = try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/trade-items?x=1", headers: [
            ("authorization", "Bearer client-token"), ("x-api-key", "client-key"), ("x-custom", "kept"), ("x-request-id", "req-h2"),
        ])
        #expect(response.status == 200)
        #expect(response.errorCode == HTTP2ErrorCode.noError)
        let echoed = response.json["headers"] as? [String: String] ?? [:]
        let token = try #require(h.proxy.tokens.cachedToken?.value)
        #expect(echoed["authorization"] == "Bearer \(token)")
        #expect(echoed["x-api-key"] == "sandbox-api-key")
        #expect(echoed["x-custom"] == "kept")
        #expect(echoed["x-forwarded-proto"] == "http")
        #expect(echoed["host"] == URL(string: h.sandbox.baseURL)!.host! + ":\(h.sandbox.port)")
        #expect(response.json["target"] as? String == "/suppliers-api-2026v1/_sandbox/echo/trade-items?x=1")
        #expect(response.header("x-request-id") == "req-h2")
        // Framing belongs to HTTP/2 itself (RFC 9113 §8.2.2).
        #expect(!response.headers.contains("connection") && !response.headers.contains("transfer-encoding"))
    }

    @Test func twentyConcurrentStreamsOnOneConnection() throws {
        let h = try Harness()
        let client = try H2TestClient(port: h.port)
        let ids = (0..<20).map { client.start("GET", "/customers-api-2026v1/_sandbox/echo/echo?n=\($0)") }
        try client.run { ids.allSatisfy { client.closed[$0] != nil } }
        let responses = try ids.map { try client.response($0) }
        #expect(responses.map(\.status) == Array(repeating: 200, count: 20))
        for (index, response) in responses.enumerated() {
            #expect(response.json["target"] as? String == "/customers-api-2026v1/_sandbox/echo/echo?n=\(index)")
        }
        #expect(h.state.tokenRequests == 1)
        #expect(h.proxy.activeClientConnections == 1)
    }

    @Test func postBodiesAndThe401Replay() throws {
        let h = try Harness()
        let client = try H2TestClient(port: h.port)
        #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x").status == 200)
        h.state.revokeAllTokens()
        // With a content-length, and without one (forwarded chunked): both are replayed.
        let body = Array("{\"tradeItemId\":\"abc\",\"note\":\"replayed\"}".utf8)
        let sized = try client.request("POST", "/suppliers-api-2026v1/_sandbox/echo/trade-items",
                                       headers: [("content-type", "application/json"), ("content-length", "\(body.count)")], body: body)
        #expect(sized.status == 200)
        #expect(sized.json["body"] as? String == String(decoding: body, as: UTF8.self))
        #expect(h.state.apiUnauthorized == 1)
        #expect(h.state.tokenRequests == 2)
        h.state.revokeAllTokens()
        let unsized = try client.request("POST", "/suppliers-api-2026v1/_sandbox/echo/y", body: Array("hello world".utf8))
        #expect(unsized.status == 200)
        #expect(unsized.json["body"] as? String == "hello world")
        #expect(h.state.apiUnauthorized == 2)
        #expect(h.proxy.stats.retriesAfter401 == 2)
    }

    @Test func fiveMebibytesDownAndUp() throws {
        let h = try Harness()
        let client = try H2TestClient(port: h.port)
        let size = 5 << 20
        let download = try client.request("GET", "/suppliers-api-2026v1/_sandbox/bytes?size=\(size)")
        #expect(download.status == 200)
        #expect(download.errorCode == HTTP2ErrorCode.noError)
        #expect(download.body.count == size)
        #expect(download.body.enumerated().allSatisfy { $0.element == UInt8($0.offset % 251) })

        let upload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let response = try client.request("PUT", "/suppliers-api-2026v1/_sandbox/echo/blob", headers: [("content-length", "\(size)")], body: upload)
        #expect(response.status == 200)
        #expect(response.json["bodyBytes"] as? Int == size)
        #expect(response.json["fnv1a64"] as? String == String(fnv1a64(upload), radix: 16))
    }

    @Test func headAndProblemResponses() throws {
        let h = try Harness()
        let client = try H2TestClient(port: h.port)
        let head = try client.request("HEAD", "/suppliers-api-2026v1/_sandbox/echo/x")
        #expect(head.status == 200)
        #expect(head.body.isEmpty)
        #expect(head.errorCode == HTTP2ErrorCode.noError)
        let trace = try client.request("TRACE", "/x")
        #expect(trace.status == 405)
        #expect(trace.header("content-type")?.hasPrefix("application/problem+json") == true)
    }

    @Test func aMalformedPrefaceClosesTheConnection() throws {
        let h = try Harness()
        // Not the preface: read as HTTP/1.1, which refuses it and closes.
        let notPreface = try h.client(timeout: 5)
        try notPreface.send("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
        _ = try? notPreface.readToEOF()
        #expect(notPreface.isClosedByPeer())
        // The preface, then something that is not a SETTINGS frame: GOAWAY and close.
        let badFrames = try h.client(timeout: 5)
        try badFrames.send(http2ClientPreface + Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        let answer = (try? badFrames.readToEOF()) ?? []
        #expect(answer.count >= 9 && answer[3] == 0x4, "the server's SETTINGS come first")
        #expect(answer.contains(0x7), "a GOAWAY frame is expected")
        #expect(badFrames.isClosedByPeer())
        #expect(h.state.apiRequests == 0)
    }

    @Test func http1StillWorksOnTheSamePort() throws {
        let h = try Harness()
        let h2 = try H2TestClient(port: h.port)
        #expect(try h2.request("GET", "/suppliers-api-2026v1/_sandbox/echo/a").status == 200)
        let h1 = try h.client()
        let response = try h1.request("GET", "/suppliers-api-2026v1/_sandbox/echo/b")
        #expect(response.status == 200)
        #expect(response.json["target"] as? String == "/suppliers-api-2026v1/_sandbox/echo/b")
        // A request line that starts like the preface is still HTTP/1.1.
        let post = try h1.request("POST", "/suppliers-api-2026v1/_sandbox/echo/c", body: Array("x".utf8))
        #expect(post.status == 200)
        #expect(try h2.request("GET", "/suppliers-api-2026v1/_sandbox/echo/d").status == 200)
        #expect(h.state.tokenRequests == 1)
    }

    @Test func gracefulShutdownSendsGoAway() throws {
        let h = try Harness()
        let client = try H2TestClient(port: h.port)
        #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/a").status == 200)
        h.proxy.shutdown(grace: .seconds(2)) {}
        try client.run { client.goAway != nil && client.peerClosed }
        #expect(client.goAway == HTTP2ErrorCode.noError)
        #expect(client.peerClosed)
    }

    static let nghttpPath = ["/usr/bin/nghttp", "/usr/local/bin/nghttp"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// Runs `nghttp -nv -t 10` (frames logged, 10 s timeout) on `urls`; its exit status and
    /// everything it printed.
    static func runNghttp(_ nghttp: String, _ urls: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: nghttp)
        process.arguments = ["-nv", "-t", "10"] + urls
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    @Test(.enabled(if: nghttpPath != nil, "needs nghttp (Debian package nghttp2-client, installed by `make test`)"))
    func nghttpCommandLineClient() throws {
        let nghttp = try #require(Self.nghttpPath)
        let h = try Harness()
        let (status, output) = try Self.runNghttp(nghttp, (0..<5).map { "http://127.0.0.1:\(h.port)/suppliers-api-2026v1/auth/key?n=\($0)" })
        #expect(status == 0, "\(output)")
        #expect(output.components(separatedBy: ":status: 200").count - 1 == 5)
        #expect(h.state.tokenRequests == 1)
    }
}

/// The server connection itself, with a handler that misbehaves on purpose.
@Suite struct HTTP2ServerConnectionTests {
    final class BreakingHandler: HTTPServerHandler, @unchecked Sendable {
        var timers: [LoopTimer] = []

        func handle(_ exchange: ServerExchange) {
            switch exchange.request.targetString {
            case "/broken":
                // Part of a response, then a failure: the client must not take it as complete.
                exchange.writeHead(HTTPResponseHead(status: 200, headers: HTTPHeaders([("Content-Length", "1000")])))
                exchange.writeBody(Array(repeating: UInt8(ascii: "x"), count: 100))
                exchange.loop.execute { exchange.abort() }
            case "/slow-reader":
                // Pauses the request body: the client may send one stream window, no more.
                // The answer goes out a second after the first body bytes (not after the head: on
                // a busy machine the client may not have sent anything yet).
                var received = 0
                exchange.pauseBody()
                exchange.onBody = { [self] bytes in
                    if received == 0 {
                        timers.append(exchange.loop.schedule(after: .seconds(1)) {
                            exchange.respond(status: 202, body: Array("\(received)".utf8))
                        })
                    }
                    received += bytes.count
                }
                exchange.onEnd = { exchange.respond(status: 200, body: Array("\(received)".utf8)) }
            default:
                exchange.respond(status: 204)
            }
        }

        func errorResponse(status: Int, code: String, detail: String) -> (HTTPHeaders, [UInt8]) {
            (HTTPHeaders(), Array(code.utf8))
        }
    }

    @Test func abortResetsTheStreamAndPauseHoldsTheWindow() throws {
        ignoreSIGPIPE()
        let group = EventLoopGroup(loopCount: 1)
        let server = try HTTPServer(address: SocketAddress(ip: "127.0.0.1", port: 0)!, group: group, handler: BreakingHandler())
        server.start()
        defer {
            server.stopAccepting()
            server.closeConnectionsWhenIdle()
        }
        let client = try H2TestClient(port: server.localAddress.port)
        let broken = try client.request("GET", "/broken")
        #expect(broken.status == 200)
        #expect(broken.body.count == 100)
        #expect(broken.errorCode == HTTP2ErrorCode.internalError)

        // Another stream on the same connection is unaffected.
        #expect(try client.request("GET", "/fine").status == 204)

        let upload = [UInt8](repeating: 1, count: 3 << 20)
        let slow = try client.request("POST", "/slow-reader", body: upload)
        #expect(slow.status == 202)
        let received = Int(String(decoding: slow.body, as: UTF8.self)) ?? -1
        #expect(received > 0 && received <= 1 << 20, "at most one 1 MiB stream window while paused, got \(received)")
    }
}
