import Config
import EventLoop
import Foundation
import HTTP1
import Proxy
import Sandbox
import TestSupport
import Testing

/// Request smuggling and desync, from both sides of the proxy, over raw sockets.
///
/// Client side: every message that two HTTP implementations could frame differently is refused
/// with a problem document and the connection is closed, and no request the client smuggled
/// behind it ever reaches the API. Upstream side (a fake API on loopback answering canned
/// bytes): a response the proxy cannot frame with certainty is never relayed as a complete
/// one. Faults: stale pooled connections, clients that leave, slowloris, descriptor leaks,
/// graceful shutdown.
@Suite struct SmugglingTests {

    // MARK: Client side: refused requests

    struct Refusal: Sendable, CustomTestStringConvertible {
        let name: String
        let raw: [UInt8]
        let status: Int
        /// The parser's code, reported as `reason` in the problem document.
        let reason: String
        var testDescription: String { name }

        init(_ name: String, _ raw: String, _ status: Int, _ reason: String) {
            self.name = name
            self.raw = Array(raw.utf8)
            self.status = status
            self.reason = reason
        }

        init(_ name: String, bytes: [UInt8], _ status: Int, _ reason: String) {
            self.name = name
            self.raw = bytes
            self.status = status
            self.reason = reason
        }
    }

    /// A request that would be a second, hidden request to a server framing the first one differently.
    static let smuggled = "GET /suppliers-api-2026v1/_sandbox/echo/smuggled HTTP/1.1\r\nHost: p\r\n\r\n"
    static let post = "POST /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nHost: p\r\n"
    static let chunkedPost = post + "Transfer-Encoding: chunked\r\n\r\n"

