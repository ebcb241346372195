/// One field line. Name and value are kept as the bytes that arrived (or were given):
/// nothing is decoded, so forwarding is byte-exact.
public struct HTTPField: Sendable, Equatable {
    public var name: [UInt8]
    public var value: [UInt8]

    /// Raw bytes, taken as they are. The parser only builds fields that passed RFC 9112 §5.
    public init(name: [UInt8], value: [UInt8]) {
        self.name = name
        self.value = value
    }

    /// For fields the program builds itself. CR, LF and NUL become SP so that a value taken
    /// from elsewhere (a token, a client address) can never end the line and inject another
    /// field (RFC 9110 §5.5: they are never allowed in a field).
    public init(_ name: String, _ value: String) {
        self.name = sanitized(name)
        self.value = sanitized(value)
    }

    /// Compares the name with `lowercasedASCII` ignoring ASCII case, without allocating.
    /// (Either side may in fact use any case.)
    public func hasName(_ lowercasedASCII: String) -> Bool {
        var other = lowercasedASCII
        return other.withUTF8 { equalsIgnoringASCIICase(name, $0) }
    }

    public var nameString: String { String(decoding: name, as: UTF8.self) }
    /// The value decoded as UTF-8 (obs-text bytes that are not UTF-8 become U+FFFD).
    public var valueString: String { String(decoding: value, as: UTF8.self) }
}

private func sanitized(_ string: String) -> [UInt8] {
    var bytes = Array(string.utf8)
    // One scan of a contiguous buffer; a copy only when something must be replaced (never,
    // in practice: the check is a guard against values taken from elsewhere).
    let clean = bytes.withUnsafeBufferPointer { buffer in
        !buffer.contains { $0 == ASCII.cr || $0 == ASCII.lf || $0 == 0 }
    }
    if clean { return bytes }
    for index in bytes.indices where bytes[index] == ASCII.cr || bytes[index] == ASCII.lf || bytes[index] == 0 {
        bytes[index] = ASCII.sp
    }
    return bytes
}

/// The field lines of a message, in order, duplicates kept (RFC 9110 §5.3: order of fields
/// with the same name matters; Set-Cookie cannot be combined). Lookups ignore ASCII case.
public struct HTTPHeaders: Sendable, Equatable, Sequence {
    public var fields: [HTTPField]

    public init() {
        fields = []
    }

    public init(_ pairs: [(String, String)]) {
        fields = pairs.map { HTTPField($0.0, $0.1) }
    }

    public init(fields: [HTTPField]) {
        self.fields = fields
    }

    public func makeIterator() -> IndexingIterator<[HTTPField]> {
        fields.makeIterator()
    }

    public var count: Int { fields.count }
    public var isEmpty: Bool { fields.isEmpty }

    /// The index of the first field named `name` (ASCII case ignored). Fields are borrowed in
    /// place: iterating `fields` would copy each one (two retains and two releases), and
    /// lookups run several times for every message.
    public func firstIndex(named name: String) -> Int? {
        var name = name
        return name.withUTF8 { target in
            fields.withUnsafeBufferPointer { buffer in
                for index in buffer.indices where equalsIgnoringASCIICase(buffer[index].name, target) { return index }
                return nil
            }
        }
    }

    /// The value of the first field named `name`.
    public func first(_ name: String) -> [UInt8]? {
        firstIndex(named: name).map { fields[$0].value }
    }

    public func firstString(_ name: String) -> String? {
        first(name).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Every value of fields named `name`, in order.
    public func values(_ name: String) -> [[UInt8]] {
        fields.compactMap { $0.hasName(name) ? $0.value : nil }
    }

    public func contains(_ name: String) -> Bool {
        firstIndex(named: name) != nil
    }

    public mutating func add(_ name: String, _ value: String) {
        fields.append(HTTPField(name, value))
    }

    public mutating func add(_ field: HTTPField) {
        fields.append(field)
    }

    /// Removes every field named `name`.
    public mutating func remove(_ name: String) {
        guard firstIndex(named: name) != nil else { return }   // the usual case: no copy, no write
        fields.removeAll { $0.hasName(name) }
    }

    /// Sets the first field named `name` to `value` (keeping its position) and removes any
    /// later ones; appends the field when there is none.
    public mutating func replaceOrAdd(_ name: String, _ value: String) {
        guard let index = firstIndex(named: name) else {
            add(name, value)
            return
        }
        fields[index] = HTTPField(name, value)
        var later = index + 1
        while later < fields.count {
            if fields[later].hasName(name) { fields.remove(at: later) } else { later += 1 }
        }
    }

    public mutating func removeAll(where shouldRemove: (HTTPField) -> Bool) {
        fields.removeAll(where: shouldRemove)
    }

    /// Lowercased tokens of every Connection header (comma separated lists, OWS trimmed,
    /// empty elements skipped), RFC 9110 §7.6.1 and §5.6.1.
    public func connectionTokens() -> [String] {
        var tokens: [String] = []
        for field in fields where field.hasName("connection") {
            forEachListElement(field.value) { element in
                tokens.append(String(decoding: element.map(asciiLowercased), as: UTF8.self))
            }
        }
        return tokens
    }

    /// Whether a Connection header lists `token` (lowercase ASCII), without allocating.
    public func connectionHas(_ token: StaticString) -> Bool {
        fields.withUnsafeBufferPointer { buffer in
            for index in buffer.indices where buffer[index].name.count == 10 && buffer[index].name.hasName("connection") {
                var found = false
                forEachListElement(buffer[index].value) { element in
                    if !found && asciiCaseInsensitiveEquals(element, token) { found = true }
                }
                if found { return true }
            }
            return false
        }
    }
}

/// Calls `body` with each non-empty, OWS-trimmed element of a comma separated list
/// (RFC 9110 §5.6.1: recipients ignore empty elements). Commas inside quoted strings are
/// not special-cased: the lists this is used on hold tokens only.
public func forEachListElement(_ value: [UInt8], _ body: (ArraySlice<UInt8>) -> Void) {
    var start = 0
    while start <= value.count {
        var end = start
        while end < value.count && value[end] != ASCII.comma { end += 1 }
        var low = start, high = end
        while low < high && isOWS(value[low]) { low += 1 }
        while high > low && isOWS(value[high - 1]) { high -= 1 }
        if low < high { body(value[low..<high]) }
        start = end + 1
    }
}

/// ASCII case-insensitive equality of a field name and the UTF-8 of a name, in place.
@inline(__always)
func equalsIgnoringASCIICase(_ bytes: [UInt8], _ other: UnsafeBufferPointer<UInt8>) -> Bool {
    guard bytes.count == other.count else { return false }
    return bytes.withUnsafeBufferPointer { mine in
        for index in 0..<mine.count where asciiLowercased(mine[index]) != asciiLowercased(other[index]) { return false }
        return true
    }
}
