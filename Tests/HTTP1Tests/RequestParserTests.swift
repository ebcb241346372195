import HTTP1
import Testing

@Suite struct RequestParserTests {
    @Test func getWithoutBody() throws {
        let events = try parseRequests("GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n")
        let expected = HTTPRequestHead(
            method: "GET", target: bytes("/index.html"), version: .http1_1,
            headers: HTTPHeaders([("Host", "example.com"), ("Accept", "*/*")]))
        #expect(events == [.head(expected), .end])
    }

    @Test func postWithContentLength() throws {
        let parser = HTTP1RequestParser()
        var events: [RequestEvent] = []
        var framing: HTTP1BodyFraming?
        let input = bytes("POST /submit HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world")
        let consumed = try input.withUnsafeBytes { buffer in
            try parser.parse(buffer) { event in
                if case .head = event { framing = parser.bodyFraming }
                record(event, into: &events)
                return .proceed
            }
        }
        #expect(consumed == input.count)
        #expect(framing == .contentLength(11))
        #expect(events.count == 3)
        #expect(events[1] == .body(bytes("hello world")))
        #expect(events[2] == .end)
        #expect(parser.isIdle)
    }

    @Test func contentLengthZeroEndsAtOnce() throws {
        let events = try parseRequests("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
        #expect(events.count == 2)
        #expect(events.last == .end)
    }

    @Test func leadingZerosInContentLength() throws {
        let events = try parseRequests("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 003\r\n\r\nabc")
        #expect(events.dropFirst() == [.body(bytes("abc")), .end])
    }

    @Test func chunkedBodyWithExtensionsAndTrailers() throws {
        let text = "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "5;name=value;flag\r\nhello\r\n"
            + "6;q=\"quoted \\\" ;str\"\r\n world\r\n"
            + "A\r\n, and more\r\n"
            + "0;last=1\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n"
        for step in [nil, 1, 2, 3, 7] as [Int?] {
            let events = try parseRequests(text, step: step)
            #expect(events.count == 4)
            #expect(events[1] == .body(bytes("hello world, and more")))
            #expect(events[2] == .trailers([HTTPField("X-Checksum", "abc"), HTTPField("X-Other", "1")]))
            #expect(events[3] == .end)
        }
    }

    @Test func chunkedCodingIsCaseInsensitiveAndTrimmed() throws {
        for value in ["chunked", "CHUNKED", "Chunked", "\tchunked", "chunked \t"] {
            let events = try parseRequests("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\(value)\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
            #expect(events.dropFirst() == [.body(bytes("abc")), .end], "\(value)")
        }
    }

    @Test func chunkSizeOfSixteenDigitsIsAccepted() throws {
        // Leading zeros are digits too; sixteen of them still fit a UInt64.
        let events = try parseRequests("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000003\r\nabc\r\n0\r\n\r\n")
        #expect(events.dropFirst() == [.body(bytes("abc")), .end])
    }

    @Test func uppercaseHexChunkSize() throws {
        let body = [UInt8](repeating: 0x61, count: 0xAB)
        let input = bytes("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nAb\r\n") + body + bytes("\r\n0\r\n\r\n")
        let events = try parseRequests(input)
        #expect(events.dropFirst() == [.body(body), .end])
    }

    @Test func pipelinedRequestsInOneBuffer() throws {
        let text = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
            + "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
            + "POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n"
            + "GET /4 HTTP/1.0\r\n\r\n"
        let events = try parseRequests(text)
        let targets = events.compactMap { event -> String? in
            if case .head(let head) = event { return head.targetString }
            return nil
        }
        #expect(targets == ["/1", "/2", "/3", "/4"])
        #expect(events.filter { $0 == .end }.count == 4)
        #expect(events.contains(.body(bytes("abc"))))
        #expect(events.contains(.body(bytes("de"))))
    }

    @Test func oneByteAtATimeGivesTheSameEvents() throws {
        let text = "\r\nPOST /a?b=%20c HTTP/1.1\r\nHost: example.com:8080\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
            + "4;ext=\"v\"\r\nwiki\r\n5\r\npedia\r\n0\r\nTrailer-A: x\r\n\r\n"
            + "PUT /b HTTP/1.1\r\nHost: example.com\r\nContent-Length: 12\r\n\r\nhello, world"
            + "GET /c HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
        let whole = try parseRequests(text)
        #expect(whole.count == 9)
        #expect(whole.contains(.trailers([HTTPField("Trailer-A", "x")])))
        for step in [1, 2, 5, 13, 64] {
            #expect(try parseRequests(text, step: step) == whole, "step \(step)")
        }
    }

    @Test func everySplitPointGivesTheSameEvents() throws {
        let input = bytes("POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n0\r\nT: 1\r\n\r\nGET /y HTTP/1.1\r\nHost: h\r\n\r\n")
        let whole = try parseRequests(input)
        for split in 1..<input.count {
            let parser = HTTP1RequestParser()
            var events: [RequestEvent] = []
            for part in [Array(input[..<split]), Array(input[split...])] {
                _ = try part.withUnsafeBytes { buffer in
                    try parser.parse(buffer) { record($0, into: &events); return .proceed }
                }
            }
            #expect(events == whole, "split at \(split)")
        }
    }

    @Test func pauseAfterEndReturnsTheConsumedCount() throws {
        let first = bytes("POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok")
        let second = bytes("GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
        let input = first + second
        let parser = HTTP1RequestParser()
        var events: [RequestEvent] = []
        let consumed = try input.withUnsafeBytes { buffer in
            try parser.parse(buffer) { event in
                record(event, into: &events)
                if case .end = event { return .pause }
                return .proceed
            }
        }
        #expect(consumed == first.count)
        #expect(parser.isIdle)
        #expect(events.count == 3)
        let rest = Array(input[consumed...])
        let consumedRest = try rest.withUnsafeBytes { buffer in
            try parser.parse(buffer) { event in
                record(event, into: &events)
                return .proceed
            }
        }
        #expect(consumedRest == second.count)
        #expect(events.count == 5)
        #expect(firstHead(Array(events[3...]))?.targetString == "/2")
    }

    @Test func pauseAfterHeadLeavesEndForTheNextCall() throws {
        let input = bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        let parser = HTTP1RequestParser()
        var events: [RequestEvent] = []
        let consumed = try input.withUnsafeBytes { buffer in
            try parser.parse(buffer) { event in
                record(event, into: &events)
                return .pause
            }
        }
        #expect(consumed == input.count)
        #expect(events.count == 1)
        #expect(!parser.isIdle)
        let more = try [UInt8]().withUnsafeBytes { buffer in
            try parser.parse(buffer) { event in
                record(event, into: &events)
                return .proceed
            }
        }
        #expect(more == 0)
        #expect(events.last == .end)
        #expect(parser.isIdle)
    }

    @Test func pauseInsideBody() throws {
        let input = bytes("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd")
        let parser = HTTP1RequestParser()
        var bodies = 0
        let consumed = try input.withUnsafeBytes { buffer in
            try parser.parse(buffer) { event in
                if case .body = event { bodies += 1; return .pause }
                return .proceed
            }
        }
        #expect(consumed == input.count)
        #expect(bodies == 1)
        #expect(!parser.isIdle)
        var ended = false
        _ = try [UInt8]().withUnsafeBytes { buffer in
            try parser.parse(buffer) { event in
                if case .end = event { ended = true }
                return .proceed
            }
        }
        #expect(ended)
    }

    @Test func http10KeepAliveRules() throws {
        func keepAlive(_ text: String) throws -> Bool? { firstHead(try parseRequests(text))?.keepAlive }
        #expect(try keepAlive("GET / HTTP/1.0\r\n\r\n") == false)
        #expect(try keepAlive("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") == true)
        #expect(try keepAlive("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n") == true)
        #expect(try keepAlive("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n") == false)
        #expect(try keepAlive("GET / HTTP/1.1\r\nHost: a\r\n\r\n") == true)
        #expect(try keepAlive("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n") == false)
        #expect(try keepAlive("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n") == false)
        #expect(try keepAlive("GET / HTTP/1.1\r\nHost: a\r\nConnection: x\r\nConnection: close\r\n\r\n") == false)
        #expect(try keepAlive("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n") == true)
    }

    @Test func http10WithoutHostIsFine() throws {
        let head = firstHead(try parseRequests("GET / HTTP/1.0\r\n\r\n"))
        #expect(head?.version == .http1_0)
        #expect(head?.headers.isEmpty == true)
    }

    @Test func targetIsKeptByteForByte() throws {
        let target = "/api/v1/trade%20items?filter=name%20eq%20%27Rose%27&$top=10&x=a%2Fb;c=d~e|f{g}"
        let head = firstHead(try parseRequests("GET \(target) HTTP/1.1\r\nHost: a\r\n\r\n"))
        #expect(head?.target == bytes(target))
        #expect(head?.targetString == target)
    }

    @Test func targetForms() throws {
        #expect(firstHead(try parseRequests("GET http://example.com/a?b HTTP/1.1\r\nHost: example.com\r\n\r\n"))?.targetString == "http://example.com/a?b")
        #expect(firstHead(try parseRequests("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"))?.targetString == "*")
        #expect(firstHead(try parseRequests("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"))?.targetString == "example.com:443")
    }

    @Test func obsTextInValueIsKept() throws {
        let value: [UInt8] = [0x63, 0x61, 0x66, 0xC3, 0xA9, 0x20, 0x80, 0xFF]  // "café" then raw obs-text
        let input = bytes("GET / HTTP/1.1\r\nHost: a\r\nX-Name: ") + value + bytes("\r\n\r\n")
        let head = firstHead(try parseRequests(input))
        #expect(head?.headers.first("x-name") == value)
    }

    @Test func fieldValuesAreTrimmedAndNamesKeepTheirCase() throws {
        let head = firstHead(try parseRequests("GET / HTTP/1.1\r\nHost:a\r\nX-Spaced: \t inner  value \t \r\nX-Empty:\r\nx-lower:  \r\n\r\n"))
        let fields = head?.headers.fields ?? []
        #expect(fields.map(\.nameString) == ["Host", "X-Spaced", "X-Empty", "x-lower"])
        #expect(fields.map(\.valueString) == ["a", "inner  value", "", ""])
    }

    @Test func duplicateFieldsKeepTheirOrder() throws {
        let head = firstHead(try parseRequests("GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1\r\nX: y\r\ncookie: b=2\r\n\r\n"))
        #expect(head?.headers.values("Cookie") == [bytes("a=1"), bytes("b=2")])
    }

    @Test func singleLeadingEmptyLineIsIgnored() throws {
        let events = try parseRequests("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(firstHead(events)?.targetString == "/")
        // Also between pipelined messages (a CRLF some clients add after a body).
        let pipelined = try parseRequests("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(pipelined.filter { $0 == .end }.count == 2)
    }

    @Test func limitsAtTheirExactBoundaryPass() throws {
        let target = "/" + String(repeating: "a", count: 15)
        #expect(try parseRequests("GET \(target) HTTP/1.1\r\nHost: a\r\n\r\n", limits: .with { $0.maxTargetBytes = 16 }).count == 2)
        let fields = (1...3).map { "X-\($0): v\r\n" }.joined()
        #expect(try parseRequests("GET / HTTP/1.1\r\nHost: a\r\n\(fields)\r\n", limits: .with { $0.maxHeaders = 4 }).count == 2)
        let head = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
        #expect(try parseRequests(head, limits: .with { $0.maxHeaderBytes = head.utf8.count }).count == 2)
        #expect(try parseRequests(head, limits: .with { $0.maxHeaderBytes = head.utf8.count }, step: 1).count == 2)
        #expect(try parseRequests("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789", limits: .with { $0.maxBodyBytes = 10 }).count == 3)
        let chunked = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n"
        #expect(try parseRequests(chunked, limits: .with { $0.maxBodyBytes = 10 }).count == 3)
    }

    @Test func bodyFramingAndIdleState() throws {
        let parser = HTTP1RequestParser()
        #expect(parser.isIdle)
        #expect(parser.bodyFraming == nil)
        var framings: [HTTP1BodyFraming?] = []
        let input = bytes("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n")
        _ = try input.withUnsafeBytes { buffer in
            try parser.parse(buffer) { event in
                if case .head = event { framings.append(parser.bodyFraming) }
                return .proceed
            }
        }
        #expect(framings == [.chunked])
        #expect(!parser.isIdle)
        let partialHead = bytes("GET / HTTP/1.1\r\nHo")
        let second = HTTP1RequestParser()
        _ = try partialHead.withUnsafeBytes { buffer in try second.parse(buffer) { _ in .proceed } }
        #expect(!second.isIdle)
    }

    @Test func finishBetweenAndInsideRequests() throws {
        let parser = HTTP1RequestParser()
        #expect(try parser.finish { _ in .proceed } == false)
        _ = try bytes("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab").withUnsafeBytes { buffer in
            try parser.parse(buffer) { _ in .proceed }
        }
        #expect(throws: HTTP1ParseError.self) { try parser.finish { _ in .proceed } }
    }

    @Test func errorsFromTheCallbackPropagateUnchanged() throws {
        struct Stop: Error, Equatable {}
        let parser = HTTP1RequestParser()
        #expect(throws: Stop()) {
            try bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n").withUnsafeBytes { buffer in
                try parser.parse(buffer) { _ in throw Stop() }
            }
        }
    }

    /// Connections keep the parser in a class property and look at it from inside the callback.
    @Test func callbacksMayInspectTheParserThatCallsThem() throws {
        final class Connection {
            var parser = HTTP1RequestParser()
            var seen: [(HTTP1BodyFraming?, Bool)] = []

            func feed(_ input: [UInt8]) throws {
                _ = try input.withUnsafeBytes { buffer in
                    try parser.parse(buffer) { event in
                        switch event {
                        case .head: self.seen.append((self.parser.bodyFraming, self.parser.isIdle))
                        case .end: self.seen.append((self.parser.bodyFraming, self.parser.isIdle))
                        case .body, .trailers: break
                        }
                        return .proceed
                    }
                }
            }
        }
        let connection = Connection()
        try connection.feed(bytes("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nxGET / HTTP/1.1\r\nHost: a\r\n\r\n"))
        #expect(connection.seen.map(\.0) == [.contentLength(1), .contentLength(1), HTTP1BodyFraming.none, HTTP1BodyFraming.none])
        #expect(connection.seen.map(\.1) == [false, true, false, true])
    }

    @Test func everyTcharIsAcceptedInANameAndNothingElse() throws {
        let tchars = Set(bytes("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))
        for byte in UInt8.min...UInt8.max where byte != ASCII_LF && byte != ASCII_CR && byte != 0x3A {
            let input = bytes("GET / HTTP/1.1\r\nHost: a\r\nX") + [byte] + bytes("Y: v\r\n\r\n")
            let error = requestError(input)
            if tchars.contains(byte) {
                #expect(error == nil, "byte \(byte)")
            } else {
                #expect(error?.code == "invalid-header-name", "byte \(byte)")
            }
        }
    }

    @Test func fieldValueBytes() throws {
        // HTAB, SP, VCHAR and obs-text anywhere in a value, at every offset of a word.
        for byte in UInt8.min...UInt8.max where byte != ASCII_LF {
            for position in [0, 3, 7, 8, 12, 20] {
                var value = [UInt8](repeating: 0x76, count: 24)
                value[position] = byte
                let input = bytes("GET / HTTP/1.1\r\nHost: a\r\nX: ") + value + bytes("\r\n\r\n")
                let error = requestError(input)
                if byte == 0x09 || (byte >= 0x20 && byte != 0x7F) {
                    #expect(error == nil, "byte \(byte) at \(position)")
                } else if byte == ASCII_CR {
                    #expect(error?.code == "bare-cr", "byte \(byte) at \(position)")
                } else {
                    #expect(error?.code == "invalid-header-value", "byte \(byte) at \(position)")
                }
            }
        }
    }

    @Test func targetBytes() throws {
        for byte in UInt8.min...UInt8.max where byte != ASCII_LF && byte != ASCII_CR {
            let input = bytes("GET /a") + [byte] + bytes("b HTTP/1.1\r\nHost: a\r\n\r\n")
            let error = requestError(input)
            if byte > 0x20 && byte < 0x7F {
                #expect(error == nil, "byte \(byte)")
            } else {
                #expect(error?.code == "invalid-target", "byte \(byte)")
            }
        }
    }
}

let ASCII_LF: UInt8 = 0x0A
let ASCII_CR: UInt8 = 0x0D
