/// An incremental, strict HTTP/1.1 request parser (RFC 9112), for the server side.
///
/// Anything that two implementations could frame differently is refused rather than
/// repaired: that is what request smuggling feeds on.
///
/// The parser is a handle to one connection's parsing state (copies share it), and `parse`
/// is non-mutating: an `onEvent` callback may read `bodyFraming` and `isIdle` of the parser
/// that is calling it. It must not call `parse` or `finish` on it. Use it from one thread at
/// a time.
public struct HTTP1RequestParser: Sendable {
    private let core: HTTP1MessageParser<RequestKind>

    public init(limits: HTTP1Limits = HTTP1Limits()) {
        core = HTTP1MessageParser(limits: limits, context: ())
    }

    /// Parses as much of `input` as possible, calling `onEvent` synchronously. Returns the number of bytes consumed
    /// (less than input.count only when onEvent returned .pause; the caller re-feeds the rest later).
    /// The head may arrive split over many calls (the parser buffers head bytes internally, bounded by maxHeaderBytes);
    /// body bytes are NOT copied: .body points into `input`. After .end the parser is ready for the next message (pipelining).
    ///
    /// Errors thrown by `onEvent` propagate unchanged. After an `HTTP1ParseError` the parser is
    /// dead: every later call throws the same error.
    public func parse(_ input: UnsafeRawBufferPointer, _ onEvent: (HTTP1ParseEvent<HTTPRequestHead>) throws -> HTTP1ParseAction) throws -> Int {
        try core.parse(input, onEvent)
    }

    /// The client closed its side. Returns false between requests; emits a pending `.end` and
    /// returns true if the last request is complete but its `.end` was not yet delivered (after a
    /// `.pause`); throws "unexpected-eof" in the middle of a request.
    public func finish(_ onEvent: (HTTP1ParseEvent<HTTPRequestHead>) throws -> HTTP1ParseAction) throws -> Bool {
        try core.finish(onEvent)
    }

    /// No partial message buffered (between messages).
    public var isIdle: Bool { core.isIdle }

    /// How the body of the current message is framed, set when its `.head` is delivered.
    public var bodyFraming: HTTP1BodyFraming? { core.framing }

    public var limits: HTTP1Limits {
        get { core.limits }
        nonmutating set { core.limits = newValue }
    }
}

enum RequestKind: HTTP1MessageKind {
    static var section: HeadScanner.Section { .requestHead }

    static func makeHead(_ bytes: UnsafeRawBufferPointer, lineCount: Int, limits: HTTP1Limits, context: Void) throws(HTTP1ParseError) -> (HTTPRequestHead, HTTP1BodyFraming) {
        let base = bytes.baseAddress!
        let lineEnd = findByte(ASCII.lf, in: base, from: 0, to: bytes.count)! - 1
        var head = try parseRequestLine(base, end: lineEnd, limits: limits)
        let (headers, fields) = try parseFields(base, from: lineEnd + 2, to: bytes.count - 2, expectedCount: lineCount - 1)
        head.headers = headers
        return (head, try framing(of: head, fields))
    }

    /// Refuses a bad request line before the rest of the head arrives: garbage (TLS sent to a
    /// plain-text port, say) fails at once instead of at the head timeout, and an overlong
    /// target is not buffered. A complete line gets the full checks once; a partial one has its
    /// method checked as it arrives and gets 414 as soon as what follows the method is longer than
    /// any acceptable target plus " HTTP/1.1" and CR.
    static func checkIncompleteHead(_ scanner: inout HeadScanner, limits: HTTP1Limits) throws(HTTP1ParseError) {
        guard !scanner.startLineChecked else { return }
        if scanner.lineCount > 0 {
            scanner.startLineChecked = true
            try scanner.withBuffer { bytes throws(HTTP1ParseError) in
                let base = bytes.baseAddress!
                let lineEnd = findByte(ASCII.lf, in: base, from: 0, to: bytes.count)! - 1
                _ = try parseRequestLine(base, end: lineEnd, limits: limits)
            }
            return
        }
        let buffer = scanner.buffer
        if scanner.firstSpace < 0 {
            var index = scanner.spaceSearchFrom
            while index < buffer.count {
                let byte = buffer[index]
                if byte == ASCII.sp {
                    scanner.firstSpace = index
                    break
                }
                // method = token (RFC 9110 §9.1)
                if !isTchar(byte) {
                    guard byte == ASCII.cr else { throw .invalidRequestLine }
                    // A CR first may end the empty line allowed before a request; a CR last
                    // may end the line. Either way the next byte decides.
                    if index + 1 == buffer.count { break }
                    if index > 0 { throw .bareCR }
                }
                index += 1
            }
            guard scanner.firstSpace >= 0 else {
                scanner.spaceSearchFrom = index
                return
            }
        }
        if buffer.count - scanner.firstSpace - 1 > limits.maxTargetBytes + 10 { throw .targetTooLong }
    }

