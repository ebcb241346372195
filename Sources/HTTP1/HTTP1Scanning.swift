// Byte-level building blocks shared by the request and response parsers: character
// classes, fast searches, field-line validation and the framing header checks.

enum ASCII {
    static let htab: UInt8 = 0x09
    static let lf: UInt8 = 0x0A
    static let cr: UInt8 = 0x0D
    static let sp: UInt8 = 0x20
    static let quote: UInt8 = 0x22
    static let comma: UInt8 = 0x2C
    static let colon: UInt8 = 0x3A
    static let semicolon: UInt8 = 0x3B
    static let equals: UInt8 = 0x3D
    static let backslash: UInt8 = 0x5C
    static let del: UInt8 = 0x7F
}

// MARK: Character classes

/// tchar (RFC 9110 §5.6.2) as a 128-bit set: "!#$%&'*+-.^_`|~", DIGIT, ALPHA.
private let tcharLow: UInt64 = 0x03FF_6CFA_0000_0000   // bytes 0x00-0x3F
private let tcharHigh: UInt64 = 0x57FF_FFFF_C7FF_FFFE  // bytes 0x40-0x7F

@inline(__always)
func isTchar(_ byte: UInt8) -> Bool {
    if byte < 64 { return (tcharLow >> UInt64(byte)) & 1 == 1 }
    if byte < 128 { return (tcharHigh >> UInt64(byte &- 64)) & 1 == 1 }
    return false
}

/// OWS = *( SP / HTAB ), RFC 9110 §5.6.3.
@inline(__always)
func isOWS(_ byte: UInt8) -> Bool { byte == ASCII.sp || byte == ASCII.htab }

/// field-vchar / SP / HTAB: VCHAR and obs-text (0x80-0xFF) are allowed; every other
/// control, DEL included, is not (RFC 9110 §5.5).
@inline(__always)
func isFieldValueByte(_ byte: UInt8) -> Bool {
    (byte >= 0x20 && byte != ASCII.del) || byte == ASCII.htab
}

@inline(__always)
func asciiLowercased(_ byte: UInt8) -> UInt8 {
    byte &- 0x41 < 26 ? byte | 0x20 : byte
}

@inline(__always)
func hexValue(_ byte: UInt8) -> UInt64? {
    switch byte {
    case 0x30...0x39: return UInt64(byte &- 0x30)
    case 0x41...0x46: return UInt64(byte &- 0x37)
    case 0x61...0x66: return UInt64(byte &- 0x57)
    default: return nil
    }
}

func asciiCaseInsensitiveEquals(_ bytes: [UInt8], _ string: String) -> Bool {
    guard bytes.count == string.utf8.count else { return false }
    // Native strings (every literal) are contiguous UTF-8: compare buffers, not iterators.
    if let equal = string.utf8.withContiguousStorageIfAvailable({ other in
        bytes.withUnsafeBufferPointer { mine in
            for index in 0..<mine.count where asciiLowercased(mine[index]) != asciiLowercased(other[index]) { return false }
            return true
        }
    }) {
        return equal
    }
    return asciiCaseInsensitiveEquals(bytes[...], string)
}

func asciiCaseInsensitiveEquals<Bytes: Collection<UInt8>>(_ bytes: Bytes, _ string: String) -> Bool {
    let utf8 = string.utf8
    guard bytes.count == utf8.count else { return false }
    for (byte, other) in zip(bytes, utf8) where asciiLowercased(byte) != asciiLowercased(other) {
        return false
    }
    return true
}

func asciiCaseInsensitiveEquals<Bytes: Collection<UInt8>>(_ bytes: Bytes, _ string: StaticString) -> Bool {
    let other = UnsafeBufferPointer(start: string.utf8Start, count: string.utf8CodeUnitCount)
    guard bytes.count == other.count else { return false }
    for (byte, otherByte) in zip(bytes, other) where asciiLowercased(byte) != asciiLowercased(otherByte) {
        return false
    }
    return true
}

// MARK: Word-at-a-time scanning

private let ones: UInt64 = 0x0101_0101_0101_0101
private let highBits: UInt64 = 0x8080_8080_8080_8080

/// Non-zero when some byte of `word` is zero (the classic bit trick; exact as a test).
@inline(__always)
private func zeroByteMask(_ word: UInt64) -> UInt64 {
    (word &- ones) & ~word & highBits
}

