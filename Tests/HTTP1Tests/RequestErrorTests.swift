import HTTP1
import Testing

/// Every way a request is refused, with the raw bytes that trigger it. Many come from
/// llhttp's test suite and the request smuggling literature (CL.TE, TE.CL, TE.TE).
@Suite struct RequestErrorTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var raw: String
        var code: String
        var status: Int
        var limits = HTTP1Limits()
        var testDescription: String { name }
    }

    static let host = "Host: example.com\r\n"

    static let smuggling: [Case] = [
        Case(name: "CL.TE", raw: "POST / HTTP/1.1\r\n\(host)Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
             code: "content-length-with-transfer-encoding", status: 400),
        Case(name: "TE.CL", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
             code: "content-length-with-transfer-encoding", status: 400),
        Case(name: "CL.TE with an unknown coding", raw: "POST / HTTP/1.1\r\n\(host)Content-Length: 4\r\nTransfer-Encoding: xchunked\r\n\r\n",
             code: "content-length-with-transfer-encoding", status: 400),
        Case(name: "TE.TE xchunked", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: xchunked\r\n\r\n",
             code: "chunked-not-final", status: 400),
        Case(name: "TE.TE space before colon", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding : chunked\r\n\r\n",
             code: "space-before-colon", status: 400),
        Case(name: "TE.TE tab before colon", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding\t: chunked\r\n\r\n",
             code: "space-before-colon", status: 400),
        Case(name: "TE.TE second field", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n",
             code: "chunked-not-final", status: 400),
        Case(name: "TE.TE repeated chunked field", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
             code: "invalid-transfer-encoding", status: 400),
        Case(name: "TE chunked twice in a list", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked, chunked\r\n\r\n",
             code: "invalid-transfer-encoding", status: 400),
        Case(name: "TE gzip, chunked", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: gzip, chunked\r\n\r\n",
             code: "unsupported-transfer-encoding", status: 501),
        Case(name: "TE gzip", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: gzip\r\n\r\n",
             code: "chunked-not-final", status: 400),
        Case(name: "TE identity", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: identity\r\n\r\n",
             code: "chunked-not-final", status: 400),
        Case(name: "TE chunked;", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked;\r\n\r\n",
             code: "invalid-transfer-encoding", status: 400),
        Case(name: "TE chunked with a parameter", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked;q=1\r\n\r\n",
             code: "invalid-transfer-encoding", status: 400),
        Case(name: "TE empty", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: \r\n\r\n",
             code: "invalid-transfer-encoding", status: 400),
        Case(name: "TE chunked with trailing comma", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked,\r\n\r\n",
             code: "invalid-transfer-encoding", status: 400),
        // RFC 9112 §6.3 rule 4: chunked not final is 400; §6.1: an unknown coding before a final chunked is 501.
        Case(name: "TE chunked, identity", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked, identity\r\n\r\n",
             code: "chunked-not-final", status: 400),
        Case(name: "TE gzip, then chunked in a second field", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
             code: "unsupported-transfer-encoding", status: 501),
        Case(name: "TE identity, chunked", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: identity, chunked\r\n\r\n",
             code: "unsupported-transfer-encoding", status: 501),
        Case(name: "TE gzip;q=1, chunked", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: gzip;q=1, chunked\r\n\r\n",
             code: "unsupported-transfer-encoding", status: 501),
        Case(name: "TE leading comma", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: , chunked\r\n\r\n",
             code: "invalid-transfer-encoding", status: 400),
        Case(name: "TE gzip, chunked, gzip", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: gzip, chunked, gzip\r\n\r\n",
             code: "chunked-not-final", status: 400),
        Case(name: "TE chunked, then an empty field", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\nTransfer-Encoding:\r\n\r\n",
             code: "invalid-transfer-encoding", status: 400),
        Case(name: "TE with a vertical tab", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: \u{0B}chunked\r\n\r\n",
             code: "invalid-header-value", status: 400),
        Case(name: "TE with a NUL", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\u{00}\r\n\r\n",
             code: "invalid-header-value", status: 400),
        Case(name: "TE folded", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding:\r\n chunked\r\n\r\n",
             code: "obs-fold", status: 400),
        Case(name: "TE in HTTP/1.0", raw: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
             code: "transfer-encoding-in-http10", status: 400),
        Case(name: "duplicate Content-Length", raw: "POST / HTTP/1.1\r\n\(host)Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
             code: "conflicting-content-length", status: 400),
        Case(name: "different Content-Lengths", raw: "POST / HTTP/1.1\r\n\(host)Content-Length: 5\r\ncontent-length: 6\r\n\r\nhello",
             code: "conflicting-content-length", status: 400),
        Case(name: "Content-Length list", raw: "POST / HTTP/1.1\r\n\(host)Content-Length: 5, 5\r\n\r\nhello",
             code: "conflicting-content-length", status: 400),
        Case(name: "Content-Length +5", raw: "POST / HTTP/1.1\r\n\(host)Content-Length: +5\r\n\r\nhello",
             code: "invalid-content-length", status: 400),
        Case(name: "Content-Length -1", raw: "POST / HTTP/1.1\r\n\(host)Content-Length: -1\r\n\r\n",
             code: "invalid-content-length", status: 400),
        Case(name: "Content-Length with inner space", raw: "POST / HTTP/1.1\r\n\(host)Content-Length: 1 0\r\n\r\n",
             code: "invalid-content-length", status: 400),
        Case(name: "Content-Length empty", raw: "POST / HTTP/1.1\r\n\(host)Content-Length: \r\n\r\n",
             code: "invalid-content-length", status: 400),
        Case(name: "Content-Length hex", raw: "POST / HTTP/1.1\r\n\(host)Content-Length: 0x10\r\n\r\n",
             code: "invalid-content-length", status: 400),
        Case(name: "Content-Length overflow", raw: "POST / HTTP/1.1\r\n\(host)Content-Length: 18446744073709551616\r\n\r\n",
             code: "invalid-content-length", status: 400),
        Case(name: "chunk size overflow", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\nffffffffffffffff1\r\n",
             code: "chunk-size-overflow", status: 400),
        Case(name: "chunk size padded past 16 digits", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n00000000000000001\r\n",
             code: "chunk-size-overflow", status: 400),
    ]

    static let syntax: [Case] = [
        Case(name: "NUL in a value", raw: "GET / HTTP/1.1\r\n\(host)X-A: a\u{00}b\r\n\r\n", code: "invalid-header-value", status: 400),
        Case(name: "DEL in a value", raw: "GET / HTTP/1.1\r\n\(host)X-A: a\u{7F}b\r\n\r\n", code: "invalid-header-value", status: 400),
        Case(name: "bare CR in a value", raw: "GET / HTTP/1.1\r\n\(host)X-A: a\rX-B: b\r\n\r\n", code: "bare-cr", status: 400),
        Case(name: "bare CR ending a line", raw: "GET / HTTP/1.1\r\n\(host)X-A: a\r\r\n\r\n", code: "bare-cr", status: 400),
        Case(name: "bare CR in a name", raw: "GET / HTTP/1.1\r\n\(host)X\rA: a\r\n\r\n", code: "bare-cr", status: 400),
        Case(name: "bare CR in the request line", raw: "GET /a\rb HTTP/1.1\r\n\(host)\r\n", code: "bare-cr", status: 400),
        Case(name: "bare CR as the last line", raw: "GET / HTTP/1.1\r\n\(host)\r\r\n\r\n", code: "bare-cr", status: 400),
        Case(name: "bare LF everywhere", raw: "GET / HTTP/1.1\n\(host)\n", code: "bare-lf", status: 400),
        Case(name: "bare LF ending a field", raw: "GET / HTTP/1.1\r\n\(host)X-A: a\n\r\n", code: "bare-lf", status: 400),
        Case(name: "bare LF ending the head", raw: "GET / HTTP/1.1\r\n\(host)\n", code: "bare-lf", status: 400),
        Case(name: "LF in a value", raw: "GET / HTTP/1.1\r\n\(host)X-A: a\nb\r\n\r\n", code: "bare-lf", status: 400),
        Case(name: "obs-fold with SP", raw: "GET / HTTP/1.1\r\n\(host)X-A: a\r\n b\r\n\r\n", code: "obs-fold", status: 400),
        Case(name: "obs-fold with HTAB", raw: "GET / HTTP/1.1\r\n\(host)X-A: a\r\n\tb\r\n\r\n", code: "obs-fold", status: 400),
        Case(name: "whitespace before the first field", raw: "GET / HTTP/1.1\r\n \(host)\r\n", code: "obs-fold", status: 400),
        Case(name: "empty name", raw: "GET / HTTP/1.1\r\n\(host): a\r\n\r\n", code: "invalid-header-name", status: 400),
        Case(name: "no colon", raw: "GET / HTTP/1.1\r\n\(host)X-A\r\n\r\n", code: "invalid-header-name", status: 400),
        Case(name: "no colon, space", raw: "GET / HTTP/1.1\r\n\(host)X-A b\r\n\r\n", code: "invalid-header-name", status: 400),
        Case(name: "separator in a name", raw: "GET / HTTP/1.1\r\n\(host)X(A): a\r\n\r\n", code: "invalid-header-name", status: 400),
        Case(name: "obs-text in a name", raw: "GET / HTTP/1.1\r\n\(host)X-\u{E9}: a\r\n\r\n", code: "invalid-header-name", status: 400),
        Case(name: "space before colon", raw: "GET / HTTP/1.1\r\nHost : a\r\n\r\n", code: "space-before-colon", status: 400),
        Case(name: "double space after the method", raw: "GET  / HTTP/1.1\r\n\(host)\r\n", code: "invalid-request-line", status: 400),
        Case(name: "double space before the version", raw: "GET /  HTTP/1.1\r\n\(host)\r\n", code: "invalid-target", status: 400),
        Case(name: "trailing space", raw: "GET / HTTP/1.1 \r\n\(host)\r\n", code: "invalid-request-line", status: 400),
        Case(name: "leading space", raw: " GET / HTTP/1.1\r\n\(host)\r\n", code: "invalid-request-line", status: 400),
        Case(name: "tab separator", raw: "GET\t/ HTTP/1.1\r\n\(host)\r\n", code: "invalid-request-line", status: 400),
        Case(name: "HTTP/0.9 request", raw: "GET /\r\n\r\n", code: "invalid-request-line", status: 400),
        Case(name: "no target", raw: "GET HTTP/1.1\r\n\(host)\r\n", code: "invalid-request-line", status: 400),
        Case(name: "method with a separator", raw: "G(T / HTTP/1.1\r\n\(host)\r\n", code: "invalid-request-line", status: 400),
        Case(name: "lowercase protocol", raw: "GET / http/1.1\r\n\(host)\r\n", code: "invalid-request-line", status: 400),
        Case(name: "version with two digits", raw: "GET / HTTP/1.10\r\n\(host)\r\n", code: "invalid-request-line", status: 400),
        Case(name: "two empty lines first", raw: "\r\n\r\nGET / HTTP/1.1\r\n\(host)\r\n", code: "invalid-request-line", status: 400),
        Case(name: "empty line then bare LF", raw: "\r\n\nGET / HTTP/1.1\r\n\(host)\r\n", code: "bare-lf", status: 400),
        Case(name: "space in the target", raw: "GET /a b HTTP/1.1\r\n\(host)\r\n", code: "invalid-target", status: 400),
        Case(name: "raw UTF-8 in the target", raw: "GET /caf\u{E9} HTTP/1.1\r\n\(host)\r\n", code: "invalid-target", status: 400),
        Case(name: "relative target", raw: "GET index.html HTTP/1.1\r\n\(host)\r\n", code: "invalid-target", status: 400),
        Case(name: "asterisk for GET", raw: "GET * HTTP/1.1\r\n\(host)\r\n", code: "invalid-target", status: 400),
        Case(name: "CONNECT to a path", raw: "CONNECT /a HTTP/1.1\r\n\(host)\r\n", code: "invalid-target", status: 400),
        Case(name: "HTTP/2.0", raw: "GET / HTTP/2.0\r\n\(host)\r\n", code: "unsupported-version", status: 505),
        Case(name: "HTTP/1.2", raw: "GET / HTTP/1.2\r\n\(host)\r\n", code: "unsupported-version", status: 505),
        Case(name: "HTTP/0.9 version", raw: "GET / HTTP/0.9\r\n\(host)\r\n", code: "unsupported-version", status: 505),
        Case(name: "missing Host", raw: "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", code: "missing-host", status: 400),
        Case(name: "duplicate Host", raw: "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", code: "duplicate-host", status: 400),
        Case(name: "duplicate Host in HTTP/1.0", raw: "GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", code: "duplicate-host", status: 400),
        Case(name: "Host with a path", raw: "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", code: "invalid-host", status: 400),
        Case(name: "Host with userinfo", raw: "GET / HTTP/1.1\r\nHost: user@evil.example\r\n\r\n", code: "invalid-host", status: 400),
        Case(name: "Host list", raw: "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", code: "invalid-host", status: 400),
    ]

    static let limits: [Case] = [
        Case(name: "target too long", raw: "GET /\(String(repeating: "a", count: 16)) HTTP/1.1\r\n\(host)\r\n",
             code: "target-too-long", status: 414, limits: .with { $0.maxTargetBytes = 16 }),
        Case(name: "request line longer than the head limit", raw: "GET /\(String(repeating: "a", count: 200))",
             code: "target-too-long", status: 414, limits: .with { $0.maxHeaderBytes = 100; $0.maxTargetBytes = 1000 }),
        Case(name: "head too large", raw: "GET / HTTP/1.1\r\n\(host)X-A: \(String(repeating: "a", count: 100))\r\n\r\n",
             code: "header-too-large", status: 431, limits: .with { $0.maxHeaderBytes = 100 }),
        Case(name: "head one byte too large", raw: "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
             code: "header-too-large", status: 431, limits: .with { $0.maxHeaderBytes = 26 }),
        Case(name: "unterminated head too large", raw: "GET / HTTP/1.1\r\n\(host)X-A: \(String(repeating: "a", count: 100))",
             code: "header-too-large", status: 431, limits: .with { $0.maxHeaderBytes = 100 }),
        Case(name: "too many fields", raw: "GET / HTTP/1.1\r\n\(host)A: 1\r\nB: 2\r\nC: 3\r\n\r\n",
             code: "too-many-headers", status: 431, limits: .with { $0.maxHeaders = 3 }),
        Case(name: "Content-Length above the body limit", raw: "POST / HTTP/1.1\r\n\(host)Content-Length: 11\r\n\r\n",
             code: "body-too-large", status: 413, limits: .with { $0.maxBodyBytes = 10 }),
        Case(name: "chunks above the body limit", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n5\r\n",
             code: "body-too-large", status: 413, limits: .with { $0.maxBodyBytes = 10 }),
        Case(name: "huge chunk with a body limit", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
             code: "body-too-large", status: 413, limits: .with { $0.maxBodyBytes = 1 << 20 }),
        Case(name: "chunk extensions too long", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n5;a=b;c=ddddd\r\nhello\r\n0\r\n\r\n",
             code: "chunk-extension-too-long", status: 400, limits: .with { $0.maxChunkExtensionBytes = 8 }),
        Case(name: "trailers too large", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n0\r\nX-T: \(String(repeating: "t", count: 40))\r\n\r\n",
             code: "trailer-too-large", status: 431, limits: .with { $0.maxTrailerBytes = 32 }),
        Case(name: "too many trailers", raw: "POST / HTTP/1.1\r\n\(host)Transfer-Encoding: chunked\r\n\r\n0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
             code: "too-many-headers", status: 431, limits: .with { $0.maxHeaders = 2 }),
    ]

    static let chunked: [Case] = [
        Case(name: "chunk size not hex", raw: "x\r\n", code: "invalid-chunk-size", status: 400),
        Case(name: "empty chunk size", raw: "\r\n", code: "invalid-chunk-size", status: 400),
        Case(name: "space before the chunk size", raw: " 5\r\nhello\r\n0\r\n\r\n", code: "invalid-chunk-size", status: 400),
        Case(name: "space after the chunk size", raw: "5 \r\nhello\r\n0\r\n\r\n", code: "invalid-chunk-size", status: 400),
        Case(name: "0x prefix", raw: "0x5\r\nhello\r\n0\r\n\r\n", code: "invalid-chunk-size", status: 400),
        Case(name: "signed chunk size", raw: "-5\r\nhello\r\n0\r\n\r\n", code: "invalid-chunk-size", status: 400),
        Case(name: "bare LF after the chunk size", raw: "5\nhello\r\n0\r\n\r\n", code: "bare-lf", status: 400),
        Case(name: "bare CR after the chunk size", raw: "5\rhello\r\n0\r\n\r\n", code: "bare-cr", status: 400),
        Case(name: "data longer than the size", raw: "5\r\nhelloX\r\n0\r\n\r\n", code: "missing-chunk-crlf", status: 400),
        Case(name: "data followed by CR only", raw: "5\r\nhello\rX\r\n0\r\n\r\n", code: "missing-chunk-crlf", status: 400),
        Case(name: "data followed by LF only", raw: "5\r\nhello\n0\r\n\r\n", code: "missing-chunk-crlf", status: 400),
        Case(name: "empty extension", raw: "5;\r\nhello\r\n0\r\n\r\n", code: "invalid-chunk-extension", status: 400),
        Case(name: "whitespace before an extension", raw: "5 ;a\r\nhello\r\n0\r\n\r\n", code: "invalid-chunk-size", status: 400),
        Case(name: "whitespace inside an extension", raw: "5; a=b\r\nhello\r\n0\r\n\r\n", code: "invalid-chunk-extension", status: 400),
        Case(name: "extension without a value", raw: "5;a=\r\nhello\r\n0\r\n\r\n", code: "invalid-chunk-extension", status: 400),
        Case(name: "unterminated quoted extension", raw: "5;a=\"b\r\nhello\r\n0\r\n\r\n", code: "invalid-chunk-extension", status: 400),
        Case(name: "NUL in an extension", raw: "5;a=\"\u{00}\"\r\nhello\r\n0\r\n\r\n", code: "invalid-chunk-extension", status: 400),
        Case(name: "bare LF in an extension", raw: "5;a\nhello\r\n0\r\n\r\n", code: "bare-lf", status: 400),
        Case(name: "folded trailer", raw: "0\r\nX-T: a\r\n b\r\n\r\n", code: "obs-fold", status: 400),
        Case(name: "bare LF in the trailers", raw: "0\r\nX-T: a\n\r\n", code: "bare-lf", status: 400),
        Case(name: "invalid trailer name", raw: "0\r\nX T: a\r\n\r\n", code: "invalid-header-name", status: 400),
        Case(name: "NUL in a trailer", raw: "0\r\nX-T: \u{00}\r\n\r\n", code: "invalid-header-value", status: 400),
        Case(name: "last chunk without CRLF", raw: "0\r\nGET / HTTP/1.1\r\n\(host)\r\n", code: "invalid-header-name", status: 400),
    ]

    @Test(arguments: smuggling + syntax + limits)
    func refused(_ item: Case) {
        let error = requestError(item.raw, limits: item.limits)
        #expect(error?.code == item.code)
        #expect(error?.status == item.status)
    }

    @Test(arguments: chunked)
    func refusedChunkedBody(_ item: Case) {
        let raw = "POST / HTTP/1.1\r\n\(Self.host)Transfer-Encoding: chunked\r\n\r\n" + item.raw
        let error = requestError(raw, limits: item.limits)
        #expect(error?.code == item.code)
        #expect(error?.status == item.status)
    }

    @Test func transferEncodingWithTabIsOWS() throws {
        let events = try parseRequests("POST / HTTP/1.1\r\n\(Self.host)Transfer-Encoding:\tchunked\r\n\r\n1\r\nx\r\n0\r\n\r\n")
        #expect(events.dropFirst() == [.body(bytes("x")), .end])
    }

    @Test func contentLengthTooLargeIsRefusedBeforeTheHead() {
        let parser = HTTP1RequestParser(limits: .with { $0.maxBodyBytes = 10 })
        var heads = 0
        #expect(throws: HTTP1ParseError.self) {
            try bytes("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n").withUnsafeBytes { buffer in
                try parser.parse(buffer) { event in
                    if case .head = event { heads += 1 }
                    return .proceed
                }
            }
        }
        #expect(heads == 0)
    }

    @Test func targetTooLongIsNoticedBeforeTheLineEnds() {
        let parser = HTTP1RequestParser(limits: .with { $0.maxTargetBytes = 32 })
        let partial = bytes("GET /" + String(repeating: "a", count: 60))
        let error = #expect(throws: HTTP1ParseError.self) {
            try partial.withUnsafeBytes { buffer in try parser.parse(buffer) { _ in .proceed } }
        }
        #expect(error?.code == "target-too-long")
    }

    @Test func garbageFailsBeforeTheLineEnds() {
        // The start of a TLS ClientHello sent to a plain-text port.
        let parser = HTTP1RequestParser()
        let error = #expect(throws: HTTP1ParseError.self) {
            try [0x16, 0x03, 0x01, 0x02, 0x00, 0x01].withUnsafeBytes { buffer in try parser.parse(buffer) { _ in .proceed } }
        }
        #expect(error?.code == "invalid-request-line")
        #expect(requestError("GE\rT / HTTP/1.1\r\nHost: a\r\n\r\n")?.code == "bare-cr")
        #expect(requestError("\r\n\rGET")?.code == nil)
    }

    @Test func aFailedParserStaysFailed() {
        let parser = HTTP1RequestParser()
        let first = #expect(throws: HTTP1ParseError.self) {
            try bytes("GET / HTTP/1.1\nHost: a\n\n").withUnsafeBytes { buffer in try parser.parse(buffer) { _ in .proceed } }
        }
        let second = #expect(throws: HTTP1ParseError.self) {
            try bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n").withUnsafeBytes { buffer in try parser.parse(buffer) { _ in .proceed } }
        }
        #expect(first?.code == "bare-lf")
        #expect(first == second)
        #expect(!parser.isIdle)
    }

    @Test func truncatedRequestIsUnexpectedEOF() {
        for raw in ["GET / HTTP/1.1\r\nHost: a\r\n", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nabc",
                    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n"] {
            let parser = HTTP1RequestParser()
            let error = #expect(throws: HTTP1ParseError.self) {
                try bytes(raw).withUnsafeBytes { buffer in _ = try parser.parse(buffer) { _ in .proceed } }
                _ = try parser.finish { _ in .proceed }
            }
            #expect(error?.code == "unexpected-eof")
        }
    }

    @Test func messagesNeverQuoteValues() {
        let secret = "Bearer s3cr3t-t0ken"
        for raw in ["GET / HTTP/1.1\r\nHost: a\r\nAuthorization: \(secret)\u{00}\r\n\r\n",
                    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \(secret)\r\n\r\n",
                    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \(secret)\r\n\r\n"] {
            let error = requestError(raw)
            #expect(error != nil)
            #expect(error?.message.contains("s3cr3t") == false)
            #expect(error?.description.contains("s3cr3t") == false)
        }
    }
}
