/// What differs between requests and responses: the start line and the framing rules.
protocol HTTP1MessageKind {
    associatedtype Head
    associatedtype Context: Sendable
    static var section: HeadScanner.Section { get }
    /// Builds the head from its complete bytes (start line through the final CRLF) and decides
    /// how the body is framed. `lineCount` counts the start line and the field lines.
    static func makeHead(_ bytes: UnsafeRawBufferPointer, lineCount: Int, limits: HTTP1Limits, context: Context) throws(HTTP1ParseError) -> (Head, HTTP1BodyFraming)
    /// Called each time an input ends inside a head, whose bytes so far are in the scanner's
    /// buffer: a chance to refuse garbage before the whole head has arrived. Whatever it refuses
    /// must also be refused once the head is complete (so that how input is split never changes
    /// the outcome).
    static func checkIncompleteHead(_ scanner: inout HeadScanner, limits: HTTP1Limits) throws(HTTP1ParseError)
}

extension HTTP1MessageKind {
    static func checkIncompleteHead(_ scanner: inout HeadScanner, limits: HTTP1Limits) throws(HTTP1ParseError) {}
}

/// The incremental message parser both public parsers wrap: head buffering, body framing,
/// chunked decoding (RFC 9112 §7.1) and trailers.
///
/// A class, so that the public parsers can be handles whose `parse` is non-mutating: a
/// callback may then read `bodyFraming` or `isIdle`, or set `requestMethod`, on the very
/// parser that is calling it. (With a mutating `parse` on a value stored in a class, that is
/// an exclusivity violation that traps at run time.) No stored property is being accessed while
/// `onEvent` runs. One parser serves one connection on one thread at a time.
final class HTTP1MessageParser<Kind: HTTP1MessageKind>: @unchecked Sendable {
    private enum State: Sendable {
        case head
        case fixedBody
        case untilClose
        case chunkSize
        case chunkExtension
        case chunkSizeLF
        case chunkData
        case chunkDataCR
        case chunkDataLF
        case trailers
        /// The message is complete; `.end` is the next event.
        case end
    }

    /// Where in `chunk-ext` (RFC 9112 §7.1.1) the parser is. Whitespace around ";" and "="
    /// (BWS) is allowed by the grammar but refused here: no real client sends it.
    private enum ExtensionState: Sendable {
        case nameStart, name, valueStart, token, quoted, quotedEscape, afterQuoted

        /// Whether the chunk-size line may end (CR) here.
        var canEnd: Bool {
            switch self {
            case .name, .token, .afterQuoted: true
            default: false
            }
        }

        /// `chunk-ext = *( ";" chunk-ext-name [ "=" chunk-ext-val ] )`, `chunk-ext-val =
        /// token / quoted-string` (RFC 9112 §7.1.1, RFC 9110 §5.6.4), for any byte but CR.
        mutating func advance(_ byte: UInt8) throws(HTTP1ParseError) {
            if byte == ASCII.lf { throw .bareLF }
            switch self {
            case .nameStart:
                guard isTchar(byte) else { throw .invalidChunkExtension }
                self = .name
            case .name:
                if byte == ASCII.semicolon {
                    self = .nameStart
                } else if byte == ASCII.equals {
                    self = .valueStart
                } else if !isTchar(byte) {
                    throw .invalidChunkExtension
                }
            case .valueStart:
                if byte == ASCII.quote {
                    self = .quoted
                } else if isTchar(byte) {
                    self = .token
                } else {
                    throw .invalidChunkExtension
                }
            case .token:
                if byte == ASCII.semicolon {
                    self = .nameStart
                } else if !isTchar(byte) {
                    throw .invalidChunkExtension
                }
            case .quoted:
                if byte == ASCII.quote {
                    self = .afterQuoted
                } else if byte == ASCII.backslash {
                    self = .quotedEscape
                } else if !isFieldValueByte(byte) {
                    // qdtext: HTAB, SP, VCHAR except DQUOTE and "\", obs-text.
                    throw .invalidChunkExtension
                }
            case .quotedEscape:
                // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                guard isFieldValueByte(byte) else { throw .invalidChunkExtension }
                self = .quoted
            case .afterQuoted:
                guard byte == ASCII.semicolon else { throw .invalidChunkExtension }
                self = .nameStart
            }
        }
    }

    private enum Step {
        case needInput
        case head(Kind.Head)
        case body(start: Int, count: Int)
        case trailers(HTTPHeaders)
        case end
    }

    var limits: HTTP1Limits
    var context: Kind.Context
    private(set) var framing: HTTP1BodyFraming?
    private var state = State.head
    private var scanner = HeadScanner()
    /// Bytes left of the Content-Length body or of the current chunk; the chunk size being read.
    private var remaining: UInt64 = 0
    /// Body bytes announced so far (Content-Length or chunk sizes), checked against maxBodyBytes.
    private var bodyBytes: UInt64 = 0
    private var chunkDigits = 0
    private var extensionBytes = 0
    private var extensionState = ExtensionState.nameStart
    private var failure: HTTP1ParseError?