/// The index of the first `byte` in `base[from..<end]`, eight bytes at a time.
@inline(__always)
func findByte(_ byte: UInt8, in base: UnsafeRawPointer, from: Int, to end: Int) -> Int? {
    var index = from
    let pattern = ones &* UInt64(byte)
    while index + 8 <= end {
        let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: index, as: UInt64.self))
        let mask = zeroByteMask(word ^ pattern)
        // Little-endian: the lowest flagged byte is the first match (borrows only flag later bytes).
        if mask != 0 { return index + mask.trailingZeroBitCount >> 3 }
        index += 8
    }
    while index < end {
        if base.load(fromByteOffset: index, as: UInt8.self) == byte { return index }
        index += 1
    }
    return nil
}

/// The index of the first byte in `base[from..<end]` that may not appear in a field value.
@inline(__always)
func firstInvalidFieldValueByte(in base: UnsafeRawPointer, from: Int, to end: Int) -> Int? {
    var index = from
    let del = ones &* UInt64(ASCII.del)
    while index + 8 <= end {
        let word = base.loadUnaligned(fromByteOffset: index, as: UInt64.self)
        // A byte below 0x20 (HTAB included, checked below) or equal to DEL flags the word.
        // Bytes >= 0x80 (obs-text) never flag: `~word` clears their high bit.
        let suspicious = ((word &- ones &* 0x20) & ~word & highBits) | zeroByteMask(word ^ del)
        if suspicious != 0 {
            for offset in index..<index + 8 where !isFieldValueByte(base.load(fromByteOffset: offset, as: UInt8.self)) {
                return offset
            }
        }
        index += 8
    }
    while index < end {
        if !isFieldValueByte(base.load(fromByteOffset: index, as: UInt8.self)) { return index }
        index += 1
    }
    return nil
}

// MARK: Field lines

/// A field line validated in place: offsets into the head buffer.
struct FieldLine {
    var nameStart: Int
    var nameEnd: Int
    var valueStart: Int
    var valueEnd: Int
}

/// Validates the field line `base[start..<end]` (`end` is the index of its CR) per
/// RFC 9112 §5: `field-name ":" OWS field-value OWS`.
@inline(__always)
func parseFieldLine(_ base: UnsafeRawPointer, start: Int, end: Int) throws(HTTP1ParseError) -> FieldLine {
    let first = base.load(fromByteOffset: start, as: UInt8.self)
    // RFC 9112 §5.2: obs-fold is rejected with 400 (outside message/http). The same holds for
    // whitespace between the start line and the first field (§2.2).
    if isOWS(first) { throw .obsFold }
    var index = start
    while index < end && isTchar(base.load(fromByteOffset: index, as: UInt8.self)) { index += 1 }
    guard index < end else { throw .invalidHeaderName }  // no colon at all
    let stop = base.load(fromByteOffset: index, as: UInt8.self)
    guard stop == ASCII.colon, index > start else {
        if stop == ASCII.cr { throw .bareCR }
        if isOWS(stop) && index > start {
            // RFC 9112 §5.1: a server MUST reject whitespace between name and colon with 400
            // (the classic "Transfer-Encoding : chunked" smuggling vector).
            var next = index
            while next < end && isOWS(base.load(fromByteOffset: next, as: UInt8.self)) { next += 1 }
            if next < end && base.load(fromByteOffset: next, as: UInt8.self) == ASCII.colon { throw .spaceBeforeColon }
        }
        throw .invalidHeaderName
    }
    if let bad = firstInvalidFieldValueByte(in: base, from: index + 1, to: end) {
        throw base.load(fromByteOffset: bad, as: UInt8.self) == ASCII.cr ? .bareCR : .invalidHeaderValue
    }
    var valueStart = index + 1
    var valueEnd = end
    while valueStart < valueEnd && isOWS(base.load(fromByteOffset: valueStart, as: UInt8.self)) { valueStart += 1 }
    while valueEnd > valueStart && isOWS(base.load(fromByteOffset: valueEnd - 1, as: UInt8.self)) { valueEnd -= 1 }
    return FieldLine(nameStart: start, nameEnd: index, valueStart: valueStart, valueEnd: valueEnd)
}

/// The fields that decide framing, noted while the field lines are built.
struct FramingFields {
    var hostCount = 0
    var hostIndex = -1
    var contentLengthCount = 0
    var contentLengthIndex = -1
    var transferEncodingCount = 0

    @inline(__always)
    mutating func note(_ name: UnsafeRawBufferPointer, at index: Int) {
        // Cheap length dispatch first: most fields are none of these.
        switch name.count {
        case 4 where asciiCaseInsensitiveEquals(name, "host" as StaticString):
            hostCount += 1
            hostIndex = index
        case 14 where asciiCaseInsensitiveEquals(name, "content-length" as StaticString):
            contentLengthCount += 1
            contentLengthIndex = index
        case 17 where asciiCaseInsensitiveEquals(name, "transfer-encoding" as StaticString):
            transferEncodingCount += 1
        default:
            break
        }
    }
}

