import Foundation
import TestSupport
import Testing

/// HTTP/2 towards an API server the project did not write: `nghttpd` over TLS (ALPN h2) with
/// a test CA, the sandbox as IDM. What nghttpd logs in verbose mode is the evidence: how many
/// connections it served and which header fields arrived on each stream.
@Suite(.enabled(if: Nghttpd.isInstalled, "needs nghttpd (Debian package nghttp2-server, installed by `make test`)"))
struct NghttpdUpstreamTests {
    @Test func aHundredConcurrentRequestsUseOneConnectionPerLoop() throws {
        let count = 100
        var files: [String: [UInt8]] = [:]
        for i in 0..<count { files["suppliers-api-2026v1/items/\(i)"] = Array("item \(i)\n".utf8) }
        let server = try Nghttpd(files: files)
        let s = try UpstreamHTTP2Tests.Scene(apiPort: server.port, apiCA: server.ca.certificatePEM)

        // All client connections open and all requests sent before any response is read: the
        // hundred exchanges are in the proxy at once.
        let clients = try (0..<count).map { _ in try TestClient(port: s.port, timeout: 20) }
        for (i, client) in clients.enumerated() {
            var request = "GET /suppliers-api-2026v1/items/\(i) HTTP/1.1\r\nHost: proxy.test\r\n"
            if i % 2 == 0 {
                // The client's own credentials are replaced, never forwarded beside ours.
                request += "Authorization: Bearer the-clients-own\r\nX-Api-Key: the-clients-key\r\n"
            } else {
                // Hop-by-hop fields stay on the client's hop.
                request += "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n"
            }
            try client.send(request + "X-Tool: Legacy-\(i)\r\n\r\n")
        }
        for (i, client) in clients.enumerated() {
            let response = try client.readResponse()
            #expect(response.status == 200, "item \(i): \(response.status) \(response.bodyString)")
            #expect(response.bodyString == "item \(i)\n")
        }

        #expect(eventually { server.log.streams.count(where: { $0.path?.hasPrefix("/suppliers-api-2026v1/items/") == true }) == count },
                "\(server.log.streams.count) streams in nghttpd's log")
        let log = server.log
        // Two event loops, each with its own pool: one connection each at most.
        #expect((1...2).contains(log.sessions.count), "nghttpd served \(log.sessions.count) connections; streams per connection: \(Dictionary(grouping: log.streams, by: \.session).mapValues(\.count))")
        #expect(s.proxy.pools.stats.http2Connections <= 2)
        #expect(s.proxy.pools.stats.http1Connections == 0)

