import HTTP1

/// An HPACK encoder (RFC 7541) for the header blocks a client session sends.
///
/// nghttp2 encodes header blocks itself, but it never indexes Authorization and Huffman-codes
/// every literal. A proxy sends the same bearer token (about 1 KiB) with every request; coding
/// it again for each one cost more CPU than all the rest of the request's HTTP/2 work. Here a
/// field whose value repeats goes into the dynamic table once (RFC 7541 §2.3.2) and is a table
/// reference (one or two bytes) from then on; literals are sent without Huffman coding (§5.2
/// allows either), which is cheaper to produce and matters little, as a repeated value is sent
/// as a literal only once.
///
/// Not thread-safe: part of its session.
struct HPACKEncoder {
    /// The table size this encoder uses at most, whatever more the peer allows (the peer's
    /// default, RFC 9113 §6.5.2): the heads of a proxy repeat, so 4 KiB holds what repeats.
    static let preferredMaxSize = 4096

    /// Whether Authorization values are indexed. Off, they are sent as never-indexed literals
    /// (RFC 7541 §7.1.3), as nghttp2 does, for the case of a low-entropy secret (a password)
    /// that an attacker who can add fields to the same connection could guess field by field.
    var indexesAuthorization: Bool

    /// The dynamic table's size limit (RFC 7541 §4.2).
    private(set) var maxSize = preferredMaxSize
    /// A lower limit was set since the last block: its smallest value is signalled first.
    private var smallestPendingLimit: Int?
    private var limitChanged = false
    /// The dynamic table, oldest entry first; `entries[first...]` are live.
    private var entries: [Entry] = []
    private var first = 0
    private var size = 0

    private struct Entry {
        var name: [UInt8]
        var value: [UInt8]
        var size: Int { name.count + value.count + 32 }   // RFC 7541 §4.1
    }

    init(indexesAuthorization: Bool) {
        self.indexesAuthorization = indexesAuthorization
    }

    /// The peer's SETTINGS_HEADER_TABLE_SIZE (its decoder's limit) changed.
    mutating func setPeerLimit(_ limit: Int) {
        let newMax = min(max(limit, 0), Self.preferredMaxSize)
        guard newMax != maxSize else { return }
        smallestPendingLimit = min(smallestPendingLimit ?? newMax, newMax)
        limitChanged = true
        maxSize = newMax
        evict(toFit: 0)
    }

    /// Appends the header block of `fields` (names in lower case, pseudo-header fields first).
    mutating func encode(_ fields: [HTTPField], into block: inout [UInt8]) {
        if limitChanged {
            // RFC 7541 §4.2: a dynamic table size update starts the first block after a change;
            // when the limit went down and up again, the smallest value comes first.
            if let smallest = smallestPendingLimit, smallest < maxSize { Self.appendInteger(smallest, prefixBits: 5, pattern: 0x20, to: &block) }
            Self.appendInteger(maxSize, prefixBits: 5, pattern: 0x20, to: &block)
            smallestPendingLimit = nil
            limitChanged = false
        }
        for field in fields { encode(name: field.name, value: field.value, into: &block) }
    }

    private mutating func encode(name: [UInt8], value: [UInt8], into block: inout [UInt8]) {
        let neverIndexed = (!indexesAuthorization && name.count == 13 && equals(name, "authorization"))
            // Short cookies are guessable (nghttp2's and browsers' rule).
            || (name.count == 6 && value.count < 20 && equals(name, "cookie"))
        if !neverIndexed, let index = indexOf(name: name, value: value) {
            Self.appendInteger(index, prefixBits: 7, pattern: 0x80, to: &block)   // §6.1
            return
        }
        let nameIndex = indexOf(name: name)
        let entrySize = name.count + value.count + 32
        if !neverIndexed && !Self.isUnique(name) && entrySize <= maxSize * 3 / 4 {
            // §6.2.1: literal with incremental indexing.
            Self.appendInteger(nameIndex ?? 0, prefixBits: 6, pattern: 0x40, to: &block)
            if nameIndex == nil { Self.appendString(name, to: &block) }
            Self.appendString(value, to: &block)
            insert(Entry(name: name, value: value))
        } else {
            // §6.2.2 (without indexing) or §6.2.3 (never indexed).
            Self.appendInteger(nameIndex ?? 0, prefixBits: 4, pattern: neverIndexed ? 0x10 : 0x00, to: &block)
            if nameIndex == nil { Self.appendString(name, to: &block) }
            Self.appendString(value, to: &block)
        }
    }

    /// Fields whose value is new in (nearly) every request: indexing them would only push out
    /// entries later heads can use. nghttp2 leaves the same ones out (and a few response fields).
    private static func isUnique(_ name: [UInt8]) -> Bool {
        switch name.count {
        case 5: return equals(name, ":path")
        case 12: return equals(name, "x-request-id")
        case 14: return equals(name, "content-length")
        default: return false
        }
    }

