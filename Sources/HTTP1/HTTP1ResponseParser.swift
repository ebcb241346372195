/// An incremental, strict HTTP/1.1 response parser (RFC 9112), for the client side.
///
/// Interim (1xx) responses are delivered as `.head` then `.end`; the final response to the
/// same request follows (RFC 9110 §15.2), so `requestMethod` is left as it is.
///
/// Like `HTTP1RequestParser`, a handle with a non-mutating `parse`: a callback may read
/// `bodyFraming` and `isIdle`, and set `requestMethod` for the next exchange.
public struct HTTP1ResponseParser: Sendable {
    private let core: HTTP1MessageParser<ResponseKind>

    public init(limits: HTTP1Limits = HTTP1Limits()) {
        core = HTTP1MessageParser(limits: limits, context: "GET")
    }

    /// Must be set before each response: the method of the request it answers (HEAD responses have no body, RFC 9112 §6.3).
    public var requestMethod: String {
        get { core.context }
        nonmutating set { core.context = newValue }
    }

    /// Same contract as `HTTP1RequestParser.parse`.
    public func parse(_ input: UnsafeRawBufferPointer, _ onEvent: (HTTP1ParseEvent<HTTPResponseHead>) throws -> HTTP1ParseAction) throws -> Int {
        try core.parse(input, onEvent)
    }

    /// The connection hit EOF. For a close-delimited body emits .end and returns true; between messages returns false;
    /// mid-message (truncated head, short Content-Length body, unterminated chunked body) throws "unexpected-eof".
    /// (A complete message whose `.end` is still pending after a `.pause` gets it here too.)
    public func finish(_ onEvent: (HTTP1ParseEvent<HTTPResponseHead>) throws -> HTTP1ParseAction) throws -> Bool {
        try core.finish(onEvent)
    }

    public var isIdle: Bool { core.isIdle }

    /// How the body of the current response is framed, set when its `.head` is delivered.
    public var bodyFraming: HTTP1BodyFraming? { core.framing }

    public var limits: HTTP1Limits {
        get { core.limits }
        nonmutating set { core.limits = newValue }
    }
}

enum ResponseKind: HTTP1MessageKind {
    static var section: HeadScanner.Section { .responseHead }

    static func makeHead(_ bytes: UnsafeRawBufferPointer, lineCount: Int, limits: HTTP1Limits, context requestMethod: String) throws(HTTP1ParseError) -> (HTTPResponseHead, HTTP1BodyFraming) {
        let base = bytes.baseAddress!
        let lineEnd = findByte(ASCII.lf, in: base, from: 0, to: bytes.count)! - 1
        var head = try parseStatusLine(base, end: lineEnd)
        let (headers, fields) = try parseFields(base, from: lineEnd + 2, to: bytes.count - 2, expectedCount: lineCount - 1)
        head.headers = headers
        return (head, try framing(of: head, fields, requestMethod: requestMethod))
    }

    /// `status-line = HTTP-version SP status-code SP [ reason-phrase ]` (RFC 9112 §4), where
    /// the SP before an empty reason may be missing: servers send "HTTP/1.1 200" and
    /// RFC 9112 §4 asks clients to accept it.
    static func parseStatusLine(_ base: UnsafeRawPointer, end: Int) throws(HTTP1ParseError) -> HTTPResponseHead {
        if findByte(ASCII.cr, in: base, from: 0, to: end) != nil { throw .bareCR }
        func byte(_ index: Int) -> UInt8 { base.load(fromByteOffset: index, as: UInt8.self) }
        guard end >= 12, let version = parseVersion(base, at: 0), byte(8) == ASCII.sp,
              byte(9) &- 0x30 < 10, byte(10) &- 0x30 < 10, byte(11) &- 0x30 < 10,
              end == 12 || byte(12) == ASCII.sp else {
            throw .invalidStatusLine
        }
        let status = Int(byte(9) &- 0x30) * 100 + Int(byte(10) &- 0x30) * 10 + Int(byte(11) &- 0x30)
        // RFC 9110 §15: status codes are 100...599.
        guard status >= 100 && status <= 599 else { throw .invalidStatusLine }
        let reasonStart = min(13, end)
        // reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )
        for index in reasonStart..<end where !isFieldValueByte(byte(index)) { throw .invalidStatusLine }
        guard version == .http1_1 || version == .http1_0 else { throw .unsupportedVersion }
        var head = HTTPResponseHead(status: status, reason: "", version: version)
        head.reason = Array(UnsafeRawBufferPointer(start: base + reasonStart, count: end - reasonStart))
        return head
    }

    /// Message body length of a response, RFC 9112 §6.3 in its order.
    static func framing(of head: HTTPResponseHead, _ fields: FramingFields, requestMethod: String) throws(HTTP1ParseError) -> HTTP1BodyFraming {
        // Rule 1: HEAD responses, 1xx, 204 and 304 end at the head, whatever the fields say.
        if requestMethod == "HEAD" || head.status < 200 || head.status == 204 || head.status == 304 { return .none }
        // Rule 2: a 2xx to CONNECT turns the connection into a tunnel: all that follows is
        // the other side's bytes, until close.
        if requestMethod == "CONNECT" && head.status < 300 { return .untilClose }
        if fields.transferEncodingCount > 0 {
            // Rule 3: both present "ought to be handled as an error"; a proxy must not relay it.
            if fields.contentLengthCount > 0 { throw .contentLengthWithTransferEncoding }
            // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
            if head.version == .http1_0 { throw .transferEncodingInHTTP10 }
            return try transferCodingFraming(head.headers)
        }
        // Rule 5: an invalid or ambiguous Content-Length is unrecoverable for a proxy (502).
        if fields.contentLengthCount > 1 { throw .conflictingContentLength }
        if fields.contentLengthCount == 1 {
            return .contentLength(try parseContentLength(head.headers.fields[fields.contentLengthIndex].value))
        }
        // Rule 8: no framing fields, the body runs until the server closes.
        return .untilClose
    }

    /// Rule 4: chunked when chunked is the final coding, close-delimited otherwise. The
    /// codings of all Transfer-Encoding fields form one list (RFC 9110 §5.3).
    static func transferCodingFraming(_ headers: HTTPHeaders) throws(HTTP1ParseError) -> HTTP1BodyFraming {
        let codings = TransferCodingList(headers)
        // RFC 9112 §7: chunked is applied at most once.
        if codings.malformed || codings.count == 0 || codings.chunkedCount > 1 { throw .invalidTransferEncoding }
        return codings.finalIsChunked ? .chunked : .untilClose
    }
}