/// The transfer codings of all Transfer-Encoding fields of a message, read as one list
/// (RFC 9110 §5.3), and what framing needs to know of them.
struct TransferCodingList {
    /// Codings named, empty list elements not counted.
    var count = 0
    var chunkedCount = 0
    var finalIsChunked = false
    /// An element that is not `token *( OWS ";" OWS transfer-parameter )`, or a chunked with
    /// parameters (it defines none).
    var malformed = false
    /// Empty list elements ("chunked," or ", chunked"): RFC 9110 §5.6.1 lets a recipient ignore
    /// them; a server may refuse them where a different reading would change the framing.
    var emptyElements = false

    init(_ headers: HTTPHeaders) {
        for field in headers.fields where field.hasName("transfer-encoding") {
            var elements = 0
            forEachListElement(field.value) { element in
                elements += 1
                var nameEnd = element.startIndex
                while nameEnd < element.endIndex && isTchar(element[nameEnd]) { nameEnd += 1 }
                let name = element[element.startIndex..<nameEnd]
                let rest = element[nameEnd...].drop(while: isOWS)
                let isChunked = asciiCaseInsensitiveEquals(name, "chunked" as StaticString)
                if name.isEmpty || !(rest.isEmpty || rest.first == ASCII.semicolon) || (isChunked && !rest.isEmpty) {
                    malformed = true
                }
                if isChunked { chunkedCount += 1 }
                finalIsChunked = isChunked
                count += 1
            }
            // A list of n commas has n + 1 elements; the empty ones were not handed to us.
            var commas = 0
            for byte in field.value where byte == ASCII.comma { commas += 1 }
            if commas + 1 != elements { emptyElements = true }
        }
    }
}

/// Parses the field lines of a complete head, `base[from..<end]`, where `end` is the index of
/// the CRLF that ends the head. Each field's name and value arrays are built once.
func parseFields(_ base: UnsafeRawPointer, from: Int, to end: Int, expectedCount: Int) throws(HTTP1ParseError) -> (HTTPHeaders, FramingFields) {
    var fields: [HTTPField] = []
    fields.reserveCapacity(expectedCount)
    var framing = FramingFields()
    var lineStart = from
    while lineStart < end {
        // The head scanner already checked that every LF here is preceded by CR.
        let lf = findByte(ASCII.lf, in: base, from: lineStart, to: end) ?? end
        let line = try parseFieldLine(base, start: lineStart, end: lf - 1)
        let name = UnsafeRawBufferPointer(start: base + line.nameStart, count: line.nameEnd - line.nameStart)
        framing.note(name, at: fields.count)
        let value = UnsafeRawBufferPointer(start: base + line.valueStart, count: line.valueEnd - line.valueStart)
        fields.append(HTTPField(name: fieldNameArray(name), value: Array(value)))
        lineStart = lf + 1
    }
    return (HTTPHeaders(fields: fields), framing)
}

/// Field names nearly every message carries, spelled as clients and servers send them. A name
/// equal to one of them byte for byte shares its array: a retain instead of an allocation.
/// (Arrays are values, so sharing is invisible to users.)
private struct CommonFieldNames: Sendable {
    /// The names, and the same bytes back to back for comparing without touching the arrays.
    var arrays: [[UInt8]] = []
    var bytes: [UInt8] = []
    /// By length: the indices in `arrays` (and starts in `bytes`) of the names that long.
    var byLength = [[(index: Int, start: Int)]](repeating: [], count: 20)

    init() {
        let names = [
            "Host", "Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control",
            "Connection", "Content-Length", "Content-Type", "Cookie", "Date", "ETag", "Expect",
            "Keep-Alive", "Last-Modified", "Location", "Origin", "Referer", "Server", "Set-Cookie",
            "Transfer-Encoding", "User-Agent", "Vary", "X-Api-Key", "X-Forwarded-For",
            "X-Forwarded-Proto", "X-Request-Id", "X-Request-ID",
        ]
        for name in names + names.map({ $0.lowercased() }) where !arrays.contains(Array(name.utf8)) {
            let utf8 = Array(name.utf8)
            byLength[utf8.count].append((arrays.count, bytes.count))
            arrays.append(utf8)
            bytes += utf8
        }
    }

    func array(for name: UnsafeRawBufferPointer) -> [UInt8] {
        guard name.count < byLength.count else { return Array(name) }
        let found: Int? = bytes.withUnsafeBytes { all in
            for (index, start) in byLength[name.count] where sameBytes(all.baseAddress! + start, name) {
                return index
            }
            return nil
        }
        return found.map { arrays[$0] } ?? Array(name)
    }

