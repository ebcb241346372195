/// Finds where a head (start line + field lines) or a trailer section ends, over as many
/// inputs as it takes to arrive.
///
/// It looks only at line endings: every LF must follow a CR (RFC 9112 §2.2, bare LF rejected)
/// and the section ends at the first empty line. The bytes themselves are validated once the
/// section is complete, in one pass over contiguous memory. While the section is incomplete its
/// bytes are copied into `buffer`, which keeps its capacity from one message to the next.
struct HeadScanner: Sendable {
    enum Section: Sendable {
        case requestHead
        case responseHead
        case trailers
    }

    enum Result {
        case incomplete
        /// The section is `input[start..<end]`, preceded by `buffer` when that is not empty;
        /// `end` is just past its final CRLF.
        case complete(start: Int, end: Int)
    }

    /// Bytes of an incomplete section from earlier inputs.
    private(set) var buffer: [UInt8] = []
    /// Bytes of the current, unterminated line already in `buffer` (a trailing CR included).
    private var lineLength = 0
    /// Complete non-empty lines so far (the start line included).
    private(set) var lineCount = 0
    private var skippedEmptyLine = false
    /// Request line only: the index in `buffer` of the first SP, or -1, and where to go on looking.
    private var firstSpace = -1
    private var spaceSearchFrom = 0

    var isEmpty: Bool { buffer.isEmpty }

    mutating func reset() {
        buffer.removeAll(keepingCapacity: true)
        lineLength = 0
        lineCount = 0
        skippedEmptyLine = false
        firstSpace = -1
        spaceSearchFrom = 0
    }

    /// Scans `input[from...]` (`from < input.count`).
    mutating func scan(_ input: UnsafeRawBufferPointer, from: Int, section: Section, limits: HTTP1Limits) throws(HTTP1ParseError) -> Result {
        let base = input.baseAddress!
        let count = input.count
        let isTrailers = section == .trailers
        let limit = isTrailers ? limits.maxTrailerBytes : limits.maxHeaderBytes
        let maxLines = isTrailers ? limits.maxHeaders : limits.maxHeaders + 1
        var start = from
        var index = from
        while true {
            // The section may not grow past `limit`, so never look further than that.
            let windowEnd = min(count, start + max(0, limit - buffer.count))
            guard let lf = findByte(ASCII.lf, in: base, from: index, to: windowEnd) else {
                if windowEnd < count { throw tooLarge(section) }
                lineLength += count - index
                buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[start..<count]))
                if section == .requestHead && lineCount == 0 { try checkPartialRequestLine(limits) }
                return .incomplete
            }
            let previous = lf > start ? base.load(fromByteOffset: lf - 1, as: UInt8.self) : buffer.last
            guard previous == ASCII.cr else { throw .bareLF }
            let length = lineLength + (lf - index)  // the line before its LF, CR included
            lineLength = 0
            index = lf + 1
            if length == 1 {
                if lineCount > 0 || isTrailers { return .complete(start: start, end: index) }
                // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the
                // request-line (clients once sent CRLF after a POST body). Exactly one is
                // ignored; anything more is a broken stream, not a request.
                guard section == .requestHead, !skippedEmptyLine else {
                    throw section == .requestHead ? .invalidRequestLine : .invalidStatusLine
                }
                skippedEmptyLine = true
                buffer.removeAll(keepingCapacity: true)
                start = index
                continue
            }
            lineCount += 1
            if lineCount > maxLines { throw .tooManyHeaders }
        }
    }

    /// Runs `body` over the buffered section.
    func withBuffer<R>(_ body: (UnsafeRawBufferPointer) throws(HTTP1ParseError) -> R) throws(HTTP1ParseError) -> R {
        let result = buffer.withUnsafeBytes { bytes in
            Swift.Result { () throws(HTTP1ParseError) -> R in try body(bytes) }
        }
        return try result.get()
    }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        buffer.append(contentsOf: bytes)
    }

    private func tooLarge(_ section: Section) -> HTTP1ParseError {
        switch section {
        // A request line that alone overflows the head is reported as nginx does: 414.
        case .requestHead: lineCount == 0 ? .targetTooLong : .headerTooLarge
        case .responseHead: .headerTooLarge
        case .trailers: .trailerTooLarge
        }
    }

    /// Checks the request line while it is still arriving, so that garbage fails at once
    /// instead of at the head timeout: the method must be a token (RFC 9110 §9.1), which TLS
    /// sent to a plain-text port, for one, is not. Answers 414 as soon as what follows the
    /// method is longer than any acceptable target plus " HTTP/1.1" and CR. (The complete
    /// line gets the exact checks.)
    private mutating func checkPartialRequestLine(_ limits: HTTP1Limits) throws(HTTP1ParseError) {
        if firstSpace < 0 {
            var index = spaceSearchFrom
            while index < buffer.count {
                let byte = buffer[index]
                if byte == ASCII.sp {
                    firstSpace = index
                    break
                }
                if !isTchar(byte) {
                    // A first CR may still end an empty line; the scan decides about that.
                    if byte == ASCII.cr && index == 0 {
                        index += 1
                        continue
                    }
                    throw byte == ASCII.cr ? .bareCR : .invalidRequestLine
                }
                index += 1
            }
            guard firstSpace >= 0 else {
                spaceSearchFrom = buffer.count
                return
            }
        }
        if buffer.count - firstSpace - 1 > limits.maxTargetBytes + 10 { throw .targetTooLong }
    }
}