    init(limits: HTTP1Limits, context: Kind.Context) {
        self.limits = limits
        self.context = context
    }

    var isIdle: Bool {
        if case .head = state { return scanner.isEmpty && failure == nil }
        return false
    }

    func parse(_ input: UnsafeRawBufferPointer, _ onEvent: (HTTP1ParseEvent<Kind.Head>) throws -> HTTP1ParseAction) throws -> Int {
        if let failure { throw failure }
        var offset = 0
        while true {
            let step: Step
            do throws(HTTP1ParseError) {
                step = try nextStep(input, &offset)
            } catch {
                failure = error
                throw error
            }
            // The state already describes what follows the event, so an error thrown by the
            // callback leaves the parser consistent.
            let action: HTTP1ParseAction
            switch step {
            case .needInput:
                return offset
            case .head(let head):
                action = try onEvent(.head(head))
            case .body(let start, let count):
                action = try onEvent(.body(UnsafeRawBufferPointer(rebasing: input[start..<start + count])))
            case .trailers(let fields):
                action = try onEvent(.trailers(fields))
            case .end:
                action = try onEvent(.end)
            }
            if action == .pause { return offset }
        }
    }

    /// End of input. A close-delimited body ends here (RFC 9112 §6.3 rule 8); any other
    /// unfinished message is truncated (RFC 9112 §8).
    func finish(_ onEvent: (HTTP1ParseEvent<Kind.Head>) throws -> HTTP1ParseAction) throws -> Bool {
        if let failure { throw failure }
        switch state {
        case .head where scanner.isEmpty:
            return false
        case .untilClose, .end:
            endMessage()
            _ = try onEvent(.end)
            return true
        default:
            failure = .unexpectedEOF
            throw HTTP1ParseError.unexpectedEOF
        }
    }

    // MARK: Steps

    /// Consumes input up to the next event.
    private func nextStep(_ input: UnsafeRawBufferPointer, _ offset: inout Int) throws(HTTP1ParseError) -> Step {
        let count = input.count
        while true {
            switch state {
            case .end:
                endMessage()
                return .end
            case .head:
                guard offset < count else { return .needInput }
                guard case .complete(let start, let end) = try scanner.scan(input, from: offset, section: Kind.section, limits: limits) else {
                    offset = count
                    try Kind.checkIncompleteHead(&scanner, limits: limits)
                    return .needInput
                }
                let (head, framing) = try makeHead(input, start: start, end: end)
                offset = end
                try beginBody(framing)
                return .head(head)
            case .fixedBody, .chunkData:
                guard offset < count else { return .needInput }
                let start = offset
                let length = Int(min(remaining, UInt64(count - offset)))
                offset += length
                remaining -= UInt64(length)
                if remaining == 0 { state = state == .fixedBody ? .end : .chunkDataCR }
                return .body(start: start, count: length)
            case .untilClose:
                guard offset < count else { return .needInput }
                let start = offset
                try addBodyBytes(UInt64(count - offset))
                offset = count
                return .body(start: start, count: count - start)
            case .trailers:
                guard offset < count else { return .needInput }
                guard case .complete(let start, let end) = try scanner.scan(input, from: offset, section: .trailers, limits: limits) else {
                    offset = count
                    return .needInput
                }
                let fields = try parseTrailers(input, start: start, end: end)
                offset = end
                state = .end
                if !fields.isEmpty { return .trailers(fields) }
            case .chunkSize, .chunkExtension, .chunkSizeLF, .chunkDataCR, .chunkDataLF:
                guard offset < count else { return .needInput }
                try scanChunkFraming(input, &offset)
            }
        }
    }

    private func makeHead(_ input: UnsafeRawBufferPointer, start: Int, end: Int) throws(HTTP1ParseError) -> (Kind.Head, HTTP1BodyFraming) {
        let lineCount = scanner.lineCount
        let limits = self.limits
        let context = self.context
        let result: (Kind.Head, HTTP1BodyFraming)
        if scanner.isEmpty {
            // The whole head is in this input: parse it in place, no copy.
            result = try Kind.makeHead(UnsafeRawBufferPointer(rebasing: input[start..<end]), lineCount: lineCount, limits: limits, context: context)
        } else {
            scanner.append(UnsafeRawBufferPointer(rebasing: input[start..<end]))
            result = try scanner.withBuffer { bytes throws(HTTP1ParseError) in
                try Kind.makeHead(bytes, lineCount: lineCount, limits: limits, context: context)
            }
        }
        scanner.reset()
        return result
    }