    // MARK: Tables

    /// The index of the entry `name: value` (static table first), or nil.
    private func indexOf(name: [UInt8], value: [UInt8]) -> Int? {
        // Newest first: a head's fields were usually inserted together by the previous head.
        var position = entries.count - 1
        while position >= first {
            let entry = entries[position]
            if entry.value.count == value.count, entry.name.count == name.count, entry.value == value, entry.name == name {
                return staticTable.count + entries.count - position
            }
            position -= 1
        }
        if name.count < staticByLength.count {
            for index in staticByLength[name.count] where staticTable[index].value.count == value.count && staticTable[index].name == name && staticTable[index].value == value {
                return index + 1
            }
        }
        return nil
    }

    /// The index of an entry named `name` (static table first), or nil.
    private func indexOf(name: [UInt8]) -> Int? {
        if name.count < staticByLength.count {
            for index in staticByLength[name.count] where staticTable[index].name == name { return index + 1 }
        }
        var position = entries.count - 1
        while position >= first {
            if entries[position].name == name { return staticTable.count + entries.count - position }
            position -= 1
        }
        return nil
    }

    private mutating func insert(_ entry: Entry) {
        let entrySize = entry.size
        evict(toFit: entrySize)
        guard entrySize <= maxSize else { return }   // §4.4: larger than the table, it empties it
        entries.append(entry)
        size += entrySize
    }

    /// Drops the oldest entries until `room` more bytes fit (§4.4).
    private mutating func evict(toFit room: Int) {
        while size + room > maxSize && first < entries.count {
            size -= entries[first].size
            entries[first] = Entry(name: [], value: [])
            first += 1
        }
        if first == entries.count {
            entries.removeAll(keepingCapacity: true)
            first = 0
        } else if first >= 64 && first * 2 >= entries.count {
            entries.removeSubrange(0..<first)
            first = 0
        }
    }

    // MARK: Primitives (RFC 7541 §5)

    private static func appendInteger(_ value: Int, prefixBits: Int, pattern: UInt8, to block: inout [UInt8]) {
        let limit = (1 << prefixBits) - 1
        if value < limit {
            block.append(pattern | UInt8(value))
            return
        }
        block.append(pattern | UInt8(limit))
        var rest = value - limit
        while rest >= 128 {
            block.append(UInt8(rest & 0x7F) | 0x80)
            rest >>= 7
        }
        block.append(UInt8(rest))
    }

    /// A string literal without Huffman coding (§5.2).
    private static func appendString(_ bytes: [UInt8], to block: inout [UInt8]) {
        appendInteger(bytes.count, prefixBits: 7, pattern: 0x00, to: &block)
        block.append(contentsOf: bytes)
    }
}

@inline(__always)
private func equals(_ bytes: [UInt8], _ text: StaticString) -> Bool {
    bytes.count == text.utf8CodeUnitCount && bytes.withUnsafeBufferPointer {
        $0.elementsEqual(UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }
}

/// RFC 7541 Appendix A; index = position + 1.
private let staticTable: [(name: [UInt8], value: [UInt8])] = [
    (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"), (":path", "/index.html"),
    (":scheme", "http"), (":scheme", "https"), (":status", "200"), (":status", "204"), (":status", "206"),
    (":status", "304"), (":status", "400"), (":status", "404"), (":status", "500"), ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""), ("accept", ""),
    ("access-control-allow-origin", ""), ("age", ""), ("allow", ""), ("authorization", ""), ("cache-control", ""),
    ("content-disposition", ""), ("content-encoding", ""), ("content-language", ""), ("content-length", ""),
    ("content-location", ""), ("content-range", ""), ("content-type", ""), ("cookie", ""), ("date", ""), ("etag", ""),
    ("expect", ""), ("expires", ""), ("from", ""), ("host", ""), ("if-match", ""), ("if-modified-since", ""),
    ("if-none-match", ""), ("if-range", ""), ("if-unmodified-since", ""), ("last-modified", ""), ("link", ""),
    ("location", ""), ("max-forwards", ""), ("proxy-authenticate", ""), ("proxy-authorization", ""), ("range", ""),
    ("referer", ""), ("refresh", ""), ("retry-after", ""), ("server", ""), ("set-cookie", ""),
    ("strict-transport-security", ""), ("transfer-encoding", ""), ("user-agent", ""), ("vary", ""), ("via", ""),
    ("www-authenticate", ""),
].map { (Array($0.0.utf8), Array($0.1.utf8)) }

/// Positions in `staticTable` by name length (none is longer than 27).
private let staticByLength: [[Int]] = {
    var byLength = [[Int]](repeating: [], count: 32)
    for index in staticTable.indices { byLength[staticTable[index].name.count].append(index) }
    return byLength
}()
