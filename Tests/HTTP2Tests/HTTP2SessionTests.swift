import HTTP1
import HTTP2
import TestSupport
import Testing

/// Everything a session reported, in order.
final class Recorder: HTTP2SessionDelegate {
    var requests: [Int32: HTTPRequestHead] = [:]
    var requestEndStream: [Int32: Bool] = [:]
    var refused: [Int32: HTTP1ParseError] = [:]
    var responses: [Int32: HTTPResponseHead] = [:]
    var bodies: [Int32: [UInt8]] = [:]
    var ended: Set<Int32> = []
    var closed: [Int32: UInt32] = [:]
    var goAways: [(Int32, UInt32)] = []
    var writable: [Int32] = []
    /// When false, received DATA is kept unacknowledged (a paused consumer).
    var consumes = true
    var unconsumed: [Int32: Int] = [:]
    weak var session: HTTP2Session?

    func http2RequestHead(stream: Int32, head: HTTPRequestHead, endStream: Bool) {
        requests[stream] = head
        requestEndStream[stream] = endStream
    }
    func http2RequestRefused(stream: Int32, error: HTTP1ParseError) { refused[stream] = error }
    func http2ResponseHead(stream: Int32, head: HTTPResponseHead, endStream: Bool) {
        responses[stream] = head
        if endStream { ended.insert(stream) }
    }
    func http2Data(stream: Int32, bytes: UnsafeRawBufferPointer) {
        bodies[stream, default: []].append(contentsOf: bytes)
        if consumes { session?.consume(stream: stream, count: bytes.count) } else { unconsumed[stream, default: 0] += bytes.count }
    }
    func http2StreamEnded(stream: Int32) { ended.insert(stream) }
    func http2StreamClosed(stream: Int32, errorCode: UInt32) { closed[stream] = errorCode }
    func http2GoAway(lastStreamID: Int32, errorCode: UInt32) { goAways.append((lastStreamID, errorCode)) }
    func http2StreamWritable(stream: Int32) { writable.append(stream) }

    func consumeAll() {
        for (stream, count) in unconsumed { session?.consume(stream: stream, count: count) }
        unconsumed = [:]
    }
}

/// A client session and a server session joined in memory.
struct Pair {
    let client: HTTP2Session
    let server: HTTP2Session
    let clientEvents = Recorder()
    let serverEvents = Recorder()

    init(settings: HTTP2Settings = HTTP2Settings(), clientSettings: HTTP2Settings = HTTP2Settings()) {
        client = HTTP2Session(role: .client, settings: clientSettings)
        server = HTTP2Session(role: .server, settings: settings)
        client.delegate = clientEvents
        server.delegate = serverEvents
        clientEvents.session = client
        serverEvents.session = server
    }

    /// Moves bytes both ways until neither side has anything to send. The client's first bytes
    /// are preceded by the connection preface, as on a socket.
    func pump(maxRounds: Int = 10_000) throws {
        for _ in 0..<maxRounds {
            var toServer: [UInt8] = []
            var toClient: [UInt8] = []
            try client.send(into: &toServer)
            try server.send(into: &toClient)
            if toServer.isEmpty && toClient.isEmpty { return }
            try toServer.withUnsafeBytes { try server.receive($0) }
            try toClient.withUnsafeBytes { try client.receive($0) }
        }
    }
}

func request(_ method: String, _ target: String, _ headers: [(String, String)] = []) -> HTTPRequestHead {
    HTTPRequestHead(method: method, target: Array(target.utf8), headers: HTTPHeaders(headers))
}

typealias Fields = [(String, String)]
private let ordinary: Fields = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a")]