    private func beginBody(_ framing: HTTP1BodyFraming) throws(HTTP1ParseError) {
        self.framing = framing
        bodyBytes = 0
        switch framing {
        case .none:
            state = .end
        case .contentLength(let length):
            // Refused before the head is delivered, so a server can answer 413 at once.
            try addBodyBytes(length)
            remaining = length
            state = length == 0 ? .end : .fixedBody
        case .chunked:
            remaining = 0
            chunkDigits = 0
            state = .chunkSize
        case .untilClose:
            state = .untilClose
        }
    }

    private func addBodyBytes(_ count: UInt64) throws(HTTP1ParseError) {
        let (total, overflow) = bodyBytes.addingReportingOverflow(count)
        if overflow { throw .bodyTooLarge }
        if let maximum = limits.maxBodyBytes, total > maximum { throw .bodyTooLarge }
        bodyBytes = total
    }

    private func endMessage() {
        state = .head
        remaining = 0
        chunkDigits = 0
    }

    // MARK: Chunked coding (RFC 9112 §7.1)

    /// Consumes chunk-size lines and the CRLF after chunk data until chunk data or the
    /// trailer section starts, or the input runs out. Works on local copies of the state:
    /// this is the one per-byte loop outside the head.
    private func scanChunkFraming(_ input: UnsafeRawBufferPointer, _ offset: inout Int) throws(HTTP1ParseError) {
        let base = input.baseAddress!
        let count = input.count
        let maxExtensionBytes = limits.maxChunkExtensionBytes
        var state = self.state
        var size = remaining
        var digits = chunkDigits
        var extensionBytes = self.extensionBytes
        var extensionState = self.extensionState
        var index = offset
        defer {
            offset = index
            self.state = state
            self.remaining = size
            self.chunkDigits = digits
            self.extensionBytes = extensionBytes
            self.extensionState = extensionState
        }
        while index < count {
            let byte = base.load(fromByteOffset: index, as: UInt8.self)
            index += 1
            switch state {
            case .chunkSize:
                // chunk-size = 1*HEXDIG: no sign, no "0x", no whitespace.
                if let digit = hexValue(byte) {
                    // 16 digits fill a UInt64; more can only be an overflow or padding meant
                    // to confuse a peer with a smaller limit ("ffffffffffffffff1").
                    guard digits < 16 else { throw .chunkSizeOverflow }
                    size = size << 4 | digit
                    digits += 1
                } else if digits == 0 {
                    throw .invalidChunkSize
                } else if byte == ASCII.cr {
                    state = .chunkSizeLF
                } else if byte == ASCII.semicolon {
                    state = .chunkExtension
                    extensionState = .nameStart
                    extensionBytes = 1
                    if extensionBytes > maxExtensionBytes { throw .chunkExtensionTooLong }
                } else if byte == ASCII.lf {
                    throw .bareLF
                } else {
                    throw .invalidChunkSize
                }
            case .chunkExtension:
                if byte == ASCII.cr {
                    guard extensionState.canEnd else { throw .invalidChunkExtension }
                    state = .chunkSizeLF
                } else {
                    extensionBytes += 1
                    if extensionBytes > maxExtensionBytes { throw .chunkExtensionTooLong }
                    try extensionState.advance(byte)
                }
            case .chunkSizeLF:
                guard byte == ASCII.lf else { throw .bareCR }
                digits = 0
                if size == 0 {
                    // last-chunk: the trailer section follows (RFC 9112 §7.1.2).
                    state = .trailers
                } else {
                    try addBodyBytes(size)
                    state = .chunkData
                }
                return
            case .chunkDataCR:
                guard byte == ASCII.cr else { throw .missingChunkCRLF }
                state = .chunkDataLF
            case .chunkDataLF:
                guard byte == ASCII.lf else { throw .missingChunkCRLF }
                state = .chunkSize
                size = 0
            default:
                index -= 1
                return
            }
        }
    }

    /// Trailer fields, with the head's checks (RFC 9112 §7.1.2).
    private func parseTrailers(_ input: UnsafeRawBufferPointer, start: Int, end: Int) throws(HTTP1ParseError) -> HTTPHeaders {
        defer { scanner.reset() }
        let count = scanner.lineCount
        guard count > 0 else { return HTTPHeaders() }
        if scanner.isEmpty {
            return try parseFields(input.baseAddress! + start, from: 0, to: end - start - 2, expectedCount: count).0
        }
        scanner.append(UnsafeRawBufferPointer(rebasing: input[start..<end]))
        return try scanner.withBuffer { bytes throws(HTTP1ParseError) in
            try parseFields(bytes.baseAddress!, from: 0, to: bytes.count - 2, expectedCount: count).0
        }
    }
}