    @inline(__always)
    private func sameBytes(_ candidate: UnsafeRawPointer, _ name: UnsafeRawBufferPointer) -> Bool {
        for offset in 0..<name.count where candidate.load(fromByteOffset: offset, as: UInt8.self) != name[offset] {
            return false
        }
        return true
    }
}

private let commonFieldNames = CommonFieldNames()

@inline(__always)
func fieldNameArray(_ name: UnsafeRawBufferPointer) -> [UInt8] {
    commonFieldNames.array(for: name)
}

// MARK: Start-line pieces and framing values

/// `HTTP-version = "HTTP" "/" DIGIT "." DIGIT` (RFC 9112 §2.3, case-sensitive) at
/// `base[at..<at+8]`. Returns nil when the bytes are not of that shape.
func parseVersion(_ base: UnsafeRawPointer, at: Int) -> HTTPVersion? {
    func byte(_ offset: Int) -> UInt8 { base.load(fromByteOffset: at + offset, as: UInt8.self) }
    guard byte(0) == 0x48, byte(1) == 0x54, byte(2) == 0x54, byte(3) == 0x50, byte(4) == 0x2F,
          byte(5) &- 0x30 < 10, byte(6) == 0x2E, byte(7) &- 0x30 < 10 else { return nil }
    return HTTPVersion(major: Int(byte(5) &- 0x30), minor: Int(byte(7) &- 0x30))
}

/// `Content-Length = 1*DIGIT` (RFC 9110 §8.6). A list, even of equal values, is refused
/// (stricter than §8.6 allows) because proxies disagreeing on such lists is a smuggling vector.
func parseContentLength(_ value: [UInt8]) throws(HTTP1ParseError) -> UInt64 {
    if value.contains(ASCII.comma) { throw .conflictingContentLength }
    guard !value.isEmpty else { throw .invalidContentLength }
    var length: UInt64 = 0
    for byte in value {
        let digit = byte &- 0x30
        guard digit < 10 else { throw .invalidContentLength }
        let (times10, overflow1) = length.multipliedReportingOverflow(by: 10)
        let (sum, overflow2) = times10.addingReportingOverflow(UInt64(digit))
        if overflow1 || overflow2 { throw .invalidContentLength }
        length = sum
    }
    return length
}

/// The Host value must be `uri-host [ ":" port ]` (RFC 9112 §3.2, RFC 3986 §3.2.2): only
/// unreserved, pct-encoded, sub-delims, ":" and the brackets of an IP literal. Empty is allowed.
/// A comma is refused although reg-name allows it: no real host has one, and it is what two
/// Host fields combined into a list look like.
func isValidHost(_ value: [UInt8]) -> Bool {
    for byte in value {
        switch byte {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: continue          // ALPHA / DIGIT
        case 0x2D, 0x2E, 0x5F, 0x7E, 0x25: continue                   // - . _ ~ %
        case 0x21, 0x24, 0x26...0x2B, 0x3B, 0x3D: continue            // sub-delims but ","
        case ASCII.colon, 0x5B, 0x5D: continue                        // port, IP literal
        default: return false
        }
    }
    return true
}

extension Array<UInt8> {
    /// Whether these bytes (a field name) equal `lowercasedASCII`, ignoring ASCII case;
    /// compares in place, allocates nothing.
    @inlinable
    public func hasName(_ lowercasedASCII: StaticString) -> Bool {
        let count = lowercasedASCII.utf8CodeUnitCount
        guard self.count == count else { return false }
        let other = lowercasedASCII.utf8Start
        return withUnsafeBufferPointer { mine in
            for index in 0..<count {
                let byte = mine[index]
                if (byte &- 0x41 < 26 ? byte | 0x20 : byte) != other[index] { return false }
            }
            return true
        }
    }
}

extension ArraySlice<UInt8> {
    /// Whether these bytes equal `lowercasedASCII`, ignoring ASCII case (a list token against
    /// a known one); allocates nothing.
    public func hasName(_ lowercasedASCII: StaticString) -> Bool {
        asciiCaseInsensitiveEquals(self, lowercasedASCII)
    }

    /// Whether these bytes equal `other`, ignoring ASCII case (e.g. a token of a
    /// `Connection` header against a field name).
    public func hasName(_ other: [UInt8]) -> Bool {
        guard count == other.count else { return false }
        return zip(self, other).allSatisfy { asciiLowercased($0) == asciiLowercased($1) }
    }
}