/// Requests RFC 9113 §8.1.1 calls malformed.
let malformedCases: [(String, Fields)] = [
    ("uppercase name", ordinary + [("X-Upper", "1")]),
    ("missing :path", [(":method", "GET"), (":scheme", "http"), (":authority", "a")]),
    ("connection-specific field", ordinary + [("connection", "close")]),
    ("te other than trailers", ordinary + [("te", "gzip")]),
    ("pseudo-header after a field", [(":method", "GET"), (":scheme", "http"), ("accept", "*/*"), (":path", "/"), (":authority", "a")]),
    ("duplicate :path", ordinary + [(":path", "/x")]),
    ("unknown pseudo-header", ordinary + [(":foo", "1")]),
    ("response pseudo-header", ordinary + [(":status", "200")]),
    ("host differs from :authority", [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a.example"), ("host", "b.example")]),
    ("newline in a value", ordinary + [("x-a", "1\r\nx-b: 2")]),
    ("empty :path", [(":method", "GET"), (":scheme", "http"), (":path", ""), (":authority", "a")]),
]

@Suite struct HTTP2SessionTests {
    @Test func requestAndResponseWithBodies() throws {
        let pair = Pair()
        let id = pair.client.submitRequest(request("POST", "/suppliers-api-2024v2/x?y=1", [("Content-Type", "text/plain"), ("Cookie", "a=1"), ("cookie", "b=2")]),
                                           authority: "proxy.example:8080", hasBody: true)
        #expect(id == 1)
        Array("hello ".utf8).withUnsafeBytes { pair.client.enqueueData(stream: id, $0) }
        Array("world".utf8).withUnsafeBytes { pair.client.enqueueData(stream: id, $0) }
        pair.client.endData(stream: id)
        try pair.pump()

        let head = try #require(pair.serverEvents.requests[id])
        #expect(head.method == "POST")
        #expect(head.targetString == "/suppliers-api-2024v2/x?y=1")
        #expect(head.version == HTTPVersion(major: 2, minor: 0))
        #expect(head.headers.firstString("host") == "proxy.example:8080")
        #expect(head.headers.firstString("content-type") == "text/plain")
        // RFC 9113 §8.2.3: cookie crumbs are joined for HTTP/1.1.
        #expect(head.headers.firstString("cookie") == "a=1; b=2")
        #expect(pair.serverEvents.requestEndStream[id] == false)
        #expect(pair.serverEvents.bodies[id].map { String(decoding: $0, as: UTF8.self) } == "hello world")
        #expect(pair.serverEvents.ended.contains(id))

        var responseHeaders = HTTPHeaders([("Content-Type", "application/json"), ("Connection", "close, X-Hop"), ("X-Hop", "1"),
                                           ("Transfer-Encoding", "chunked"), ("Keep-Alive", "timeout=5"), ("X-Kept", "yes")])
        responseHeaders.add("Set-Cookie", "c=3")
        pair.server.submitResponse(stream: id, status: 201, headers: responseHeaders, hasBody: true)
        Array("{\"ok\":true}".utf8).withUnsafeBytes { pair.server.enqueueData(stream: id, $0) }
        pair.server.endData(stream: id)
        try pair.pump()

        let response = try #require(pair.clientEvents.responses[id])
        #expect(response.status == 201)
        #expect(response.headers.firstString("content-type") == "application/json")
        #expect(response.headers.firstString("x-kept") == "yes")
        #expect(response.headers.firstString("set-cookie") == "c=3")
        // RFC 9113 §8.2.2: connection-specific fields (and those Connection names) are not sent.
        for name in ["connection", "x-hop", "transfer-encoding", "keep-alive"] {
            #expect(!response.headers.contains(name), "\(name) must not be sent over HTTP/2")
        }
        #expect(pair.clientEvents.bodies[id].map { String(decoding: $0, as: UTF8.self) } == "{\"ok\":true}")
        #expect(pair.clientEvents.ended.contains(id))
        #expect(pair.clientEvents.closed[id] == HTTP2ErrorCode.noError)
        #expect(pair.serverEvents.closed[id] == HTTP2ErrorCode.noError)
    }

    @Test func responseWithoutBodyEndsWithTheHead() throws {
        let pair = Pair()
        let id = pair.client.submitRequest(request("HEAD", "/x"), authority: "a", hasBody: false)
        try pair.pump()
        #expect(pair.serverEvents.requestEndStream[id] == true)
        pair.server.submitResponse(stream: id, status: 200, headers: HTTPHeaders([("Content-Length", "42")]), hasBody: false)
        try pair.pump()
        #expect(pair.clientEvents.responses[id]?.headers.firstString("content-length") == "42")
        #expect(pair.clientEvents.ended.contains(id))
        #expect(pair.clientEvents.closed[id] == HTTP2ErrorCode.noError)
    }

    @Test func fiveMebibytesEachWayUnderFlowControl() throws {
        let pair = Pair()
        let size = 5 << 20
        let body = (0..<size).map { UInt8($0 % 251) }
        // Upload: the server's consumer is paused, so the client may send one stream window only.
        pair.serverEvents.consumes = false
        let id = pair.client.submitRequest(request("PUT", "/upload"), authority: "a", hasBody: true)
        body.withUnsafeBytes { pair.client.enqueueData(stream: id, $0) }
        pair.client.endData(stream: id)
        try pair.pump()
        let held = pair.serverEvents.bodies[id]?.count ?? 0
        #expect(held == 1 << 20, "one initial stream window (1 MiB), got \(held)")
        #expect(pair.client.queuedBytes(stream: id) == size - held)
        // Resuming acknowledges the held bytes; from then on every byte is consumed at once.
        pair.serverEvents.consumes = true
        pair.serverEvents.consumeAll()
        try pair.pump()
        #expect(pair.serverEvents.bodies[id] == body)
        #expect(pair.serverEvents.ended.contains(id))

        // Download: the client (default 64 KiB window) acknowledges as it reads.
        pair.server.submitResponse(stream: id, status: 200, headers: HTTPHeaders(), hasBody: true)
        body.withUnsafeBytes { pair.server.enqueueData(stream: id, $0) }
        #expect(pair.server.queuedBytes(stream: id) == size)
        pair.server.endData(stream: id)
        try pair.pump()
        #expect(pair.server.queuedBytes(stream: id) == 0)
        #expect(pair.clientEvents.bodies[id]?.count == size)
        #expect(pair.clientEvents.bodies[id] == body)
        #expect(pair.clientEvents.closed[id] == HTTP2ErrorCode.noError)
        // The producer was told, once the queue fell below the low-water mark.
        #expect(pair.serverEvents.writable.contains(id))
    }

    /// With `recyclesAllocations` nghttp2's blocks come from the session's pool: rounds of more
    /// streams than a size class keeps (so blocks are both reused and given back), header
    /// values of every size (small blocks, and large ones that are never kept), bodies.
    @Test func manyStreamsWithRecycledAllocations() throws {
        var settings = HTTP2Settings()
        settings.recyclesAllocations = true
        settings.maxConcurrentStreams = 200
        let pair = Pair(settings: settings, clientSettings: settings)
        for round in 0..<3 {
            var ids: [Int32] = []
            for index in 0..<150 {
                let value = String(repeating: "v", count: (index * 37 + round) % 2000)
                let id = pair.client.submitRequest(request("POST", "/r\(round)/\(index)", [("x-size", value)]), authority: "a", hasBody: true)
                #expect(id > 0)
                Array("body \(round) \(index)".utf8).withUnsafeBytes { pair.client.enqueueData(stream: id, $0) }
                pair.client.endData(stream: id)
                ids.append(id)
            }
            try pair.pump()
            for (index, id) in ids.enumerated() {
                let head = try #require(pair.serverEvents.requests[id])
                #expect(head.targetString == "/r\(round)/\(index)")
                #expect(head.headers.firstString("x-size")?.count == (index * 37 + round) % 2000)
                #expect(pair.serverEvents.bodies[id].map { String(decoding: $0, as: UTF8.self) } == "body \(round) \(index)")
                let echo = String(repeating: "e", count: (index * 53 + round) % 1500)
                pair.server.submitResponse(stream: id, status: 200, headers: HTTPHeaders([("x-echo", echo)]), hasBody: true)
                Array("answer \(index)".utf8).withUnsafeBytes { pair.server.enqueueData(stream: id, $0) }
                pair.server.endData(stream: id)
            }
            try pair.pump()
            for (index, id) in ids.enumerated() {
                #expect(pair.clientEvents.responses[id]?.headers.firstString("x-echo")?.count == (index * 53 + round) % 1500)
                #expect(pair.clientEvents.bodies[id].map { String(decoding: $0, as: UTF8.self) } == "answer \(index)")
                #expect(pair.clientEvents.closed[id] == HTTP2ErrorCode.noError)
            }
        }
        #expect(pair.client.openStreams == 0)
        #expect(pair.server.openStreams == 0)
    }

    @Test func streamResetBothWays() throws {
        let pair = Pair()
        let first = pair.client.submitRequest(request("POST", "/a"), authority: "a", hasBody: true)
        let second = pair.client.submitRequest(request("GET", "/b"), authority: "a", hasBody: false)
        try pair.pump()
        #expect(pair.serverEvents.requests.count == 2)
        // The client gives up on the first: the server hears the reset code.
        pair.client.reset(stream: first, errorCode: HTTP2ErrorCode.cancel)
        try pair.pump()
        #expect(pair.serverEvents.closed[first] == HTTP2ErrorCode.cancel)
        // The server breaks off the second mid-response: the client sees INTERNAL_ERROR, not an end.
        pair.server.submitResponse(stream: second, status: 200, headers: HTTPHeaders([("Content-Length", "100")]), hasBody: true)
        Array(repeating: UInt8(7), count: 10).withUnsafeBytes { pair.server.enqueueData(stream: second, $0) }
        try pair.pump()
        pair.server.reset(stream: second, errorCode: HTTP2ErrorCode.internalError)
        try pair.pump()
        #expect(pair.clientEvents.bodies[second]?.count == 10)
        #expect(!pair.clientEvents.ended.contains(second))
        #expect(pair.clientEvents.closed[second] == HTTP2ErrorCode.internalError)
    }

    @Test func serverAnswersBeforeTheBodyEndsAndStopsIt() throws {
        let pair = Pair()
        let id = pair.client.submitRequest(request("POST", "/a"), authority: "a", hasBody: true)
        Array("part".utf8).withUnsafeBytes { pair.client.enqueueData(stream: id, $0) }
        try pair.pump()
        pair.server.submitResponse(stream: id, status: 413, headers: HTTPHeaders(), hasBody: false)
        try pair.pump()
        // RFC 9113 §8.1: a complete response, then RST_STREAM(NO_ERROR) for the unread body.
        #expect(pair.clientEvents.responses[id]?.status == 413)
        #expect(pair.clientEvents.closed[id] == HTTP2ErrorCode.noError)
        #expect(pair.server.openStreams == 0)
    }

    @Test func goAwayLetsStreamsInProgressFinish() throws {
        let pair = Pair()
        let id = pair.client.submitRequest(request("GET", "/a"), authority: "a", hasBody: false)
        try pair.pump()
        pair.server.goAway()
        try pair.pump()
        #expect(pair.clientEvents.goAways.count == 1)
        #expect(pair.clientEvents.goAways.first?.0 == id)
        #expect(pair.clientEvents.goAways.first?.1 == HTTP2ErrorCode.noError)
        // No new stream may start; the one in progress still completes.
        let late = pair.client.submitRequest(request("GET", "/b"), authority: "a", hasBody: false)
        try pair.pump()
        #expect(pair.serverEvents.requests[late] == nil)
        pair.server.submitResponse(stream: id, status: 200, headers: HTTPHeaders(), hasBody: false)
        try pair.pump()
        #expect(pair.clientEvents.responses[id]?.status == 200)
        #expect(!pair.server.wantsRead && !pair.server.wantsWrite)
    }

    @Test(arguments: malformedCases)
    func malformedRequestsAreReset(_ name: String, _ fields: [(String, String)]) throws {
        // RFC 9113 §8.1.1: a malformed request is a stream error of type PROTOCOL_ERROR.
        let server = HTTP2Session(role: .server)
        let events = Recorder()
        server.delegate = events
        let input = http2ClientPreface + RawFrame.settings + RawFrame.headers(stream: 1, fields)
        try input.withUnsafeBytes { try server.receive($0) }
        var output: [UInt8] = []
        try server.send(into: &output)
        #expect(events.requests.isEmpty, "\(name): must not reach the application")
        let reset = RawFrame.parse(output).first { $0.type == 0x3 && $0.stream == 1 }
        #expect(reset?.payload == [0, 0, 0, 1], "\(name): RST_STREAM(PROTOCOL_ERROR) expected")
    }

    @Test func aBadPrefaceIsAConnectionError() throws {
        let server = HTTP2Session(role: .server)
        let input = Array("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n".utf8) + RawFrame.settings
        #expect(throws: HTTP2SessionError.self) { try input.withUnsafeBytes { try server.receive($0) } }
    }

    @Test func limitsRefuseTheRequestWithAStatus() throws {
        var settings = HTTP2Settings()
        settings.maxHeaders = 3
        settings.maxTargetBytes = 16
        let pair = Pair(settings: settings)
        let many = pair.client.submitRequest(request("GET", "/a", [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]), authority: "a", hasBody: false)
        let long = pair.client.submitRequest(request("GET", "/" + String(repeating: "x", count: 20)), authority: "a", hasBody: false)
        try pair.pump()
        #expect(pair.serverEvents.requests.isEmpty)
        #expect(pair.serverEvents.refused[many]?.status == 431)
        #expect(pair.serverEvents.refused[long]?.status == 414)
    }
}