    /// `request-line = method SP request-target SP HTTP-version` (RFC 9112 §3), `base[0..<end]`
    /// being the line without its CRLF.
    static func parseRequestLine(_ base: UnsafeRawPointer, end: Int, limits: HTTP1Limits) throws(HTTP1ParseError) -> HTTPRequestHead {
        if findByte(ASCII.cr, in: base, from: 0, to: end) != nil { throw .bareCR }
        var methodEnd = 0
        while methodEnd < end && isTchar(base.load(fromByteOffset: methodEnd, as: UInt8.self)) { methodEnd += 1 }
        guard methodEnd > 0, methodEnd < end, base.load(fromByteOffset: methodEnd, as: UInt8.self) == ASCII.sp else {
            throw .invalidRequestLine
        }
        let targetStart = methodEnd + 1
        let versionStart = end - 8
        guard versionStart - 1 > targetStart,
              base.load(fromByteOffset: versionStart - 1, as: UInt8.self) == ASCII.sp,
              let version = parseVersion(base, at: versionStart) else {
            throw .invalidRequestLine
        }
        let targetEnd = versionStart - 1
        // Exactly one SP on either side of the target (RFC 9112 §3: no lenient whitespace here).
        if base.load(fromByteOffset: targetStart, as: UInt8.self) == ASCII.sp { throw .invalidRequestLine }
        if targetEnd - targetStart > limits.maxTargetBytes { throw .targetTooLong }
        // RFC 9112 §3.2 with RFC 3986: a target is visible ASCII. Spaces, controls and raw
        // UTF-8 (which some servers accept) are refused; percent-encoding is the only way.
        for index in targetStart..<targetEnd {
            let byte = base.load(fromByteOffset: index, as: UInt8.self)
            guard byte > ASCII.sp && byte < ASCII.del else { throw .invalidTarget }
        }
        // RFC 9110 §2.5 would let a server treat HTTP/1.2 as 1.1; the version is refused
        // instead, as is any other major version.
        guard version == .http1_1 || version == .http1_0 else { throw .unsupportedVersion }
        let method = String(decoding: UnsafeRawBufferPointer(start: base, count: methodEnd), as: UTF8.self)
        let target = Array(UnsafeRawBufferPointer(start: base + targetStart, count: targetEnd - targetStart))
        try checkTargetForm(target, method: method)
        return HTTPRequestHead(method: method, target: target, version: version)
    }

    /// RFC 9112 §3.2: origin-form ("/path?query"), absolute-form ("scheme:..."), authority-form
    /// ("host:port", for CONNECT and only there) or asterisk-form ("*", OPTIONS only).
    static func checkTargetForm(_ target: [UInt8], method: String) throws(HTTP1ParseError) {
        if method == "CONNECT" {
            guard target.contains(ASCII.colon), isValidHost(target) else { throw .invalidTarget }
            return
        }
        switch target[0] {
        case UInt8(ascii: "/"):
            return
        case UInt8(ascii: "*"):
            guard target.count == 1, method == "OPTIONS" else { throw .invalidTarget }
        default:
            // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then ":" (RFC 3986 §3.1).
            guard asciiLowercased(target[0]) &- 0x61 < 26 else { throw .invalidTarget }
            for byte in target.dropFirst() {
                if byte == ASCII.colon { return }
                let lower = asciiLowercased(byte)
                guard lower &- 0x61 < 26 || byte &- 0x30 < 10 || byte == 0x2B || byte == 0x2D || byte == 0x2E else { break }
            }
            throw .invalidTarget
        }
    }

    /// Host and message body rules for requests (RFC 9112 §3.2, §6.1, §6.3).
    static func framing(of head: HTTPRequestHead, _ fields: FramingFields) throws(HTTP1ParseError) -> HTTP1BodyFraming {
        // RFC 9112 §3.2: exactly one Host in HTTP/1.1; never more than one; a valid value.
        if fields.hostCount > 1 { throw .duplicateHost }
        if fields.hostCount == 0 && head.version == .http1_1 { throw .missingHost }
        if fields.hostCount == 1 && !isValidHost(head.headers.fields[fields.hostIndex].value) { throw .invalidHost }

        if fields.transferEncodingCount > 0 {
            // RFC 9112 §6.1 allows a server to drop Content-Length and go on; refusing is the
            // safe reading (§6.3 rule 3: such a message "ought to be handled as an error").
            if fields.contentLengthCount > 0 { throw .contentLengthWithTransferEncoding }
            // RFC 9112 §6.1: HTTP/1.0 had no Transfer-Encoding; its framing is faulty.
            if head.version == .http1_0 { throw .transferEncodingInHTTP10 }
            // The common case, one field saying exactly "chunked", without building the list.
            if fields.transferEncodingCount == 1, let value = head.headers.first("transfer-encoding"),
               asciiCaseInsensitiveEquals(value, "chunked" as StaticString) {
                return .chunked
            }
            let codings = TransferCodingList(head.headers)
            // RFC 9112 §6.1: chunked is applied at most once. Malformed lists and empty elements
            // are refused too: a server that reads "chunked," differently must not get to frame it.
            if codings.malformed || codings.emptyElements || codings.chunkedCount > 1 { throw .invalidTransferEncoding }
            // RFC 9112 §6.3 rule 4: when chunked is not the final coding (gzip, identity,
            // "chunked, identity", an empty value) the body length cannot be determined:
            // 400, and the connection is closed.
            guard codings.finalIsChunked else { throw .chunkedNotFinal }
            // RFC 9112 §6.1: a coding the server does not understand before the final chunked
            // ("gzip, chunked") is 501; the body could be framed, but not decoded.
            guard codings.count == 1 else { throw .unsupportedTransferEncoding }
            return .chunked
        }
        if fields.contentLengthCount > 1 { throw .conflictingContentLength }
        if fields.contentLengthCount == 1 {
            return .contentLength(try parseContentLength(head.headers.fields[fields.contentLengthIndex].value))
        }
        // RFC 9112 §6.3 rule 7: a request without either has no body.
        return .none
    }
}
