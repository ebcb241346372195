import HTTP1

/// An HPACK encoder (RFC 7541) for the header blocks a client session sends.
///
/// nghttp2 encodes header blocks itself, but it never indexes Authorization and Huffman-codes
/// every literal. A proxy sends the same bearer token (about 1 KiB) with every request; coding
/// it again for each one cost about a fifth of the proxy's instructions per request. Here a
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
    /// The dynamic table, oldest entry first; `entries[first...]` are live. `keys` holds a
    /// digest of each entry (`key(name:value:)`), so a lookup scans integers and compares
    /// bytes only where the digests agree.
    private var entries: [Entry] = []
    private var keys: [UInt64] = []
    private var first = 0
    private var size = 0
    /// Where the next lookup looks first (see `indexOf(name:value:)`).
    private var hint = 0

    private struct Entry {
        var name: [UInt8]
        var value: [UInt8]
        var size: Int { name.count + value.count + 32 }   // RFC 7541 §4.1
    }

    /// The pseudo-header names, as the static table's arrays.
    static let authorityName = staticTable[0].name
    static let methodName = staticTable[1].name
    static let pathName = staticTable[3].name
    static let schemeName = staticTable[5].name

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

    /// Starts a header block: the dynamic table size updates not yet signalled.
    mutating func beginBlock(_ block: inout [UInt8]) {
        guard limitChanged else { return }
        // RFC 7541 §4.2: a dynamic table size update starts the first block after a change;
        // when the limit went down and up again, the smallest value comes first.
        if let smallest = smallestPendingLimit, smallest < maxSize { Self.appendInteger(smallest, prefixBits: 5, pattern: 0x20, to: &block) }
        Self.appendInteger(maxSize, prefixBits: 5, pattern: 0x20, to: &block)
        smallestPendingLimit = nil
        limitChanged = false
    }

    /// Appends one field to the block. `name` may have upper case letters (HTTP/1 spelling):
    /// names are compared ignoring case and sent in lower case (RFC 9113 §8.2.1).
    mutating func encode(name: [UInt8], value: [UInt8], into block: inout [UInt8]) {
        let neverIndexed = (!indexesAuthorization && name.count == 13 && sameName(name, "authorization"))
            // Short cookies are guessable (nghttp2's and browsers' rule).
            || (name.count == 6 && value.count < 20 && sameName(name, "cookie"))
        // A unique field is never in the dynamic table: only the static table can have it.
        let unique = Self.isUnique(name)
        if !neverIndexed, let index = unique ? staticIndexOf(name: name, value: value) : indexOf(name: name, value: value) {
            Self.appendInteger(index, prefixBits: 7, pattern: 0x80, to: &block)   // §6.1
            return
        }
        let nameIndex = indexOf(name: name)
        let entrySize = name.count + value.count + 32
        if !neverIndexed && !unique && entrySize <= maxSize * 3 / 4 {
            // §6.2.1: literal with incremental indexing.
            Self.appendInteger(nameIndex ?? 0, prefixBits: 6, pattern: 0x40, to: &block)
            let lowercased = knownFieldNames.lowercased(name)
            if nameIndex == nil { Self.appendString(lowercased, to: &block) }
            Self.appendString(value, to: &block)
            insert(Entry(name: lowercased, value: value))
        } else {
            // §6.2.2 (without indexing) or §6.2.3 (never indexed).
            Self.appendInteger(nameIndex ?? 0, prefixBits: 4, pattern: neverIndexed ? 0x10 : 0x00, to: &block)
            if nameIndex == nil { Self.appendString(knownFieldNames.lowercased(name), to: &block) }
            Self.appendString(value, to: &block)
        }
    }

    /// Fields whose value is new in (nearly) every request: indexing them would only push out
    /// entries later heads can use. nghttp2 leaves the same ones out (and a few response fields).
    private static func isUnique(_ name: [UInt8]) -> Bool {
        switch name.count {
        case 5: return sameName(name, ":path")
        case 12: return sameName(name, "x-request-id")
        case 14: return sameName(name, "content-length")
        default: return false
        }
    }

    // MARK: Tables

    /// The index of the entry `name: value`, or nil.
    private mutating func indexOf(name: [UInt8], value: [UInt8]) -> Int? {
        // `:method: GET`, `:scheme: https` and the like are in the static table (and so never
        // inserted): looked for there first.
        if name.first == UInt8(ascii: ":"), let index = staticIndexOf(name: name, value: value) { return index }
        let key = Self.key(name: name, value: value)
        // A head's fields come in the order an earlier head inserted them: the entry after the
        // last one found is tried first, then all, newest first.
        if hint >= first && hint < keys.count && keys[hint] == key && sameBytes(entries[hint].value, value) && sameName(name, entries[hint].name) {
            hint += 1
            return staticTable.count + entries.count - (hint - 1)
        }
        var position = keys.count - 1
        while position >= first {
            if keys[position] == key && sameBytes(entries[position].value, value) && sameName(name, entries[position].name) {
                hint = position + 1
                return staticTable.count + entries.count - position
            }
            position -= 1
        }
        return name.first == UInt8(ascii: ":") ? nil : staticIndexOf(name: name, value: value)
    }

    /// The index of `name: value` in the static table, or nil. Its values are for pseudo-header
    /// fields, and one Accept-Encoding.
    private func staticIndexOf(name: [UInt8], value: [UInt8]) -> Int? {
        guard name.first == UInt8(ascii: ":") || name.count == 15, name.count < staticByLength.count else { return nil }
        for index in staticByLength[name.count] where staticTable[index].value.count == value.count && sameName(name, staticTable[index].name) && sameBytes(staticTable[index].value, value) {
            return index + 1
        }
        return nil
    }

    /// A digest of a field for `keys`: the lengths, up to eight bytes from each end of the
    /// value and the name's last bytes (in lower case).
    @inline(__always)
    private static func key(name: [UInt8], value: [UInt8]) -> UInt64 {
        var key = UInt64(truncatingIfNeeded: name.count) << 48 ^ UInt64(truncatingIfNeeded: value.count) << 32
        value.withUnsafeBytes { bytes in
            if bytes.count >= 8 {
                key ^= bytes.loadUnaligned(as: UInt64.self) &* 0x9E37_79B9_7F4A_7C15
                key ^= bytes.loadUnaligned(fromByteOffset: bytes.count - 8, as: UInt64.self)
            } else {
                for byte in bytes { key = key &* 31 &+ UInt64(byte) }
            }
        }
        return key ^ name.withUnsafeBufferPointer { lowercasedTail($0) } &* 0xC2B2_AE3D_27D4_EB4F
    }

    /// The index of an entry named `name` (static table first), or nil.
    private func indexOf(name: [UInt8]) -> Int? {
        if name.count < staticByLength.count {
            for index in staticByLength[name.count] where sameName(name, staticTable[index].name) { return index + 1 }
        }
        var position = entries.count - 1
        while position >= first {
            if sameName(name, entries[position].name) { return staticTable.count + entries.count - position }
            position -= 1
        }
        return nil
    }

    private mutating func insert(_ entry: Entry) {
        let entrySize = entry.size
        evict(toFit: entrySize)
        guard entrySize <= maxSize else { return }   // §4.4: larger than the table, it empties it
        keys.append(Self.key(name: entry.name, value: entry.value))
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
            keys.removeAll(keepingCapacity: true)
            first = 0
            hint = 0
        } else if first >= 64 && first * 2 >= entries.count {
            entries.removeSubrange(0..<first)
            keys.removeSubrange(0..<first)
            hint = max(0, hint - first)
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

/// `name` (any case) equals `lowercase`.
@inline(__always)
private func sameName(_ name: [UInt8], _ lowercase: StaticString) -> Bool {
    name.count == lowercase.utf8CodeUnitCount
        && lowercaseEquals(name, UnsafeBufferPointer(start: lowercase.utf8Start, count: lowercase.utf8CodeUnitCount))
}

/// `name` (any case) equals `lowercase`. The same array (a name taken from a cached field, or
/// one that was already in lower case) is recognised without reading it.
@inline(__always)
private func sameName(_ name: [UInt8], _ lowercase: [UInt8]) -> Bool {
    name.count == lowercase.count && (sameStorage(name, lowercase) || lowercaseEquals(name, lowercase))
}

/// The bytes of `a` and `b` are equal (a word at a time; the same array at once).
@inline(__always)
private func sameBytes(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    if sameStorage(a, b) { return true }
    return a.withUnsafeBytes { a in
        b.withUnsafeBytes { b in
            let count = a.count
            guard count >= 8 else {
                for index in 0..<count where a[index] != b[index] { return false }
                return true
            }
            var offset = 0
            while true {
                if a.loadUnaligned(fromByteOffset: offset, as: UInt64.self) != b.loadUnaligned(fromByteOffset: offset, as: UInt64.self) { return false }
                if offset == count - 8 { return true }
                offset = min(offset + 8, count - 8)
            }
        }
    }
}

/// Whether two arrays (both alive) share their storage.
@inline(__always)
private func sameStorage(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    a.withUnsafeBufferPointer { a in b.withUnsafeBufferPointer { b in a.baseAddress == b.baseAddress } }
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
