import HTTP1
import Testing

@Suite struct HeadersTests {
    @Test func lookupsIgnoreCase() {
        let headers = HTTPHeaders([("Content-Type", "text/plain"), ("X-Id", "1"), ("x-id", "2")])
        #expect(headers.first("content-type") == bytes("text/plain"))
        #expect(headers.firstString("CONTENT-TYPE") == "text/plain")
        #expect(headers.values("X-ID") == [bytes("1"), bytes("2")])
        #expect(headers.contains("x-id"))
        #expect(!headers.contains("x-i"))
        #expect(headers.first("missing") == nil)
        #expect(headers.fields[0].hasName("content-type"))
        #expect(!headers.fields[0].hasName("content-typ"))
        #expect(Array(headers).count == 3)
    }

    @Test func editing() {
        var headers = HTTPHeaders([("A", "1"), ("B", "2"), ("a", "3"), ("C", "4")])
        headers.replaceOrAdd("a", "x")
        #expect(headers.fields.map(\.nameString) == ["a", "B", "C"])
        #expect(headers.firstString("A") == "x")
        headers.replaceOrAdd("D", "5")
        #expect(headers.fields.last == HTTPField("D", "5"))
        headers.add("b", "6")
        headers.remove("B")
        #expect(!headers.contains("b"))
        headers.add(HTTPField(name: bytes("E"), value: bytes("7")))
        headers.removeAll { $0.hasName("c") || $0.hasName("d") }
        #expect(headers.fields.map(\.nameString) == ["a", "E"])
    }

    @Test func connectionTokens() {
        var headers = HTTPHeaders()
        headers.add("Connection", "Keep-Alive,  Upgrade ,")
        headers.add("Host", "a")
        headers.add("connection", " , X-Custom\t,TE")
        #expect(headers.connectionTokens() == ["keep-alive", "upgrade", "x-custom", "te"])
        #expect(HTTPHeaders().connectionTokens() == [])
    }

    @Test func stringFieldsCannotInjectLines() {
        let field = HTTPField("X-Token", "abc\r\nX-Injected: 1\u{00}")
        #expect(!field.value.contains(0x0D))
        #expect(!field.value.contains(0x0A))
        #expect(!field.value.contains(0x00))
        #expect(field.valueString == "abc  X-Injected: 1 ")
    }

    @Test func reasonPhrases() {
        #expect(httpReasonPhrase(200) == "OK")
        #expect(httpReasonPhrase(404) == "Not Found")
        #expect(httpReasonPhrase(502) == "Bad Gateway")
        #expect(httpReasonPhrase(299) == "")
        #expect(HTTPResponseHead(status: 431).reason == bytes("Request Header Fields Too Large"))
        #expect(HTTPResponseHead(status: 200, reason: "Fine").reason == bytes("Fine"))
    }
}

@Suite struct SerializerTests {
    @Test func requestHeadBytes() {
        let head = HTTPRequestHead(method: "POST", target: bytes("/a?b=c"), headers: HTTPHeaders([("Host", "api"), ("Content-Length", "2")]))
        var buffer = bytes("prefix")
        HTTP1Serializer.appendRequestHead(head, to: &buffer)
        #expect(buffer == bytes("prefixPOST /a?b=c HTTP/1.1\r\nHost: api\r\nContent-Length: 2\r\n\r\n"))
    }

    @Test func responseHeadBytes() {
        var buffer: [UInt8] = []
        HTTP1Serializer.appendResponseHead(HTTPResponseHead(status: 404, headers: HTTPHeaders([("Content-Length", "0")])), to: &buffer)
        #expect(buffer == bytes("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
        buffer = []
        HTTP1Serializer.appendResponseHead(HTTPResponseHead(status: 299, version: .http1_0), to: &buffer)
        #expect(buffer == bytes("HTTP/1.0 299 \r\n\r\n"))
    }

    @Test func chunkFraming() {
        for (size, text) in [(0, "0"), (1, "1"), (15, "f"), (16, "10"), (255, "ff"), (4096, "1000"), (0x7fff_ffff, "7fffffff")] {
            var buffer: [UInt8] = []
            HTTP1Serializer.appendChunkHeader(size: size, to: &buffer)
            #expect(buffer == bytes(text + "\r\n"))
        }
        #expect(HTTP1Serializer.chunkTerminator == bytes("\r\n"))
        #expect(HTTP1Serializer.lastChunk == bytes("0\r\n\r\n"))
    }

    @Test func requestRoundTrip() throws {
        let obsText: [UInt8] = [0x61, 0xE9, 0xFF]
        var headers = HTTPHeaders([("Host", "example.com:443"), ("Transfer-Encoding", "chunked"), ("Cookie", "a=1"), ("Cookie", "b=2")])
        headers.add(HTTPField(name: bytes("X-Raw"), value: obsText))
        let head = HTTPRequestHead(method: "PATCH", target: bytes("/p%41th?q=%7B%7D"), headers: headers)
        var buffer: [UInt8] = []
        HTTP1Serializer.appendRequestHead(head, to: &buffer)
        let payload = [UInt8](repeating: 0x42, count: 300)
        HTTP1Serializer.appendChunkHeader(size: payload.count, to: &buffer)
        buffer += payload + HTTP1Serializer.chunkTerminator
        HTTP1Serializer.appendChunkHeader(size: 1, to: &buffer)
        buffer += bytes("!") + HTTP1Serializer.chunkTerminator + HTTP1Serializer.lastChunk
        let events = try parseRequests(buffer)
        #expect(events == [.head(head), .body(payload + bytes("!")), .end])
        #expect(try parseRequests(buffer, step: 1) == events)
    }

    @Test func responseRoundTrip() throws {
        let head = HTTPResponseHead(status: 201, headers: HTTPHeaders([("Content-Length", "4"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]))
        var buffer: [UInt8] = []
        HTTP1Serializer.appendResponseHead(head, to: &buffer)
        buffer += bytes("body")
        #expect(try parseResponses(buffer) == [.head(head), .body(bytes("body")), .end])
    }

    @Test func http10RoundTrip() throws {
        let head = HTTPRequestHead(method: "GET", target: bytes("/"), version: .http1_0)
        var buffer: [UInt8] = []
        HTTP1Serializer.appendRequestHead(head, to: &buffer)
        #expect(buffer == bytes("GET / HTTP/1.0\r\n\r\n"))
        #expect(try parseRequests(buffer) == [.head(head), .end])
    }
}
