import CNGHTTP2
import HTTP1
@testable import HTTP2
import TestSupport
import Testing

/// The client session's own HPACK encoder, checked against nghttp2's decoder (the server
/// session of a `Pair`): every head must arrive as it was sent, whatever the table holds.
@Suite struct HPACKEncoderTests {
    private static let token = "Bearer " + String(repeating: "eyJhbGciOiJSUzI1NiJ9", count: 50)

    /// A pair whose client indexes Authorization (as the proxy's upstream connections do).
    private static func pair(indexesAuthorization: Bool, server: HTTP2Settings = HTTP2Settings()) -> Pair {
        var settings = HTTP2Settings()
        settings.indexesAuthorization = indexesAuthorization
        return Pair(settings: server, clientSettings: settings)
    }

    /// The HEADERS (and CONTINUATION) frames the client sends for what was submitted.
    private static func headerFrames(_ pair: Pair) throws -> [(type: UInt8, flags: UInt8, stream: UInt32, payload: [UInt8])] {
        var bytes: [UInt8] = []
        try pair.client.send(into: &bytes)
        try bytes.withUnsafeBytes { try pair.server.receive($0) }
        try pair.pump()
        let frames = RawFrame.parse(bytes.starts(with: http2ClientPreface) ? Array(bytes.dropFirst(http2ClientPreface.count)) : bytes)
        return frames.filter { $0.type == 0x1 || $0.type == 0x9 }
    }

    private static func apiRequest(_ id: Int) -> HTTPRequestHead {
        request("GET", "/suppliers-api-2024v2/trade-items?page=\(id)", [
            ("X-Forwarded-For", "127.0.0.1"), ("X-Forwarded-Proto", "http"), ("X-Request-Id", "request-\(id)"),
            ("Authorization", token), ("X-Api-Key", "sandbox-api-key"),
        ])
    }

    @Test func aRepeatedHeadIsTableReferences() throws {
        let pair = Self.pair(indexesAuthorization: true)
        var sizes: [Int] = []
        for index in 1...3 {
            let id = pair.client.submitRequest(Self.apiRequest(index), scheme: "https", authority: "api.example", hasBody: false)
            let frames = try Self.headerFrames(pair)
            sizes.append(frames.reduce(0) { $0 + $1.payload.count })
            let head = try #require(pair.serverEvents.requests[id])
            #expect(head.headers.first("authorization") == Array(Self.token.utf8))
            #expect(head.headers.first("x-request-id") == Array("request-\(index)".utf8))
            #expect(head.headers.first("x-api-key") == Array("sandbox-api-key".utf8))
            #expect(head.headers.first("host") == Array("api.example".utf8))
            #expect(head.targetString == "/suppliers-api-2024v2/trade-items?page=\(index)")
        }
        #expect(sizes[0] > Self.token.utf8.count)
        // Only :path and X-Request-Id are literals after the first head.
        #expect(sizes[1] < 100 && sizes[2] < 100, "\(sizes)")
    }

    @Test func authorizationIsNeverIndexedUnlessAsked() throws {
        let pair = Self.pair(indexesAuthorization: false)
        for index in 1...2 {
            let id = pair.client.submitRequest(Self.apiRequest(index), scheme: "https", authority: "api.example", hasBody: false)
            let frames = try Self.headerFrames(pair)
            #expect(frames.reduce(0) { $0 + $1.payload.count } > Self.token.utf8.count)
            #expect(pair.serverEvents.requests[id]?.headers.first("authorization") == Array(Self.token.utf8))
        }
    }

