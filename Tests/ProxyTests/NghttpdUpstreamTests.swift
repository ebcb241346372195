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
}