        let streams = log.streams.filter { $0.path?.hasPrefix("/suppliers-api-2026v1/items/") == true }
        #expect(Set(streams.compactMap(\.path)) == Set((0..<count).map { "/suppliers-api-2026v1/items/\($0)" }))
        let token = streams.first?.values("authorization").first ?? ""
        #expect(token.hasPrefix("Bearer ") && token.count > 20, "\(token)")
        #expect(!token.contains("the-clients-own"))
        for stream in streams {
            let where_ = "stream \(stream.id) of connection \(stream.session) (\(stream.path ?? "?"))"
            #expect(stream.values("authorization") == [token], "\(where_): \(stream.values("authorization"))")
            #expect(stream.values("x-api-key") == ["sandbox-api-key"], "\(where_): \(stream.values("x-api-key"))")
            #expect(stream.values(":scheme") == ["https"])
            #expect(stream.values(":authority") == ["localhost:\(server.port)"])
            #expect(stream.values(":method") == ["GET"])
            let names = stream.fields.map(\.name)
            #expect(names.allSatisfy { $0 == $0.lowercased() }, "\(where_): \(names)")
            for hop in ["connection", "keep-alive", "x-hop", "te", "host", "transfer-encoding", "upgrade", "proxy-connection"] {
                #expect(!names.contains(hop), "\(where_) carries \(hop)")
            }
            #expect(stream.values("x-tool").count == 1)
        }
        // One token for all of them (single flight), fetched from the sandbox's IDM.
        #expect(s.sandbox.state.tokenRequests == 1)
        #expect(eventually { s.upstreamProtocols.count == count })
        #expect(s.upstreamProtocols.allSatisfy { $0 == "h2" })
    }

    // MARK: Response mapping

    /// A file of `size` bytes that is not one repeated byte.
    static func contents(_ size: Int) -> [UInt8] { (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) } }

    @Test func aResponseWithContentLengthKeepsIt() throws {
        let file = Self.contents(100_000)
        // nghttpd sends content-length, and the trailer after the body: a body delimited by
        // Content-Length has no room for a trailer section, so it is dropped.
        let server = try Nghttpd(files: ["suppliers-api-2026v1/report": file], arguments: ["--trailer", "x-checksum: abc123"])
        let s = try UpstreamHTTP2Tests.Scene(apiPort: server.port, apiCA: server.ca.certificatePEM)
        let client = try s.client()
        let response = try client.request("GET", "/suppliers-api-2026v1/report")
        #expect(response.status == 200)
        #expect(response.header("content-length") == "100000")
        #expect(response.header("transfer-encoding") == nil)
        #expect(response.body == file)
        // The connection carries the next request: the framing was right.
        #expect(try client.request("GET", "/suppliers-api-2026v1/report").body == file)
        #expect(s.upstreamProtocols.allSatisfy { $0 == "h2" })
    }

    @Test func aResponseWithoutContentLengthIsChunkedWithItsTrailers() throws {
        let file = Self.contents(100_000)
        let server = try Nghttpd(files: ["suppliers-api-2026v1/report": file],
                                 arguments: ["--no-content-length", "--trailer", "x-checksum: abc123"])
        let s = try UpstreamHTTP2Tests.Scene(apiPort: server.port, apiCA: server.ca.certificatePEM)

        // HTTP/1.1: chunked, the trailer section after the last chunk (RFC 9112 §7.1.2).
        let client = try s.client()
        try client.send("GET /suppliers-api-2026v1/report HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n")
        let raw = try client.readToEOF()
        let message = try #require(Self.decodeChunked(raw), "not a chunked message: \(String(decoding: raw.prefix(400), as: UTF8.self))")
        #expect(message.head.hasPrefix("HTTP/1.1 200"))
        #expect(message.head.lowercased().contains("\r\ntransfer-encoding: chunked\r\n"))
        #expect(!message.head.lowercased().contains("content-length"))
        #expect(message.body == file)
        #expect(message.trailers == ["x-checksum: abc123"])

        // An HTTP/1.0 client: the body ends with the connection, and there is no trailer section.
        let old = try s.client()
        try old.send("GET /suppliers-api-2026v1/report HTTP/1.0\r\nHost: p\r\n\r\n")
        let oldRaw = try old.readToEOF()
        let headEnd = try #require(oldRaw.firstRange(of: Array("\r\n\r\n".utf8)))
        #expect(Array(oldRaw[headEnd.upperBound...]) == file)

        // h2c: the trailers go on in a HEADERS frame after the DATA (nghttp, nghttp2-client).
        if let nghttp = HTTP2ProxyTests.nghttpPath {
            let (status, output) = try HTTP2ProxyTests.runNghttp(nghttp, ["http://127.0.0.1:\(s.port)/suppliers-api-2026v1/report"])
            #expect(status == 0, "\(output)")
            let lines = output.split(separator: "\n")
            let trailer = lines.lastIndex { $0.contains("recv (stream_id=") && $0.hasSuffix(") x-checksum: abc123") }
            let lastData = lines.lastIndex { $0.contains("recv DATA frame") }
            #expect(trailer != nil && lastData != nil && trailer! > lastData!, "\(output.suffix(2000))")
        }
    }

    /// Splits a raw HTTP/1.1 chunked message: head, decoded body, trailer field lines.
    static func decodeChunked(_ raw: [UInt8]) -> (head: String, body: [UInt8], trailers: [String])? {
        guard let headEnd = raw.firstRange(of: Array("\r\n\r\n".utf8)) else { return nil }
        let head = String(decoding: raw[..<headEnd.upperBound], as: UTF8.self)
        var index = headEnd.upperBound
        var body: [UInt8] = []
        let crlf = Array("\r\n".utf8)
        while true {
            guard let lineEnd = raw[index...].firstRange(of: crlf),
                  let size = Int(String(decoding: raw[index..<lineEnd.lowerBound], as: UTF8.self), radix: 16) else { return nil }
            index = lineEnd.upperBound
            if size == 0 { break }
            guard raw.count >= index + size + 2 else { return nil }
            body += raw[index..<index + size]
            index += size + 2
        }
        var trailers: [String] = []
        while let lineEnd = raw[index...].firstRange(of: crlf) {
            if lineEnd.lowerBound == index { return index + 2 == raw.count ? (head, body, trailers) : nil }
            trailers.append(String(decoding: raw[index..<lineEnd.lowerBound], as: UTF8.self))
            index = lineEnd.upperBound
        }
        return nil
    }
}