    @Test func manyDistinctValuesEvictOldEntries() throws {
        let pair = Self.pair(indexesAuthorization: true)
        for index in 0..<200 {
            let value = String(repeating: Character(String(index % 10)), count: 100 + index)
            let id = pair.client.submitRequest(request("GET", "/\(index)", [("x-value", value), ("x-constant", "same"), ("Authorization", Self.token)]),
                                               authority: "a", hasBody: false)
            try pair.pump()
            let head = try #require(pair.serverEvents.requests[id])
            #expect(head.headers.first("x-value") == Array(value.utf8))
            #expect(head.headers.first("x-constant") == Array("same".utf8))
            #expect(head.headers.first("authorization") == Array(Self.token.utf8))
            // Answered, so the streams do not pile up against the concurrency limit.
            pair.server.submitResponse(stream: id, status: 204, headers: HTTPHeaders(), hasBody: false)
            try pair.pump()
        }
    }

    @Test func aLargeHeadGoesOutInContinuationFrames() throws {
        var server = HTTP2Settings()
        server.maxHeaderListSize = 128 * 1024
        let pair = Self.pair(indexesAuthorization: true, server: server)
        let big = (0..<10).map { ("x-big-\($0)", String(repeating: "v", count: 4000)) }
        let id = pair.client.submitRequest(request("POST", "/upload", big), authority: "a", hasBody: true)
        pair.client.endData(stream: id)
        let frames = try Self.headerFrames(pair)
        #expect(frames.map(\.type) == [0x1, 0x9, 0x9])
        #expect(frames.map { $0.flags & 0x4 } == [0, 0, 0x4])   // END_HEADERS on the last only
        let head = try #require(pair.serverEvents.requests[id])
        #expect(head.headers.fields.filter { $0.nameString.hasPrefix("x-big-") }.count == 10)
        #expect(pair.serverEvents.ended.contains(id))
        // The table still agrees with the server's afterwards.
        let next = pair.client.submitRequest(request("GET", "/after", [("x-big-1", String(repeating: "v", count: 4000))]), authority: "a", hasBody: false)
        try pair.pump()
        #expect(pair.serverEvents.requests[next]?.headers.first("x-big-1")?.count == 4000)
    }

    @Test func aSmallerPeerTableIsSignalled() throws {
        let pair = Self.pair(indexesAuthorization: true)
        for index in 1...2 {
            pair.client.submitRequest(Self.apiRequest(index), authority: "a", hasBody: false)
            try pair.pump()
        }
        // The server's decoder goes down to no table and back up between two heads: the next
        // block must start with both updates (RFC 7541 §4.2).
        for size: UInt32 in [0, 4096] {
            var entry = nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_HEADER_TABLE_SIZE.rawValue), value: size)
            nghttp2_submit_settings(pair.server.session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &entry, 1)
            try pair.pump()
        }
        for index in 3...5 {
            let id = pair.client.submitRequest(Self.apiRequest(index), authority: "a", hasBody: false)
            try pair.pump()
            #expect(pair.serverEvents.requests[id]?.headers.first("authorization") == Array(Self.token.utf8))
            #expect(pair.serverEvents.requests[id]?.headers.first("x-request-id") == Array("request-\(index)".utf8))
        }
        #expect(pair.serverEvents.goAways.isEmpty && pair.clientEvents.goAways.isEmpty)
    }

    @Test func requestTrailersAreEncodedToo() throws {
        let pair = Self.pair(indexesAuthorization: true)
        let id = pair.client.submitRequest(request("POST", "/a", [("te", "trailers")]), authority: "a", hasBody: true)
        [UInt8](repeating: 1, count: 10).withUnsafeBytes { pair.client.enqueueData(stream: id, $0) }
        pair.client.endData(stream: id, trailers: HTTPHeaders([("X-Checksum", "abc"), ("Connection", "close")]))
        let frames = try Self.headerFrames(pair)
        #expect(frames.count == 2)
        #expect(frames.last?.flags == 0x5)   // END_STREAM | END_HEADERS
        #expect(pair.serverEvents.bodies[id]?.count == 10)
        #expect(pair.serverEvents.ended.contains(id))
        let next = pair.client.submitRequest(Self.apiRequest(1), authority: "a", hasBody: false)
        try pair.pump()
        #expect(pair.serverEvents.requests[next]?.headers.first("x-request-id") == Array("request-1".utf8))
    }
}