    static let refusals: [Refusal] = [
        // Framing: Content-Length and Transfer-Encoding together, in either order.
        Refusal("CL.TE", post + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400, "content-length-with-transfer-encoding"),
        Refusal("TE.CL", post + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\n" + smuggled + "\r\n0\r\n\r\n", 400, "content-length-with-transfer-encoding"),
        // TE.TE: spellings one implementation takes for chunked and another does not.
        Refusal("TE xchunked", post + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + smuggled, 400, "chunked-not-final"),
        Refusal("TE space before colon", post + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + smuggled, 400, "space-before-colon"),
        Refusal("TE chunked then identity", post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + smuggled, 400, "chunked-not-final"),
        Refusal("TE chunked, identity", post + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggled, 400, "chunked-not-final"),
        Refusal("TE chunked, chunked", post + "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n" + smuggled, 400, "invalid-transfer-encoding"),
        Refusal("TE gzip", post + "Transfer-Encoding: gzip\r\n\r\n0\r\n\r\n" + smuggled, 400, "chunked-not-final"),
        Refusal("TE identity, chunked", post + "Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n" + smuggled, 501, "unsupported-transfer-encoding"),
        Refusal("TE vertical tab", post + "Transfer-Encoding: \u{0B}chunked\r\n\r\n0\r\n\r\n" + smuggled, 400, "invalid-header-value"),
        Refusal("TE form feed", post + "Transfer-Encoding:\u{0C}chunked\r\n\r\n0\r\n\r\n" + smuggled, 400, "invalid-header-value"),
        Refusal("TE in HTTP/1.0", "POST /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400, "transfer-encoding-in-http10"),
        // Content-Length: duplicates, lists, signs, junk.
        Refusal("CL twice, differing", post + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!" + smuggled, 400, "conflicting-content-length"),
        Refusal("CL twice, equal", post + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello" + smuggled, 400, "conflicting-content-length"),
        Refusal("CL list 5, 5", post + "Content-Length: 5, 5\r\n\r\nhello" + smuggled, 400, "conflicting-content-length"),
        Refusal("CL +5", post + "Content-Length: +5\r\n\r\nhello" + smuggled, 400, "invalid-content-length"),
        Refusal("CL -1", post + "Content-Length: -1\r\n\r\n" + smuggled, 400, "invalid-content-length"),
        Refusal("CL empty", post + "Content-Length:\r\n\r\n" + smuggled, 400, "invalid-content-length"),
        Refusal("CL hex", post + "Content-Length: 0x5\r\n\r\nhello" + smuggled, 400, "invalid-content-length"),
        Refusal("CL 1 2", post + "Content-Length: 1 2\r\n\r\nhello" + smuggled, 400, "invalid-content-length"),
        Refusal("CL overflow", post + "Content-Length: 18446744073709551617\r\n\r\n" + smuggled, 400, "invalid-content-length"),
        // Chunked body: sizes, extensions, the CRLF after the data.
        Refusal("chunk size ffffffffffffffff1", chunkedPost + "ffffffffffffffff1\r\nx\r\n0\r\n\r\n" + smuggled, 400, "chunk-size-overflow"),
        Refusal("chunk size 0x5", chunkedPost + "0x5\r\nhello\r\n0\r\n\r\n" + smuggled, 400, "invalid-chunk-size"),
        Refusal("chunk size +5", chunkedPost + "+5\r\nhello\r\n0\r\n\r\n" + smuggled, 400, "invalid-chunk-size"),
        Refusal("chunk size with space", chunkedPost + "5 \r\nhello\r\n0\r\n\r\n" + smuggled, 400, "invalid-chunk-size"),
        Refusal("chunk size empty", chunkedPost + "\r\nhello\r\n0\r\n\r\n" + smuggled, 400, "invalid-chunk-size"),
        Refusal("missing CRLF after chunk data", chunkedPost + "5\r\nhelloX0\r\n\r\n" + smuggled, 400, "missing-chunk-crlf"),
        Refusal("chunk data longer than its size", chunkedPost + "3\r\nhello\r\n0\r\n\r\n" + smuggled, 400, "missing-chunk-crlf"),
        Refusal("bare LF after chunk size", chunkedPost + "5\nhello\r\n0\r\n\r\n" + smuggled, 400, "bare-lf"),
        Refusal("oversized chunk extension", chunkedPost + "5;" + String(repeating: "a", count: 5000) + "\r\nhello\r\n0\r\n\r\n" + smuggled, 400, "chunk-extension-too-long"),
        Refusal("chunk extension with space", chunkedPost + "5 ;a=b\r\nhello\r\n0\r\n\r\n" + smuggled, 400, "invalid-chunk-size"),
        Refusal("chunked over max_body_bytes", chunkedPost + "2000001\r\nx", 413, "body-too-large"),
        Refusal("invalid trailer", chunkedPost + "5\r\nhello\r\n0\r\nX Bad: t\r\n\r\n" + smuggled, 400, "invalid-header-name"),
        // Field lines.
        Refusal("NUL in a header value", bytes: Array((post + "X-A: a").utf8) + [0] + Array("b\r\nContent-Length: 0\r\n\r\n".utf8), 400, "invalid-header-value"),
        Refusal("bare CR in a header value", post + "X-A: a\rb\r\nContent-Length: 0\r\n\r\n", 400, "bare-cr"),
        Refusal("bare CR ending a line", "GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nHost: p\rX-A: b\r\n\r\n", 400, "bare-cr"),
        Refusal("bare LF line endings", "GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\nHost: p\n\n", 400, "bare-lf"),
        Refusal("bare LF in the middle", "GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nHost: p\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "bare-lf"),
        Refusal("obs-fold", "GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nHost: p\r\nX-A: a\r\n b\r\n\r\n", 400, "obs-fold"),
        Refusal("obs-fold of Transfer-Encoding", post + "Content-Length: 0\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", 400, "obs-fold"),
        Refusal("whitespace before the first field", "GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\n Host: p\r\n\r\n", 400, "obs-fold"),
        Refusal("space before colon", "GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nHost : p\r\n\r\n", 400, "space-before-colon"),
        Refusal("tab before colon", post + "Content-Length\t: 5\r\n\r\nhello", 400, "space-before-colon"),
        Refusal("space inside a name", "GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nHost: p\r\nX A: b\r\n\r\n", 400, "invalid-header-name"),
        Refusal("@ in a name", "GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nHost: p\r\nX@A: b\r\n\r\n", 400, "invalid-header-name"),
        Refusal("empty name", "GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nHost: p\r\n: b\r\n\r\n", 400, "invalid-header-name"),
        Refusal("line without colon", "GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nHost: p\r\nTransfer-Encoding chunked\r\n\r\n", 400, "invalid-header-name"),
        Refusal("UTF-8 in a name", "GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nHost: p\r\nX-\u{E9}: b\r\n\r\n", 400, "invalid-header-name"),
        // Request line.
        Refusal("space in the target", "GET /suppliers-api-2026v1/_sandbox/echo/a b HTTP/1.1\r\nHost: p\r\n\r\n", 400, "invalid-target"),
        Refusal("control byte in the target", "GET /suppliers-api-2026v1/_sandbox/echo/a\u{01}b HTTP/1.1\r\nHost: p\r\n\r\n", 400, "invalid-target"),
        Refusal("DEL in the target", "GET /suppliers-api-2026v1/_sandbox/echo/a\u{7F} HTTP/1.1\r\nHost: p\r\n\r\n", 400, "invalid-target"),
        Refusal("tab in the target", "GET /suppliers-api-2026v1/_sandbox/echo/a\tb HTTP/1.1\r\nHost: p\r\n\r\n", 400, "invalid-target"),
        Refusal("raw UTF-8 in the target", "GET /suppliers-api-2026v1/_sandbox/echo/\u{E9} HTTP/1.1\r\nHost: p\r\n\r\n", 400, "invalid-target"),
        Refusal("two spaces after the method", "GET  /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nHost: p\r\n\r\n", 400, "invalid-request-line"),
        Refusal("HTTP/1.1 extra", "GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1 extra\r\nHost: p\r\n\r\n", 400, "invalid-request-line"),
        Refusal("lowercase version", "GET /suppliers-api-2026v1/_sandbox/echo/x http/1.1\r\nHost: p\r\n\r\n", 400, "invalid-request-line"),
        Refusal("HTTP/1.2", "GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.2\r\nHost: p\r\n\r\n", 505, "unsupported-version"),
        Refusal("HTTP/2.0", "GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/2.0\r\nHost: p\r\n\r\n", 505, "unsupported-version"),
        Refusal("HTTP/0.9 style", "GET /suppliers-api-2026v1/_sandbox/echo/x\r\n\r\n", 400, "invalid-request-line"),
        Refusal("invalid method", "G(T /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nHost: p\r\n\r\n", 400, "invalid-request-line"),
        Refusal("two empty lines first", "\r\n\r\nGET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nHost: p\r\n\r\n", 400, "invalid-request-line"),
        // Host.
        Refusal("HTTP/1.1 without Host", "GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nX-A: b\r\n\r\n", 400, "missing-host"),
        Refusal("two Host fields", "GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nHost: p\r\nHost: q\r\n\r\n", 400, "duplicate-host"),
        Refusal("Host list", "GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nHost: p, q\r\n\r\n", 400, "invalid-host"),
        Refusal("Host with a path", "GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nHost: p/x\r\n\r\n", 400, "invalid-host"),
        // Limits.
        Refusal("target over 8 KiB", "GET /suppliers-api-2026v1/_sandbox/echo/" + String(repeating: "a", count: 9000) + " HTTP/1.1\r\nHost: p\r\n\r\n", 414, "target-too-long"),
        Refusal("head over 64 KiB", "GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nHost: p\r\nX-Big: " + String(repeating: "b", count: 70_000) + "\r\n\r\n", 431, "header-too-large"),
        Refusal("more than 100 fields", "GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nHost: p\r\n" + (0..<101).map { "X-\($0): v\r\n" }.joined() + "\r\n", 431, "too-many-headers"),
        Refusal("Content-Length over max_body_bytes", post + "Content-Length: 40000000\r\n\r\nx", 413, "body-too-large"),
    ]

    /// Each refusal alone, then behind a valid request in the same write: the valid one is
    /// proxied, the refused one answered with a problem, and nothing behind it reaches the API.
    @Test(arguments: refusals)
    func refused(_ refusal: Refusal) throws {
        let h = try Harness()
        let client = try h.client()
        try client.send(refusal.raw)
        let response = try client.readResponse()
        expectRefusal(response, refusal)
        #expect(client.isClosedByPeer(), "\(refusal.name): connection left open")
        expectSettled(h)
        #expect(h.state.apiRequests == 0, "\(refusal.name): a request reached the API")

        let second = try h.client()
        try second.send(Array("GET /suppliers-api-2026v1/_sandbox/echo/first HTTP/1.1\r\nHost: p\r\n\r\n".utf8) + refusal.raw)
        let first = try second.readResponse()
        #expect(first.status == 200)
        #expect(first.json["target"] as? String == "/suppliers-api-2026v1/_sandbox/echo/first")
        let refused = try second.readResponse()
        expectRefusal(refused, refusal)
        #expect(second.isClosedByPeer(), "\(refusal.name): connection left open after a pipelined refusal")
        expectSettled(h)
        #expect(h.state.apiRequests == 1, "\(refusal.name): \(h.state.apiRequests) API requests, expected only the legitimate one")
    }

    private func expectRefusal(_ response: TestClient.Response, _ refusal: Refusal, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(response.status == refusal.status, "\(refusal.name)", sourceLocation: sourceLocation)
        #expect(response.header("content-type") == "application/problem+json", "\(refusal.name)", sourceLocation: sourceLocation)
        #expect(response.json["status"] as? Int == refusal.status, "\(refusal.name)", sourceLocation: sourceLocation)
        #expect(response.json["reason"] as? String == refusal.reason, "\(refusal.name): reason \(response.json["reason"] ?? "none")", sourceLocation: sourceLocation)
        #expect((response.json["type"] as? String)?.hasPrefix("urn:floriday-proxy:problem:") == true, "\(refusal.name)", sourceLocation: sourceLocation)
        #expect(response.header("connection")?.lowercased() == "close", "\(refusal.name)", sourceLocation: sourceLocation)
    }

    @Test func connectAndTraceAreRefusedAndTheirBodiesNeverParsedAsRequests() throws {
        let h = try Harness()
        for method in ["TRACE", "CONNECT"] {
            let target = method == "CONNECT" ? "api.example:443" : "/suppliers-api-2026v1/_sandbox/echo/x"
            let client = try h.client()
            // The body is a complete request; it must not be read as one.
            try client.send("\(method) \(target) HTTP/1.1\r\nHost: p\r\nContent-Length: \(Self.smuggled.utf8.count)\r\n\r\n" + Self.smuggled)
            let response = try client.readResponse()
            #expect(response.status == 405)
            #expect(response.header("content-type") == "application/problem+json")
            #expect(response.json["type"] as? String == "urn:floriday-proxy:problem:method-not-allowed")
            #expect(response.header("allow") != nil)
            // Its body was not read, so the connection's framing is lost: it must close.
            #expect(client.isClosedByPeer())
        }
        // Without a body the framing is intact: the connection may stay, and the next request is proxied.
        let client = try h.client()
        try client.send("TRACE /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nHost: p\r\n\r\n" + Self.smuggled)
        #expect(try client.readResponse().status == 405)
        let next = try client.readResponse()
        #expect(next.status == 200)
        #expect(next.json["target"] as? String == "/suppliers-api-2026v1/_sandbox/echo/smuggled")
        expectSettled(h)
        #expect(h.state.apiRequests == 1)
    }

    // MARK: Client side: what must work

    @Test func tabAsWhitespaceBeforeTheValueIsValid() throws {
        let h = try Harness()
        let client = try h.client()
        try client.send(Self.post + "Transfer-encoding:\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.json["body"] as? String == "hello")
        try client.send(Self.post + "Transfer-Encoding: Chunked \r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        let second = try client.readResponse()
        #expect(second.status == 200)
        #expect(second.json["body"] as? String == "abc")
        try client.send(Self.post + "Content-Length:\t3\t\r\n\r\nxyz")
        let third = try client.readResponse()
        #expect(third.status == 200)
        #expect(third.json["body"] as? String == "xyz")
        #expect(h.state.apiRequests == 3)
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let h = try Harness()
        let client = try h.client()
        try client.send("GET /suppliers-api-2026v1/_sandbox/echo/one HTTP/1.1\r\nHost: p\r\n\r\nGET /suppliers-api-2026v1/_sandbox/echo/two HTTP/1.1\r\nHost: p\r\n\r\n"
            + Self.post + "Content-Length: 5\r\n\r\nthree")
        let one = try client.readResponse()
        let two = try client.readResponse()
        let three = try client.readResponse()
        #expect([one.status, two.status, three.status] == [Int](repeating: 200, count: 3))
        #expect(one.json["target"] as? String == "/suppliers-api-2026v1/_sandbox/echo/one")
        #expect(two.json["target"] as? String == "/suppliers-api-2026v1/_sandbox/echo/two")
        #expect(three.json["body"] as? String == "three")
        #expect(h.state.apiRequests == 3)
    }

    @Test func aRequestAfterAChunkedBodyIsProxiedOnlyAsItself() throws {
        let h = try Harness()
        // Valid: a chunked body, then a second valid request. Two requests, two responses.
        let client = try h.client()
        try client.send(Self.chunkedPost + "5\r\nhello\r\n0\r\n\r\n" + Self.smuggled)
        let first = try client.readResponse()
        #expect(first.status == 200)
        #expect(first.json["body"] as? String == "hello")
        let second = try client.readResponse()
        #expect(second.status == 200)
        #expect(second.json["target"] as? String == "/suppliers-api-2026v1/_sandbox/echo/smuggled")
        expectSettled(h)
        #expect(h.state.apiRequests == 2)

        // A request inside a chunk is body, never a request.
        let inside = try h.client()
        let hidden = Self.smuggled
        try inside.send(Self.chunkedPost + String(hidden.utf8.count, radix: 16) + "\r\n" + hidden + "\r\n0\r\n\r\n")
        let echoed = try inside.readResponse()
        #expect(echoed.status == 200)
        #expect(echoed.json["body"] as? String == hidden)
        // And inside a Content-Length body.
        try inside.send(Self.post + "Content-Length: \(hidden.utf8.count)\r\n\r\n" + hidden)
        let echoed2 = try inside.readResponse()
        #expect(echoed2.json["body"] as? String == hidden)
        expectSettled(h)
        #expect(h.state.apiRequests == 4)

        // The request behind the chunked body is itself malformed: refused, never proxied.
        let bad = try h.client()
        try bad.send(Self.chunkedPost + "5\r\nhello\r\n0\r\n\r\n" + "GET /suppliers-api-2026v1/_sandbox/echo/smuggled HTTP/1.1\r\nHost: p\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        #expect(try bad.readResponse().status == 200)
        let refused = try bad.readResponse()
        #expect(refused.status == 400)
        #expect(refused.json["reason"] as? String == "content-length-with-transfer-encoding")
        #expect(bad.isClosedByPeer())
        expectSettled(h)
        #expect(h.state.apiRequests == 5)
    }

    @Test func expectContinueGetsAnInterimAnswerBeforeTheBody() throws {
        let h = try Harness()
        let client = try h.client()
        try client.send(Self.post + "Content-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        // The client holds its body back until the interim answer arrives.
        var received: [UInt8] = []
        let interim = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)
        while received.count < interim.count {
            guard let chunk = try client.readSome() else { break }
            received += chunk
        }
        #expect(received == interim, "got \(String(decoding: received, as: UTF8.self).debugDescription)")
        try client.send("hello")
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.json["body"] as? String == "hello")
        // Expect is answered by the proxy, not forwarded.
        #expect((response.json["headers"] as? [String: String])?["expect"] == nil)
    }

    @Test func http10WithoutHostIsServed() throws {
        let h = try Harness()
        let client = try h.client()
        try client.send("GET /suppliers-api-2026v1/_sandbox/echo/old HTTP/1.0\r\n\r\n")
        let raw = try readRaw(client)
        guard case .complete(let response) = classify(raw.bytes) else {
            Issue.record("not a complete response: \(String(decoding: raw.bytes.prefix(300), as: UTF8.self).debugDescription)")
            return
        }
        #expect(response.status == 200)
        #expect(response.json["target"] as? String == "/suppliers-api-2026v1/_sandbox/echo/old")
        #expect((response.json["headers"] as? [String: String])?["host"]?.hasPrefix("127.0.0.1:") == true)
        #expect(response.header("transfer-encoding") == nil)   // an HTTP/1.0 client knows no chunked
        #expect(h.state.apiRequests == 1)
    }

    @Test func absoluteFormTargetsGoToTheConfiguredAPIOnly() throws {
        let h = try Harness()
        let client = try h.client()
        for (target, expected) in [
            ("http://evil.example:9999/suppliers-api-2026v1/_sandbox/echo/x?y=1", "/suppliers-api-2026v1/_sandbox/echo/x?y=1"),
            ("https://169.254.169.254/suppliers-api-2026v1/_sandbox/echo/meta", "/suppliers-api-2026v1/_sandbox/echo/meta"),
            ("HTTP://EVIL.EXAMPLE/suppliers-api-2026v1/_sandbox/echo/upper", "/suppliers-api-2026v1/_sandbox/echo/upper"),
        ] {
            let response = try client.request("GET", target, host: "evil.example")
            #expect(response.status == 200)
            #expect(response.json["target"] as? String == expected)
            #expect((response.json["headers"] as? [String: String])?["host"] == "127.0.0.1:\(h.sandbox.port)")
        }
        #expect(h.state.apiRequests == 3)
        // Other schemes are not forwarded anywhere.
        let other = try h.client()
        let refused = try other.request("GET", "ftp://evil.example/suppliers-api-2026v1/_sandbox/echo/x")
        #expect(refused.status == 400)
        #expect(refused.header("content-type") == "application/problem+json")
        expectSettled(h)
        #expect(h.state.apiRequests == 3)
    }

    // MARK: Upstream side: responses that must not be relayed

    struct BadResponse: Sendable, CustomTestStringConvertible {
        let name: String
        let raw: String
        var testDescription: String { name }
        init(_ name: String, _ raw: String) {
            self.name = name
            self.raw = raw
        }
    }

    static let invalidResponses: [BadResponse] = [
        BadResponse("CL and TE", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        BadResponse("TE and CL", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        BadResponse("two differing CLs", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        BadResponse("CL list", "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello"),
        BadResponse("CL +5", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello"),
        BadResponse("obs-fold", "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok"),
        BadResponse("bare LF", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok"),
        BadResponse("bare CR", "HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nok"),
        BadResponse("NUL in a value", "HTTP/1.1 200 OK\r\nX-A: a\u{0}b\r\nContent-Length: 2\r\n\r\nok"),
        BadResponse("space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok"),
        BadResponse("two-digit status", "HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok"),
        BadResponse("four-digit status", "HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok"),
        BadResponse("no status", "HTTP/1.1 OK\r\nContent-Length: 2\r\n\r\nok"),
        BadResponse("not HTTP", "ICY 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        BadResponse("HTTP/2.0", "HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        BadResponse("status 600", "HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\nok"),
        BadResponse("TE in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
        BadResponse("TE chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
        BadResponse("TE gzip, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
        BadResponse("101 not asked for", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"),
    ]

    /// A response whose head breaks HTTP/1.1 becomes 502 upstream-invalid-response, and nothing of it is relayed.
    @Test(arguments: invalidResponses)
    func invalidUpstreamResponse(_ bad: BadResponse) throws {
        let fake = try FakeUpstream { connection in
            guard connection.readRequest() != nil else { return }
            connection.write(bad.raw)
            connection.pause(0.2)
        }
        defer { fake.stop() }
        let h = try Harness(api: fake)
        let client = try h.client()
        let response = try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x")
        #expect(response.status == 502, "\(bad.name)")
        #expect(response.header("content-type") == "application/problem+json", "\(bad.name)")
        #expect(response.json["type"] as? String == "urn:floriday-proxy:problem:upstream-invalid-response", "\(bad.name): \(response.bodyString)")
        #expect(!response.bodyString.contains("hello") && !response.bodyString.contains("ok\""), "\(bad.name): upstream bytes relayed")
        // The request was sent once: an invalid response is not a reason to send it again.
        #expect(fake.requests.count == 1, "\(bad.name)")
        // The proxy stays usable on the same connection.
        let again = try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/y")
        #expect(again.status == 502, "\(bad.name)")
    }

    static let brokenResponses: [BadResponse] = [
        BadResponse("truncated Content-Length body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
        BadResponse("truncated chunked body", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"),
        BadResponse("truncated inside a chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nhel"),
        BadResponse("invalid chunk size mid-body", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"),
        BadResponse("missing CRLF after chunk data", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXY0\r\n\r\n"),
        BadResponse("truncated head", "HTTP/1.1 200 OK\r\nContent-Le"),
        BadResponse("nothing at all", ""),
    ]

    /// A response cut short: 502 when nothing was relayed yet, else a visibly broken response
    /// (closed before Content-Length bytes, chunked without its last chunk), never a shorter
    /// "complete" one.
    @Test(arguments: brokenResponses)
    func truncatedUpstreamResponse(_ bad: BadResponse) throws {
        let fake = try FakeUpstream { connection in
            guard connection.readRequest() != nil else { return }
            connection.write(bad.raw)
            connection.pause(0.1)
        }
        defer { fake.stop() }
        let h = try Harness(api: fake)
        let client = try h.client()
        try client.send("GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nHost: p\r\n\r\n")
        let raw = try readResponseOrClose(client)
        expectBrokenOr502(raw, bad.name)
        #expect(fake.requests.count == 1, "\(bad.name): sent \(fake.requests.count) times")
    }

    @Test func resetMidBodyBreaksTheClientResponse() throws {
        for chunked in [false, true] {
            let fake = try FakeUpstream { connection in
                guard connection.readRequest() != nil else { return }
                let part = String(repeating: "z", count: 1000)
                connection.write(chunked
                    ? "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n\(part)\r\n"
                    : "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n\(part)")
                connection.pause(0.1)
                connection.reset()
            }
            defer { fake.stop() }
            let h = try Harness(api: fake)
            let client = try h.client()
            try client.send("GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nHost: p\r\n\r\n")
            let raw = try readResponseOrClose(client)
            expectBrokenOr502(raw, chunked ? "chunked reset" : "content-length reset")
            // The proxy itself is fine.
            #expect(h.proxy.activeClientConnections <= 1)
        }
    }

    @Test func trailersOfAChunkedResponseAreRelayedAndTheConnectionStaysUsable() throws {
        let fake = try FakeUpstream { connection in
            while connection.readRequest() != nil {
                // RFC 9112 §7.1.2: the trailer section after the last chunk. Content-Length and
                // Connection there are dropped on the way (hop-by-hop, or framing).
                connection.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
                    + "5\r\nhello\r\n0\r\nX-Checksum: abc123\r\nContent-Length: 5\r\nConnection: close\r\nServer-Timing: db;dur=53\r\n\r\n")
            }
        }
        defer { fake.stop() }
        let h = try Harness(api: fake)
        let client = try h.client()
        for _ in 0..<2 {
            let response = try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x")
            #expect(response.status == 200)
            #expect(response.header("transfer-encoding") == "chunked")
            #expect(response.bodyString == "hello")
            #expect(response.trailers.fields == [HTTPField("X-Checksum", "abc123"), HTTPField("Server-Timing", "db;dur=53")])
        }
        // Both on one upstream connection: the framing was read right.
        #expect(fake.connections == 1)
    }

    @Test func aMalformedTrailerBreaksTheClientResponse() throws {
        for (name, trailer) in [("space before the colon", "X-Bad : 1\r\n"), ("obs-fold", "X-A: 1\r\n folded\r\n"), ("bare LF", "X-A: 1\n")] {
            let fake = try FakeUpstream { connection in
                guard connection.readRequest() != nil else { return }
                connection.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\(trailer)\r\n")
                connection.pause(0.2)
            }
            defer { fake.stop() }
            let h = try Harness(api: fake)
            let client = try h.client()
            try client.send("GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nHost: p\r\n\r\n")
            let raw = try readResponseOrClose(client)
            // The head and body went out before the trailer section arrived: the message must
            // end as broken, never as complete.
            expectBrokenOr502(raw, name)
        }
    }

    @Test func responseWithoutLengthIsReadToCloseAndRelayed() throws {
        let text = "hello, close-delimited world"
        let fake = try FakeUpstream { connection in
            guard connection.readRequest() != nil else { return }
            connection.write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + text)
            connection.pause(0.05)
            connection.write(" and more")
        }
        defer { fake.stop() }
        let h = try Harness(api: fake)
        // HTTP/1.1 client: re-framed as chunked, complete, connection kept.
        let client = try h.client()
        for _ in 0..<2 {
            let response = try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x")
            #expect(response.status == 200)
            #expect(response.header("transfer-encoding") == "chunked")
            #expect(response.header("content-length") == nil)
            #expect(response.bodyString == text + " and more")
        }
        // HTTP/1.0 client: delimited by close, as it came.
        let old = try h.client()
        try old.send("GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.0\r\n\r\n")
        let raw = try readRaw(old)
        guard case .complete(let response) = classify(raw.bytes) else {
            Issue.record("HTTP/1.0: not a complete response")
            return
        }
        #expect(response.status == 200)
        #expect(response.header("transfer-encoding") == nil)
        #expect(response.bodyString == text + " and more")
        #expect(fake.connections == 3)   // a close-delimited response ends its connection
    }

    @Test func headAnd204And304CarryNoBody() throws {
        let fake = try FakeUpstream { connection in
            while let request = connection.readRequest() {
                switch (request.method, request.target) {
                case ("HEAD", _): connection.write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n")
                case (_, "/suppliers-api-2026v1/_sandbox/echo/204"): connection.write("HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n")
                case (_, "/suppliers-api-2026v1/_sandbox/echo/304"): connection.write("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n")
                default: connection.write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nafter")
                }
            }
        }
        defer { fake.stop() }
        let h = try Harness(api: fake)
        let client = try h.client()
        // Each response is followed by a normal one on the same connection: any stray body
        // byte would show up as garbage where the next status line should be.
        let head = try client.request("HEAD", "/suppliers-api-2026v1/_sandbox/echo/x")
        #expect(head.status == 200)
        #expect(head.body.isEmpty)
        #expect(head.header("transfer-encoding") == nil)
        #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/after").bodyString == "after")
        let noContent = try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/204")
        #expect(noContent.status == 204)
        #expect(noContent.body.isEmpty)
        #expect(noContent.header("content-length") == nil && noContent.header("transfer-encoding") == nil)
        #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/after").bodyString == "after")
        let notModified = try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/304")
        #expect(notModified.status == 304)
        #expect(notModified.body.isEmpty)
        #expect(notModified.header("transfer-encoding") == nil)
        #expect(notModified.header("etag") == "\"v1\"")
        // Raw check: after the 304's head, the very next bytes are the next status line.
        try client.send("GET /suppliers-api-2026v1/_sandbox/echo/304 HTTP/1.1\r\nHost: p\r\n\r\nGET /suppliers-api-2026v1/_sandbox/echo/after HTTP/1.1\r\nHost: p\r\n\r\n")
        var raw: [UInt8] = []
        while raw.count < 40 || !String(decoding: raw, as: UTF8.self).hasSuffix("after") {
            guard let chunk = try client.readSome() else { break }
            raw += chunk
        }
        let text = String(decoding: raw, as: UTF8.self)
        let firstHeadEnd = text.range(of: "\r\n\r\n")!.upperBound
        #expect(text[firstHeadEnd...].hasPrefix("HTTP/1.1 200"), "bytes after the 304 head: \(text[firstHeadEnd...].prefix(40).debugDescription)")
        // One connection served everything, the pipelined request too: a connection is back in
        // the pool before the next request is read.
        #expect(fake.requests.allSatisfy { $0.connection == 0 }, "\(fake.requests.map { "\($0.connection) \($0.method) \($0.target)" })")
        #expect(fake.connections == 1)
    }

    /// An upstream that sends more than its response (a second "response", or a body to HEAD)
    /// must not have those bytes served as the answer to a later request.
    @Test func bytesBeyondAResponseAreNeverServedToTheNextRequest() throws {
        let fake = try FakeUpstream { connection in
            while let request = connection.readRequest() {
                switch (request.method, request.target) {
                case (_, "/suppliers-api-2026v1/_sandbox/echo/first"):
                    connection.write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirstHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\ninjected")
                case ("HEAD", _):
                    connection.write("HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\ninjected")
                case (_, "/suppliers-api-2026v1/_sandbox/echo/late"):
                    connection.write("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate")
                    connection.pause(0.1)
                    connection.write("HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\ninjected")
                default:
                    let body = request.target
                    connection.write("HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
                }
            }
        }
        defer { fake.stop() }
        let h = try Harness(api: fake)
        let client = try h.client()
        for first in ["/suppliers-api-2026v1/_sandbox/echo/first", "/suppliers-api-2026v1/_sandbox/echo/late"] {
            let response = try client.request("GET", first)
            #expect(response.status == 200)
            #expect(response.bodyString == String(first.split(separator: "/").last!))
            if first.hasSuffix("late") { Thread.sleep(forTimeInterval: 0.3) }
            let next = try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/next")
            #expect(next.bodyString == "/suppliers-api-2026v1/_sandbox/echo/next", "served \(next.bodyString.debugDescription) after \(first)")
        }
        let head = try client.request("HEAD", "/suppliers-api-2026v1/_sandbox/echo/x")
        #expect(head.status == 200 && head.body.isEmpty)
        let next = try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/after-head")
        #expect(next.bodyString == "/suppliers-api-2026v1/_sandbox/echo/after-head")
        #expect(fake.connections >= 4)   // every desynchronised connection was dropped
    }

    /// Connections dropped for desync, or given up when a client leaves, must give their pool
    /// slot back: with one upstream connection per loop, a leaked slot starves the next request.
    @Test func poolSlotsComeBackAfterAnUpstreamDesync() throws {
        let fake = try FakeUpstream { connection in
            while let request = connection.readRequest() {
                if request.target.hasSuffix("/first") {
                    connection.write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirstHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\ninjected")
                } else {
                    connection.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                }
            }
        }
        defer { fake.stop() }
        let h = try Harness(api: fake) {
            $0.limits.maxUpstreamConnections = 2
            $0.timeouts.connect = .seconds(2)
        }
        let client = try h.client(timeout: 15)
        for round in 0..<3 {
            #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/first").bodyString == "first", "round \(round)")
            let next = try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/next")
            #expect(next.status == 200, "round \(round): \(next.status) \(next.bodyString)")
        }
        #expect(eventually { h.proxy.pools.stats.openConnections <= 1 },
                "pool counts \(h.proxy.pools.stats.openConnections) open upstream connections; the fake has \(fake.openConnections) open")
    }

    // MARK: Faults

    /// The server closes an idle keep-alive connection right after answering: the pool must
    /// notice and use a fresh one, for GET and POST alike.
    @Test func idleConnectionClosedByTheServerIsNotReused() throws {
        let fake = try FakeUpstream { connection in
            guard let request = connection.readRequest() else { return }
            connection.write("HTTP/1.1 200 OK\r\nContent-Length: \(request.target.utf8.count)\r\n\r\n\(request.target)")
            // No "Connection: close": the proxy thinks the connection is reusable. Close it.
        }
        defer { fake.stop() }
        let h = try Harness(api: fake)
        let client = try h.client()
        // Each time, the pool has seen the server's close (the connection no longer counts)
        // before the next request; the race of a close arriving with the request is the next test's.
        #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/a").bodyString == "/suppliers-api-2026v1/_sandbox/echo/a")
        #expect(eventually { h.proxy.pools.stats.openConnections == 0 }, "the pool never noticed the server's close")
        #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/b").bodyString == "/suppliers-api-2026v1/_sandbox/echo/b")
        #expect(eventually { h.proxy.pools.stats.openConnections == 0 }, "the pool never noticed the server's close")
        let post = try client.request("POST", "/suppliers-api-2026v1/_sandbox/echo/c", body: Array("x=1".utf8))
        #expect(post.status == 200)
        #expect(fake.requests.map(\.target) == ["/suppliers-api-2026v1/_sandbox/echo/a", "/suppliers-api-2026v1/_sandbox/echo/b", "/suppliers-api-2026v1/_sandbox/echo/c"])
        #expect(fake.requests.last?.body == Array("x=1".utf8))
    }

    /// The race of RFC 9112 §9.3.1: the server closes a pooled connection just as the next
    /// request arrives. An idempotent request is sent again on a fresh connection; a POST,
    /// which the server may have acted on, is not (README: only "when nothing of it can have
    /// been processed").
    @Test func staleConnectionRaceRetriesIdempotentRequestsOnly() throws {
        let fake = try FakeUpstream { connection in
            guard let first = connection.readRequest() else { return }
            connection.write("HTTP/1.1 200 OK\r\nContent-Length: \(first.target.utf8.count)\r\n\r\n\(first.target)")
            if connection.index % 2 == 0 {
                // Take the next request, then close without a byte of answer.
                _ = connection.readRequest()
                return
            }
            while let request = connection.readRequest() {
                connection.write("HTTP/1.1 200 OK\r\nContent-Length: \(request.target.utf8.count)\r\n\r\n\(request.target)")
            }
        }
        defer { fake.stop() }
        let h = try Harness(api: fake)
        let client = try h.client()
        // Connection 0 serves /a, then swallows /b and closes; /b is retried on connection 1.
        #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/a").status == 200)
        let retried = try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/b")
        #expect(retried.status == 200)
        #expect(retried.bodyString == "/suppliers-api-2026v1/_sandbox/echo/b")
        #expect(fake.requests.filter { $0.target == "/suppliers-api-2026v1/_sandbox/echo/b" }.map(\.connection) == [0, 1])

        // Another API whose first connection serves /c, then swallows the POST and closes:
        // 502, and the POST was sent once.
        let fake2 = try FakeUpstream { connection in
            guard connection.readRequest() != nil else { return }
            connection.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            if connection.index == 0 { _ = connection.readRequest(); return }
            while connection.readRequest() != nil { connection.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") }
        }
        defer { fake2.stop() }
        let h2 = try Harness(api: fake2)
        let postClient = try h2.client()
        #expect(try postClient.request("GET", "/suppliers-api-2026v1/_sandbox/echo/c").status == 200)
        let post = try postClient.request("POST", "/suppliers-api-2026v1/_sandbox/echo/orders", body: Array("{\"order\":1}".utf8))
        #expect(post.status == 502)
        #expect(post.json["type"] as? String == "urn:floriday-proxy:problem:upstream-connection-closed")
        expectSettled(h2)
        #expect(fake2.requests.filter { $0.method == "POST" }.count == 1, "a POST was sent again after the server may have processed it")
    }

    /// A client that leaves mid-download: the upstream connection is dropped (not pooled dirty),
    /// its slot is given back, and the proxy keeps serving.
    @Test func clientLeavingMidResponseFreesTheUpstreamConnection() throws {
        let h = try Harness {
            $0.limits.maxUpstreamConnections = 2   // one per loop: a leaked slot starves that loop
            // HTTP/1.1: the leaver's connection is dropped (an HTTP/2 stream is reset instead, see UpstreamHTTP2Tests).
            $0.upstreamHTTP2 = .never
            // A request on a starved loop waits this long for a free connection, then fails.
            $0.timeouts.connect = .seconds(5)
        }
        #expect(try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/warm").status == 200)
        for i in 0..<4 {   // alternating loops: two leavers per loop
            let client = try h.client()
            try client.send("GET /suppliers-api-x/_sandbox/bytes?size=50000000 HTTP/1.1\r\nHost: p\r\n\r\n")
            guard let first = try client.readSome() else {
                Issue.record("leaver \(i): connection closed without a response")
                continue
            }
            guard String(decoding: first.prefix(12), as: UTF8.self) == "HTTP/1.1 200" else {
                Issue.record("leaver \(i) was not served: \(String(decoding: first.prefix(400), as: UTF8.self))")
                continue
            }
            var received = first.count
            while received < 100_000 {
                guard let chunk = try client.readSome() else { break }
                received += chunk.count
            }
            #expect(received >= 100_000)
            // The client closes here, with most of the body unread.
        }
        #expect(eventually { h.proxy.activeClientConnections == 0 })
        // Every upstream connection was either in use by a leaver (and dropped) or idle and
        // then taken by one: none is left.
        #expect(eventually { h.proxy.pools.stats.openConnections == 0 && h.proxy.stats.requestsInFlight == 0 },
                "open upstream connections: \(h.proxy.pools.stats.openConnections)")
        // A leaked slot shows as a request that waited for a free connection and failed (a 5xx),
        // not as a slow success: the status says it all, however busy the machine.
        for i in 0..<4 {
            let response = try h.client(timeout: 30).request("GET", "/suppliers-api-2026v1/_sandbox/echo/after-\(i)")
            #expect(response.status == 200, "request \(i) after the leavers: \(response.status) \(response.json["type"] ?? "")")
        }
        // Nothing half-used is kept: at most the idle connections of the requests just made.
        #expect(eventually { h.proxy.pools.stats.openConnections <= 2 },
                "open upstream connections: \(h.proxy.pools.stats.openConnections)")
    }

    @Test func slowlorisGets408WhileOthersAreServed() throws {
        // The head timeout counts from the head's first byte, however slowly bytes keep coming.
        // The slow client sends a byte a second, 20 in all; the 408 is due after 6 s, and a
        // timeout restarted by every byte would come only 6 s after the last one (26 s).
        let headTimeout = 6.0
        let h = try Harness { $0.timeouts.requestHead = .seconds(headTimeout) }
        #expect(try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/warm").status == 200)
        let outcome = Locked<(status: Int, elapsed: Double, closed: Bool)?>(nil)
        let done = DispatchSemaphore(value: 0)
        let port = h.port
        Thread {
            defer { done.signal() }
            guard let slow = try? TestClient(port: port, timeout: 15) else { return }
            let head = Array("GET /suppliers-api-2026v1/_sandbox/echo/slow HTTP/1.1\r\nHost: p\r\nX-Slow: 1234567890\r\n\r\n".utf8)
            let started = Date()
            for byte in head.prefix(20) {
                guard (try? slow.send([byte])) != nil else { break }
                var pfd = pollfd(fd: slow.fd, events: Int16(POLLIN), revents: 0)
                if poll(&pfd, 1, 1000) > 0 { break }   // the proxy answered
            }
            let response = try? slow.readResponse()
            outcome.withLock { $0 = (response?.status ?? -1, Date().timeIntervalSince(started), slow.isClosedByPeer()) }
        }.start()
        // Meanwhile another client is served, repeatedly, long before the slow head times out.
        for i in 0..<5 {
            let started = Date()
            #expect(try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/fast-\(i)").status == 200)
            #expect(Date().timeIntervalSince(started) < headTimeout / 2)
            Thread.sleep(forTimeInterval: 0.2)   // pacing, not waiting for anything
        }
        #expect(done.wait(timeout: .now() + 60) == .success)
        let result = outcome.withLock { $0 }
        #expect(result?.status == 408)
        #expect(result?.closed == true)
        let elapsed = result?.elapsed ?? -1
        #expect(elapsed >= headTimeout - 0.5 && elapsed < headTimeout + 8, "408 after \(elapsed) s")
        #expect(h.state.apiRequests == 6)   // the slow request never reached the API
    }

    /// 2,000 connections that break: half send part of a head and close, half reset (some after
    /// part of a head). The head timeout is long, so only noticing the peer's close or reset
    /// can free them.
    @Test func brokenConnectionsLeakNoDescriptors() throws {
        let h = try Harness { $0.timeouts.requestHead = .seconds(60) }
        #expect(try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/warm").status == 200)
        #expect(eventually { h.proxy.activeClientConnections == 0 })
        Thread.sleep(forTimeInterval: 0.2)
        let port = h.port
        let baselineFDs = ProcessStats.openFileDescriptors()
        let baselineSockets = socketsOn(port: port)
        let partial = Array("GET /suppliers-api-2026v1/_sandbox/echo/x HTTP/1.1\r\nHost: p\r\nX-Partial: ".utf8)
        var made = 0
        for batch in 0..<20 {
            var fds: [Int32] = []
            for _ in 0..<100 {
                guard let fd = try? TestClient.rawConnect(port: port) else { continue }
                fds.append(fd)
            }
            made += fds.count
            for (i, fd) in fds.enumerated() {
                if i % 2 == 0 {
                    // Half send a partial request head and close.
                    _ = partial.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    close(fd)
                } else {
                    // Half reset the connection (SO_LINGER 0), some after a partial head.
                    if (i / 2 + batch) % 2 == 0 { _ = partial.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
                    resetAndClose(fd)
                }
            }
        }
        #expect(made == 2000)
        let allClosed = eventually(timeout: 10) { h.proxy.activeClientConnections == 0 }
        #expect(allClosed, "still \(h.proxy.activeClientConnections) client connections")
        let settleTime: Double = allClosed ? 10 : 2
        #expect(eventually(timeout: settleTime) { socketsOn(port: port) <= baselineSockets },
                "sockets on the proxy port: \(socketsOn(port: port)), baseline \(baselineSockets)")
        // Process-wide (meaningful when no other test runs at the same time; descriptors that
        // earlier tests still held may close meanwhile, so only growth counts).
        let fdsReturned = eventually(timeout: settleTime) { ProcessStats.openFileDescriptors() - baselineFDs <= 5 }
        #expect(fdsReturned, "open descriptors: \(ProcessStats.openFileDescriptors()), baseline \(baselineFDs)")
        #expect(try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/after").status == 200)
    }

    /// Graceful stop with a request in flight (an API that takes 800 ms to answer): the request
    /// completes, new connections are refused, idle ones closed, and the completion runs.
    @Test func gracefulShutdownFinishesTheRequestInFlight() throws {
        // The API holds the slow request until the test lets it go, so the request is surely in
        // flight while the stop begins, however slow the machine.
        let answerSlow = DispatchSemaphore(value: 0)
        let fake = try FakeUpstream { connection in
            while let request = connection.readRequest() {
                if request.target.hasSuffix("/slow") { _ = answerSlow.wait(timeout: .now() + 60) }
                connection.write("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
            }
        }
        defer { fake.stop() }
        defer { answerSlow.signal() }
        let h = try Harness(api: fake)
        let idle = try h.client()
        #expect(try idle.request("GET", "/suppliers-api-2026v1/_sandbox/echo/warm").status == 200)
        let busy = try h.client()
        try busy.send("GET /suppliers-api-2026v1/_sandbox/echo/slow HTTP/1.1\r\nHost: p\r\n\r\n")
        #expect(eventually { h.proxy.stats.requestsInFlight == 1 && fake.requests.count == 2 })
        let completed = Locked<Date?>(nil)
        // A grace period far beyond any wait below: the completion must come from the request
        // finishing, not from the grace period running out.
        h.proxy.shutdown(grace: .seconds(120)) { completed.withLock { $0 = Date() } }
        // New connections are refused; the idle keep-alive connection is closed.
        #expect(eventually { (try? TestClient(port: h.port, timeout: 1)) == nil })
        #expect(idle.isClosedByPeer())
        #expect(completed.withLock { $0 } == nil, "completion ran with a request in flight")
        // The request in flight completes normally, and its connection closes after it.
        let answered = Date()
        answerSlow.signal()
        let response = try busy.readResponse()
        #expect(response.status == 200, "\(response.bodyString)")
        #expect(response.bodyString == "done")
        #expect(response.header("connection")?.lowercased() == "close")
        #expect(busy.isClosedByPeer())
        #expect(eventually { completed.withLock { $0 } != nil }, "shutdown completion never ran")
        if let done = completed.withLock({ $0 }) {
            #expect(done >= answered, "completion ran before the request in flight was answered")
        }
    }

    /// A request whose head was partly received when the stop began: the server keeps its
    /// connection (it is not idle), so the request must be served within the grace period, and
    /// the stop is not complete before it is.
    @Test func gracefulShutdownServesARequestWhoseHeadWasArriving() throws {
        let h = try Harness()
        let client = try h.client()
        // The partial head follows a whole request in the same write: once that request's
        // response is here, the proxy has read the partial head too (and parsed it in the turn
        // of its loop that finished the response, before any later work on that loop).
        try client.send("GET /suppliers-api-2026v1/_sandbox/echo/warm HTTP/1.1\r\nHost: p\r\n\r\nGET /suppliers-api-2026v1/_sandbox/echo/late HTTP/1.1\r\nHost: p\r\n")
        #expect(try client.readResponse().status == 200)
        let completed = Locked(false)
        h.proxy.shutdown(grace: .seconds(120)) { completed.withLock { $0 = true } }
        // The stop's work on each loop has run once every loop has run a block queued after it.
        for loop in h.proxy.group.loops { onLoop(loop) {} }
        #expect(!completed.withLock { $0 }, "the stop completed while a request head was arriving")
        try client.send("\r\n")
        let response = try client.readResponse()
        #expect(response.status == 200, "\(response.status) \(response.bodyString)")
        #expect(response.json["target"] as? String == "/suppliers-api-2026v1/_sandbox/echo/late")
        #expect(response.header("connection")?.lowercased() == "close")
        #expect(eventually { completed.withLock { $0 } })
    }

    /// The same with the sandbox's own slow route, `/_sandbox/delay`.
    @Test func gracefulShutdownWithTheSandboxDelayRoute() throws {
        let h = try Harness()
        #expect(try h.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/warm").status == 200)
        let busy = try h.client()
        try busy.send("GET /suppliers-api-2026v1/_sandbox/delay?ms=800 HTTP/1.1\r\nHost: p\r\n\r\n")
        // In flight: the sandbox has it (it counts a streamed route when the head arrives).
        #expect(eventually { h.proxy.stats.requestsInFlight == 1 && h.state.apiRequests == 2 })
        let completed = Locked(false)
        h.proxy.shutdown(grace: .seconds(5)) { completed.withLock { $0 = true } }
        #expect(eventually { (try? TestClient(port: h.port, timeout: 1)) == nil })
        let response = try busy.readResponse()
        #expect(response.status == 200, "\(response.bodyString)")
        #expect(response.json["delayedMs"] as? Int == 800)
        #expect(eventually { completed.withLock { $0 } }, "shutdown completion never ran")
    }
}

// MARK: - Helpers

extension Harness {
    /// A harness whose API is `fake` (plain HTTP); the token still comes from the sandbox's IDM.
    convenience init(api fake: FakeUpstream, configure: (inout ProxyConfig) -> Void = { _ in }) throws {
        try self.init { config in
            config.apiURL = try! EndpointURL("http://127.0.0.1:\(fake.port)", key: "api_url")
            configure(&config)
        }
    }
}

/// Closes with SO_LINGER 0: the peer gets a RST instead of a FIN.
func resetAndClose(_ fd: Int32) {
    var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
    close(fd)
}

/// Before counting what reached the API: every request the proxy started has finished.
/// A request is started as soon as its head is parsed and finishes once the upstream has
/// answered it, so once the client has seen its responses (or the connection's close) and
/// nothing is in flight, anything the proxy forwarded, rightly or wrongly, has been counted.
private func expectSettled(_ h: Harness, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(eventually { h.proxy.stats.requestsInFlight == 0 }, "\(h.proxy.stats.requestsInFlight) requests still in flight",
            sourceLocation: sourceLocation)
}

/// Everything the peer sends until it closes (EOF) or resets the connection.
private func readRaw(_ client: TestClient) throws -> (bytes: [UInt8], reset: Bool) {
    var all: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(client.fd, $0.baseAddress, $0.count) }
        if n > 0 { all += buffer[0..<n]; continue }
        if n == 0 { return (all, false) }
        let error = errno
        if error == ECONNRESET { return (all, true) }
        if error == EINTR { continue }
        throw TestClient.Failure(description: "read failed after \(all.count) bytes: \(String(cString: strerror(error)))")
    }
}

/// Bytes until one complete response has arrived, or the peer closed or reset the connection.
private func readResponseOrClose(_ client: TestClient, method: String = "GET") throws -> [UInt8] {
    var all: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(client.fd, $0.baseAddress, $0.count) }
        if n > 0 {
            all += buffer[0..<n]
            if case .complete = classify(all, method: method, atEOF: false) { return all }
            continue
        }
        if n == 0 { return all }
        let error = errno
        if error == ECONNRESET { return all }
        if error == EINTR { continue }
        throw TestClient.Failure(description: "read failed after \(all.count) bytes: \(String(cString: strerror(error)))")
    }
}

private enum RawOutcome {
    /// No byte at all before the close.
    case nothing
    /// A complete response (framed by Content-Length, chunked with its last chunk, or by close
    /// when it had no framing).
    case complete(TestClient.Response)
    /// A head and then too few body bytes, or an unterminated chunked body.
    case broken(status: Int, bodyBytes: Int)
    case garbage(String)
}

/// What a client that reads until the connection ends makes of `raw`.
private func classify(_ raw: [UInt8], method: String = "GET", atEOF: Bool = true) -> RawOutcome {
    if raw.isEmpty { return .nothing }
    let parser = HTTP1ResponseParser()
    parser.requestMethod = method
    var head: HTTPResponseHead?
    var body: [UInt8] = []
    var ended = false
    do {
        _ = try raw.withUnsafeBytes { bytes in
            try parser.parse(bytes) { event in
                switch event {
                case .head(let h): if h.status >= 200 { head = h }
                case .body(let b): body += b
                case .trailers: break
                case .end: if head != nil { ended = true; return .pause }
                }
                return .proceed
            }
        }
        if !ended && atEOF {
            _ = try parser.finish { event in
                if case .end = event, head != nil { ended = true }
                return .proceed
            }
        }
    } catch let error as HTTP1ParseError where error.code == "unexpected-eof" {
        return head.map { .broken(status: $0.status, bodyBytes: body.count) } ?? .garbage("truncated head")
    } catch {
        return .garbage("\(error)")
    }
    guard let head else { return .garbage("no final response head") }
    if !ended { return .broken(status: head.status, bodyBytes: body.count) }
    return .complete(TestClient.Response(status: head.status, headers: head.headers, body: body))
}

/// The client saw a 502 upstream problem or a visibly broken response; never a
/// complete-looking success, and never a close without any answer (the proxy had sent nothing,
/// so it can always say what went wrong).
private func expectBrokenOr502(_ raw: [UInt8], _ name: String, sourceLocation: SourceLocation = #_sourceLocation) {
    switch classify(raw) {
    case .nothing:
        Issue.record("\(name): the connection closed without a response; expected a 502", sourceLocation: sourceLocation)
    case .broken(let status, _):
        #expect(status == 200, "\(name): broken response with status \(status)", sourceLocation: sourceLocation)
    case .complete(let response):
        #expect(response.status == 502, "\(name): a complete \(response.status) response with body \(response.bodyString.debugDescription)", sourceLocation: sourceLocation)
        #expect((response.json["type"] as? String)?.hasPrefix("urn:floriday-proxy:problem:upstream-") == true, "\(name): \(response.bodyString)", sourceLocation: sourceLocation)
    case .garbage(let why):
        Issue.record("\(name): unparseable response (\(why)): \(String(decoding: raw.prefix(200), as: UTF8.self).debugDescription)", sourceLocation: sourceLocation)
    }
}

/// Sockets of this process with `port` at either end (its listener, accepted and client
/// sockets) that the kernel still lists in /proc/net/tcp. A socket whose peer reset it is in
/// CLOSE state and no longer listed, though its descriptor may still be open: the process-wide
/// descriptor count is what sees those.
func socketsOn(port: Int) -> Int {
    var inodes = Set<String>()
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        guard let text = try? String(contentsOfFile: table, encoding: .utf8) else { continue }
        let hex = String(format: "%04X", port)
        for line in text.split(separator: "\n").dropFirst() {
            let columns = line.split(separator: " ", omittingEmptySubsequences: true)
            guard columns.count > 9 else { continue }
            if columns[1].hasSuffix(":" + hex) || columns[2].hasSuffix(":" + hex) { inodes.insert(String(columns[9])) }
        }
    }
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return -1 }
    var count = 0
    for name in names {
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + name),
              target.hasPrefix("socket:[") else { continue }
        if inodes.contains(String(target.dropFirst(8).dropLast())) { count += 1 }
    }
    return count
}

// MARK: - A fake upstream

/// A tiny blocking HTTP server on loopback for canned (often broken) responses. Each accepted
/// connection runs `script` on its own thread; the connection is closed when it returns.
/// Every socket operation has a timeout, so a proxy bug cannot hang a test.
final class FakeUpstream: @unchecked Sendable {
    struct Request: Sendable {
        var method: String
        var target: String
        var headers: HTTPHeaders
        var body: [UInt8]
        /// Index of the connection it came on (0 for the first accepted).
        var connection: Int
    }

    let port: Int
    private let listenFD: Int32
    private let stopping = Locked(false)
    private let received = Locked<[Request]>([])
    private let accepted = Locked(0)
    private let open = Locked(0)
    private let acceptLoopDone = DispatchSemaphore(value: 0)

    var requests: [Request] { received.withLock { $0 } }
    var connections: Int { accepted.withLock { $0 } }
    var openConnections: Int { open.withLock { $0 } }

    init(_ script: @escaping @Sendable (FakeConnection) -> Void) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestClient.Failure(description: "socket failed") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = 0
        inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr)
        let bound = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            close(fd)
            throw TestClient.Failure(description: "bind/listen failed: \(String(cString: strerror(errno)))")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        port = Int(UInt16(bigEndian: sin.sin_port))
        listenFD = fd
        Thread { [self] in acceptLoop(script) }.start()
    }

    private func acceptLoop(_ script: @escaping @Sendable (FakeConnection) -> Void) {
        defer {
            close(listenFD)
            acceptLoopDone.signal()
        }
        var index = 0
        // Bounded: a test stops the fake; failing that, it gives up after two minutes.
        let deadline = Date().addingTimeInterval(120)
        while !stopping.withLock({ $0 }) && Date() < deadline {
            var pfd = pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 50) > 0 else { continue }
            let client = accept(listenFD, nil, nil)
            guard client >= 0 else { continue }
            var tv = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            let connection = FakeConnection(fd: client, index: index, upstream: self)
            index += 1
            accepted.withLock { $0 += 1 }
            open.withLock { $0 += 1 }
            Thread { [self] in
                script(connection)
                connection.close()
                open.withLock { $0 -= 1 }
            }.start()
        }
    }

    fileprivate func record(_ request: Request) { received.withLock { $0.append(request) } }

    func stop() {
        stopping.withLock { $0 = true }
        _ = acceptLoopDone.wait(timeout: .now() + 2)
    }
}

final class FakeConnection: @unchecked Sendable {
    let fd: Int32
    let index: Int
    private let upstream: FakeUpstream
    private var buffer: [UInt8] = []
    private let parser = HTTP1RequestParser()
    private var closed = false

    fileprivate init(fd: Int32, index: Int, upstream: FakeUpstream) {
        self.fd = fd
        self.index = index
        self.upstream = upstream
    }

    /// The next complete request, or nil when the proxy closed the connection (or after 5 s).
    func readRequest() -> FakeUpstream.Request? {
        var head: HTTPRequestHead?
        var body: [UInt8] = []
        var done = false
        var chunk = [UInt8](repeating: 0, count: 65536)
        while !closed {
            if !buffer.isEmpty {
                let consumed: Int
                do {
                    consumed = try buffer.withUnsafeBytes { raw in
                        try parser.parse(raw) { event in
                            switch event {
                            case .head(let h): head = h
                            case .body(let b): body += b
                            case .trailers: break
                            case .end:
                                done = true
                                return .pause
                            }
                            return .proceed
                        }
                    }
                } catch {
                    return nil
                }
                buffer.removeFirst(consumed)
                if done, let head {
                    let request = FakeUpstream.Request(method: head.method, target: head.targetString, headers: head.headers, body: body, connection: index)
                    upstream.record(request)
                    return request
                }
            }
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { return nil }
            buffer += chunk[0..<n]
        }
        return nil
    }

    func write(_ text: String) { write(Array(text.utf8)) }

    func write(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count && !closed {
            let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { return }
            offset += n
        }
    }

    func pause(_ seconds: Double) { Thread.sleep(forTimeInterval: seconds) }

    func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }

    /// Closes with a RST (SO_LINGER 0).
    func reset() {
        guard !closed else { return }
        closed = true
        resetAndClose(fd)
    }
}
