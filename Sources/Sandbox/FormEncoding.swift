import Foundation

/// `application/x-www-form-urlencoded` and the base64 forms the sandbox reads and writes.
enum FormEncoding {
    /// Decodes one form component: `+` is a space, `%XX` a byte, the result UTF-8.
    /// Returns nil for a malformed escape or bytes that are not UTF-8. A path segment
    /// (RFC 3986 §3.3) keeps `+` as it is: pass `plusIsSpace: false`.
    static func decodeComponent<S: StringProtocol>(_ s: S, plusIsSpace: Bool = true) -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(s.utf8.count)
        var it = s.utf8.makeIterator()
        while let b = it.next() {
            switch b {
            case UInt8(ascii: "+") where plusIsSpace:
                bytes.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                guard let hi = it.next().flatMap(hexValue), let lo = it.next().flatMap(hexValue) else { return nil }
                bytes.append(hi << 4 | lo)
            default:
                bytes.append(b)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    /// Parses a form body into its pairs, in order, keeping repeats
    /// (RFC 6749 §3.2 forbids them, so the caller needs to see them).
    /// Returns nil if any component is malformed.
    static func parse(_ body: [UInt8]) -> [(name: String, value: String)]? {
        guard let text = String(validating: body, as: UTF8.self) else { return nil }
        var pairs: [(name: String, value: String)] = []
        for field in text.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = field.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = decodeComponent(parts[0]),
                let value = decodeComponent(parts.count > 1 ? parts[1] : "")
            else { return nil }
            pairs.append((name, value))
        }
        return pairs
    }

    static func base64URL(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
