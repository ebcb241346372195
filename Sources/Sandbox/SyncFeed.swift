/// The fixed change feed behind a `…/sync/{sequenceNumber}` endpoint and its
/// `…/current-max-sequence` (or `…/max-sequence-number`, `…/max-sequence`) sibling.
///
/// Floriday's sync contract: `sync/{n}` answers the records whose sequence number is above `n`,
/// at most `limitResult` of them, with `maximumSequenceNumber`; a client is up to date when the
/// number it asks from equals that maximum. Here the feed of an endpoint holds records 1…size,
/// record `k` being item `k - 1` of the endpoint's list, so a sync loop ends after
/// `size / limit` pages and sees the same identifiers as the list and get operations.
struct SyncFeed: Equatable {
    /// What the sync and max-sequence templates of one feed have in common, e.g. `/trade-items`
    /// for `/trade-items/sync/{sequenceNumber}` and `/trade-items/current-max-sequence`.
    let key: String
    /// Records in the feed, and so its maximum sequence number: between 20 and 60, fixed per key.
    let size: Int

    init(key: String) {
        self.key = key
        size = 20 + Int(SeededRandom.hash(key) % 41)
    }

    /// The feed a sync or max-sequence template belongs to; nil for any other template.
    init?(template: String) {
        var key = template
        if key.hasSuffix("/{sequenceNumber}") && key.contains("/sync/") {
            key.removeLast("/{sequenceNumber}".count)
        } else if key.hasSuffix("/current-max-sequence") {
            key.removeLast("/current-max-sequence".count)
        } else if key.hasSuffix("/max-sequence-number") {
            key.removeLast("/max-sequence-number".count)
        } else if key.hasSuffix("/max-sequence") {
            key.removeLast("/max-sequence".count)
        } else {
            return nil
        }
        if key.hasSuffix("/sync") { key.removeLast("/sync".count) }
        self.init(key: key)
    }

    /// The sequence numbers of the page after `sequenceNumber`, at most `limit` of them.
    func page(after sequenceNumber: Int, limit: Int) -> ClosedRange<Int>? {
        let first = max(sequenceNumber, 0) + 1
        guard first <= size, limit > 0 else { return nil }
        return first...min(size, first + limit - 1)
    }
}

/// SplitMix64 seeded from a string (FNV-1a 64), so a generated answer is a function of its seed.
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64

    init(seed: String) {
        state = Self.hash(seed)
    }

    static func hash(_ text: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            h ^= UInt64(byte)
            h = h &* 0x0000_0100_0000_01b3
        }
        return h
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A number in `0..<bound`; its own arithmetic rather than `Int.random(in:using:)`, whose
    /// algorithm the standard library does not promise to keep, so answers stay the same.
    mutating func below(_ bound: Int) -> Int {
        bound <= 1 ? 0 : Int(next() % UInt64(bound))
    }

    /// A version-4-shaped UUID, lower case as .NET writes a Guid.
    mutating func uuid() -> String {
        var bytes = (0..<16).map { _ in UInt8(truncatingIfNeeded: next()) }
        bytes[6] = bytes[6] & 0x0F | 0x40
        bytes[8] = bytes[8] & 0x3F | 0x80
        let hex = bytes.map { $0 < 16 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
        return [hex[0..<4], hex[4..<6], hex[6..<8], hex[8..<10], hex[10..<16]].map { $0.joined() }.joined(separator: "-")
    }
}
