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
    /// For checks of an incomplete head (see `HTTP1MessageKind.checkIncompleteHead`): whether
    /// the start line was checked, the index in `buffer` of its first SP (-1: not seen yet) and
    /// where to go on looking.
    var startLineChecked = false
    var firstSpace = -1
    var spaceSearchFrom = 0

    var isEmpty: Bool { buffer.isEmpty }

    mutating func reset() {
        buffer.removeAll(keepingCapacity: true)
        lineLength = 0
        lineCount = 0
        skippedEmptyLine = false
        startLineChecked = false
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
                firstSpace = -1
                spaceSearchFrom = 0
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
}
