import HTTP1
import Testing

@Suite struct ResponseParserTests {
    @Test func contentLengthBody() throws {
        let events = try parseResponses("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
        let expected = HTTPResponseHead(status: 200, reason: "OK", version: .http1_1,
                                        headers: HTTPHeaders([("Content-Type", "text/plain"), ("Content-Length", "5")]))
        #expect(events == [.head(expected), .body(bytes("hello")), .end])
    }

    @Test func chunkedBody() throws {
        let text = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\nExpires: never\r\n\r\n"
        for step in [nil, 1, 3] as [Int?] {
            let events = try parseResponses(text, step: step)
            #expect(events.dropFirst() == [.body(bytes("Wikipedia")), .trailers([HTTPField("Expires", "never")]), .end])
        }
        // An empty trailer section: no trailers event.
        let plain = try parseResponses("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
        #expect(plain.dropFirst() == [.body(bytes("ok")), .end])
    }

    @Test func finalCodingDecidesFraming() throws {
        let parser = HTTP1ResponseParser()
        var framings: [HTTP1BodyFraming?] = []
        let text = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
            + "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\ntransfer-encoding: CHUNKED\r\n\r\n0\r\n\r\n"
            + "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nrest"
        _ = try bytes(text).withUnsafeBytes { buffer in
            try parser.parse(buffer) { event in
                if case .head = event { framings.append(parser.bodyFraming) }
                return .proceed
            }
        }
        #expect(framings == [.chunked, .chunked, .untilClose])
    }

    @Test func untilCloseEndsAtFinish() throws {
        let events = try parseResponses("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>partial", step: 4, finish: true)
        #expect(events.dropFirst() == [.body(bytes("<html>partial")), .end])
        let parser = HTTP1ResponseParser()
        _ = try bytes("HTTP/1.0 200 OK\r\n\r\nabc").withUnsafeBytes { buffer in try parser.parse(buffer) { _ in .proceed } }
        #expect(parser.bodyFraming == .untilClose)
        var ended = false
        #expect(try parser.finish { event in
            if case .end = event { ended = true }
            return .proceed
        } == true)
        #expect(ended)
        #expect(parser.isIdle)
    }

    @Test func finishBetweenMessagesReturnsFalse() throws {
        let parser = HTTP1ResponseParser()
        #expect(try parser.finish { _ in .proceed } == false)
        _ = try bytes("HTTP/1.1 204 No Content\r\n\r\n").withUnsafeBytes { buffer in try parser.parse(buffer) { _ in .proceed } }
        #expect(parser.isIdle)
        #expect(try parser.finish { _ in .proceed } == false)
    }

    @Test func headResponseHasNoBody() throws {
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        let events = try parseResponses(text, method: "HEAD")
        #expect(events.count == 4)
        #expect(events[1] == .end)
        #expect(events[3] == .end)
    }

    @Test(arguments: [204, 304, 101, 103])
    func statusesWithoutBody(status: Int) throws {
        let parser = HTTP1ResponseParser()
        var events: [ResponseEvent] = []
        let text = "HTTP/1.1 \(status) X\r\nContent-Length: 10\r\n\r\n"
        _ = try bytes(text).withUnsafeBytes { buffer in
            try parser.parse(buffer) { event in
                record(event, into: &events)
                return .proceed
            }
        }
        #expect(events.count == 2)
        #expect(events.last == .end)
        #expect(parser.bodyFraming == HTTP1BodyFraming.none)
        #expect(parser.isIdle)
    }

    @Test func continueThenFinalResponse() throws {
        let parser = HTTP1ResponseParser()
        parser.requestMethod = "POST"
        var events: [ResponseEvent] = []
        let text = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
        for piece in pieces(bytes(text), step: 5) {
            _ = try piece.withUnsafeBytes { buffer in
                try parser.parse(buffer) { event in
                    record(event, into: &events)
                    return .proceed
                }
            }
        }
        #expect(events.count == 5)
        #expect(firstResponseHead(events)?.status == 100)
        #expect(events[1] == .end)
        #expect(firstResponseHead(Array(events[2...]))?.status == 201)
        #expect(events[3] == .body(bytes("ok")))
        #expect(events[4] == .end)
        #expect(parser.requestMethod == "POST")
    }

    /// A pool hands the connection to the next request from inside the `.end` callback.
    @Test func requestMethodMayChangeInsideTheCallback() throws {
        final class Connection {
            var parser = HTTP1ResponseParser()
            var framings: [HTTP1BodyFraming?] = []

            func feed(_ input: [UInt8]) throws {
                _ = try input.withUnsafeBytes { buffer in
                    try parser.parse(buffer) { event in
                        switch event {
                        case .head: self.framings.append(self.parser.bodyFraming)
                        case .end: self.parser.requestMethod = "HEAD"
                        case .body, .trailers: break
                        }
                        return .proceed
                    }
                }
            }
        }
        let connection = Connection()
        try connection.feed(bytes("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"))
        #expect(connection.framings == [.contentLength(2), HTTP1BodyFraming.none])
        #expect(connection.parser.isIdle)
    }

    @Test func statusLineWithoutReason() throws {
        let noSpace = firstResponseHead(try parseResponses("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"))
        #expect(noSpace?.status == 200)
        #expect(noSpace?.reason == [])
        let emptyReason = firstResponseHead(try parseResponses("HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n"))
        #expect(emptyReason?.status == 404)
        #expect(emptyReason?.reason == [])
    }

    @Test func reasonKeepsItsBytes() throws {
        let reason: [UInt8] = bytes("Not\tFound ") + [0xE9, 0x80]
        let head = firstResponseHead(try parseResponses(bytes("HTTP/1.0 404 ") + reason + bytes("\r\nContent-Length: 0\r\n\r\n")))
        #expect(head?.reason == reason)
        #expect(head?.version == .http1_0)
    }

    @Test func connectTunnel() throws {
        let parser = HTTP1ResponseParser()
        parser.requestMethod = "CONNECT"
        _ = try bytes("HTTP/1.1 200 Connection Established\r\n\r\n").withUnsafeBytes { buffer in try parser.parse(buffer) { _ in .proceed } }
        #expect(parser.bodyFraming == .untilClose)
    }

    @Test func keepAlive() throws {
        #expect(firstResponseHead(try parseResponses("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))?.keepAlive == true)
        #expect(firstResponseHead(try parseResponses("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))?.keepAlive == false)
        #expect(firstResponseHead(try parseResponses("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"))?.keepAlive == false)
        #expect(firstResponseHead(try parseResponses("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"))?.keepAlive == true)
    }

    @Test func pipelinedResponsesWithPause() throws {
        let first = bytes("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
        let input = first + bytes("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        let parser = HTTP1ResponseParser()
        let consumed = try input.withUnsafeBytes { buffer in
            try parser.parse(buffer) { event in
                if case .end = event { return .pause }
                return .proceed
            }
        }
        #expect(consumed == first.count)
        #expect(parser.isIdle)
    }

    @Test func bodyLimitAppliesToEveryFraming() {
        let limits = HTTP1Limits.with { $0.maxBodyBytes = 4 }
        #expect(responseError("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", limits: limits)?.code == "body-too-large")
        #expect(responseError("HTTP/1.1 200 OK\r\n\r\nhello", limits: limits)?.code == "body-too-large")
        #expect(responseError("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", limits: limits)?.code == "body-too-large")
    }

    @Test func truncatedMessagesAreUnexpectedEOF() {
        let truncated = [
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            "HTTP/1.1 200 OK\r\nContent-Len",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        ]
        for raw in truncated {
            #expect(responseError(raw, finish: true)?.code == "unexpected-eof", "\(raw)")
        }
    }

    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var raw: String
        var code: String
        var method = "GET"
        var testDescription: String { name }
    }

    static let refusals: [Case] = [
        Case(name: "two-digit status", raw: "HTTP/1.1 20 OK\r\n\r\n", code: "invalid-status-line"),
        Case(name: "four-digit status", raw: "HTTP/1.1 2000 OK\r\n\r\n", code: "invalid-status-line"),
        Case(name: "status below 100", raw: "HTTP/1.1 099 X\r\n\r\n", code: "invalid-status-line"),
        Case(name: "status above 599", raw: "HTTP/1.1 600 X\r\n\r\n", code: "invalid-status-line"),
        Case(name: "double space", raw: "HTTP/1.1  200 OK\r\n\r\n", code: "invalid-status-line"),
        Case(name: "lowercase protocol", raw: "http/1.1 200 OK\r\n\r\n", code: "invalid-status-line"),
        Case(name: "no space before reason", raw: "HTTP/1.1 200OK\r\n\r\n", code: "invalid-status-line"),
        Case(name: "control in reason", raw: "HTTP/1.1 200 O\u{01}K\r\n\r\n", code: "invalid-status-line"),
        Case(name: "leading empty line", raw: "\r\nHTTP/1.1 200 OK\r\n\r\n", code: "invalid-status-line"),
        Case(name: "HTTP/2.0", raw: "HTTP/2.0 200 OK\r\n\r\n", code: "unsupported-version"),
        Case(name: "bare LF", raw: "HTTP/1.1 200 OK\nContent-Length: 0\n\n", code: "bare-lf"),
        Case(name: "bare CR", raw: "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", code: "bare-cr"),
        Case(name: "obs-fold", raw: "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n", code: "obs-fold"),
        Case(name: "space before colon", raw: "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n", code: "space-before-colon"),
        Case(name: "NUL in a value", raw: "HTTP/1.1 200 OK\r\nX: \u{00}\r\n\r\n", code: "invalid-header-value"),
        Case(name: "CL and TE", raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", code: "content-length-with-transfer-encoding"),
        Case(name: "duplicate CL", raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", code: "conflicting-content-length"),
        Case(name: "CL list", raw: "HTTP/1.1 200 OK\r\nContent-Length: 5,5\r\n\r\nhello", code: "conflicting-content-length"),
        Case(name: "invalid CL", raw: "HTTP/1.1 200 OK\r\nContent-Length: 5a\r\n\r\nhello", code: "invalid-content-length"),
        Case(name: "chunked twice", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", code: "invalid-transfer-encoding"),
        Case(name: "chunked with a parameter", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;a=b\r\n\r\n", code: "invalid-transfer-encoding"),
        Case(name: "coding that is not a token", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chu\"nked\r\n\r\n", code: "invalid-transfer-encoding"),
        Case(name: "empty TE", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n", code: "invalid-transfer-encoding"),
        Case(name: "TE in HTTP/1.0", raw: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", code: "transfer-encoding-in-http10"),
        Case(name: "bad chunk size", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", code: "invalid-chunk-size"),
        Case(name: "chunk size overflow", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff1\r\n", code: "chunk-size-overflow"),
        Case(name: "missing chunk CRLF", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", code: "missing-chunk-crlf"),
    ]

    @Test(arguments: refusals)
    func refused(_ item: Case) {
        #expect(responseError(item.raw, method: item.method)?.code == item.code)
    }

    @Test func headIgnoresBrokenFramingFields() throws {
        // RFC 9112 §6.3 rule 1 comes first: these fields do not matter for HEAD, 204 and 304.
        #expect(try parseResponses("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", method: "HEAD").count == 2)
        #expect(try parseResponses("HTTP/1.1 304 Not Modified\r\nContent-Length: abc\r\n\r\n").count == 2)
    }
}
