/// A strict RFC 8259 parser from bytes to `JSONValue`: request bodies in the sandbox, token
/// and metadata responses from the IDM.
///
/// Written rather than borrowed from JSONSerialization because a validator must tell `true`
/// from `1` and an integer from `1.0`, which NSNumber blurs. Object members keep their order;
/// a repeated name is kept twice (RFC 8259 §4 leaves it open), and the validator reports it.
public enum JSONParser {
    public struct Failure: Error, Equatable, CustomStringConvertible {
        /// Byte offset of the problem.
        public var offset: Int
        public var reason: String
        public var description: String { "\(reason) at byte \(offset)" }
    }

    /// Nesting deeper than this is refused, so a hostile body cannot exhaust the stack.
    public static let maximumDepth = 64

    public static func parse(_ bytes: [UInt8]) throws(Failure) -> JSONValue {
        var reader = Reader(bytes: bytes)
        reader.skipWhitespace()
        let value = try reader.value(depth: 0)
        reader.skipWhitespace()
        guard reader.offset == bytes.count else { throw Failure(offset: reader.offset, reason: "unexpected data after the value") }
        return value
    }

    private struct Reader {
        let bytes: [UInt8]
        var offset = 0

        var peek: UInt8? { offset < bytes.count ? bytes[offset] : nil }

        mutating func skipWhitespace() {
            while let b = peek, b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { offset += 1 }
        }

        func fail(_ reason: String) -> Failure { Failure(offset: offset, reason: reason) }

        mutating func expect(_ literal: String, _ value: JSONValue) throws(Failure) -> JSONValue {
            for byte in literal.utf8 {
                guard peek == byte else { throw fail("invalid literal") }
                offset += 1
            }
            return value
        }

        mutating func value(depth: Int) throws(Failure) -> JSONValue {
            guard depth < JSONParser.maximumDepth else { throw fail("nesting too deep") }
            switch peek {
            case UInt8(ascii: "{"): return try object(depth: depth)
            case UInt8(ascii: "["): return try array(depth: depth)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): return try expect("true", .bool(true))
            case UInt8(ascii: "f"): return try expect("false", .bool(false))
            case UInt8(ascii: "n"): return try expect("null", .null)
            case let b? where b == UInt8(ascii: "-") || (0x30...0x39).contains(b): return try number()
            case nil: throw fail("unexpected end of data")
            default: throw fail("unexpected character")
            }
        }

        mutating func object(depth: Int) throws(Failure) -> JSONValue {
            offset += 1
            var members: [(String, JSONValue)] = []
            skipWhitespace()
            if peek == UInt8(ascii: "}") { offset += 1; return .object(members) }
            while true {
                skipWhitespace()
                guard peek == UInt8(ascii: "\"") else { throw fail("expected a member name") }
                let name = try string()
                skipWhitespace()
                guard peek == UInt8(ascii: ":") else { throw fail("expected ':'") }
                offset += 1
                skipWhitespace()
                members.append((name, try value(depth: depth + 1)))
                skipWhitespace()
                switch peek {
                case UInt8(ascii: ","): offset += 1
                case UInt8(ascii: "}"): offset += 1; return .object(members)
                default: throw fail("expected ',' or '}'")
                }
            }
        }

        mutating func array(depth: Int) throws(Failure) -> JSONValue {
            offset += 1
            var items: [JSONValue] = []
            skipWhitespace()
            if peek == UInt8(ascii: "]") { offset += 1; return .array(items) }
            while true {
                skipWhitespace()
                items.append(try value(depth: depth + 1))
                skipWhitespace()
                switch peek {
                case UInt8(ascii: ","): offset += 1
                case UInt8(ascii: "]"): offset += 1; return .array(items)
                default: throw fail("expected ',' or ']'")
                }
            }
        }

        /// RFC 8259 §6: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
        mutating func number() throws(Failure) -> JSONValue {
            let start = offset
            var integral = true
            if peek == UInt8(ascii: "-") { offset += 1 }
            func digits(_ reader: inout Reader) -> Int {
                var count = 0
                while let b = reader.peek, (0x30...0x39).contains(b) { reader.offset += 1; count += 1 }
                return count
            }
            if peek == UInt8(ascii: "0") {
                offset += 1
            } else {
                guard digits(&self) > 0 else { throw fail("invalid number") }
            }
            if peek == UInt8(ascii: ".") {
                offset += 1
                integral = false
                guard digits(&self) > 0 else { throw fail("invalid number") }
            }
            if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
                offset += 1
                integral = false
                if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { offset += 1 }
                guard digits(&self) > 0 else { throw fail("invalid number") }
            }
            let text = String(decoding: bytes[start..<offset], as: UTF8.self)
            if integral, let int = Int(text) { return .int(int) }
            return .number(text)
        }

        mutating func string() throws(Failure) -> String {
            offset += 1
            var scalars = String.UnicodeScalarView()
            var runStart = offset
            func flush(_ reader: Reader, to end: Int) throws(Failure) {
                guard let run = String(validating: reader.bytes[runStart..<end], as: UTF8.self) else {
                    throw Failure(offset: runStart, reason: "invalid UTF-8")
                }
                scalars.append(contentsOf: run.unicodeScalars)
            }
            while true {
                guard let b = peek else { throw fail("unterminated string") }
                if b == UInt8(ascii: "\"") {
                    try flush(self, to: offset)
                    offset += 1
                    return String(scalars)
                }
                if b < 0x20 { throw fail("control character in string") }
                if b != UInt8(ascii: "\\") { offset += 1; continue }
                try flush(self, to: offset)
                offset += 1
                guard let escape = peek else { throw fail("unterminated string") }
                offset += 1
                switch escape {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    var code = try hex4()
                    // A UTF-16 surrogate pair spells one scalar outside the BMP (RFC 8259 §7).
                    if (0xD800...0xDBFF).contains(code) {
                        guard peek == UInt8(ascii: "\\"), offset + 1 < bytes.count, bytes[offset + 1] == UInt8(ascii: "u") else {
                            throw fail("unpaired surrogate")
                        }
                        offset += 2
                        let low = try hex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw fail("unpaired surrogate") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let scalar = Unicode.Scalar(code) else { throw fail("unpaired surrogate") }
                    scalars.append(scalar)
                default:
                    throw fail("invalid escape")
                }
                runStart = offset
            }
        }

        mutating func hex4() throws(Failure) -> UInt32 {
            guard offset + 4 <= bytes.count else { throw fail("short \\u escape") }
            var code: UInt32 = 0
            for _ in 0..<4 {
                let b = bytes[offset]
                let digit: UInt32
                switch b {
                case 0x30...0x39: digit = UInt32(b - 0x30)
                case 0x41...0x46: digit = UInt32(b - 0x41 + 10)
                case 0x61...0x66: digit = UInt32(b - 0x61 + 10)
                default: throw fail("invalid \\u escape")
                }
                code = code << 4 | digit
                offset += 1
            }
            return code
        }
    }
}

extension JSONValue {
    /// The member with this name, for objects.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.0 == key }?.1
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var intValue: Int? {
        if case .int(let i) = self { return i }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let items) = self { return items }
        return nil
    }

    /// Any number, integer or not, as a Double (which may round a long one).
    public var doubleValue: Double? {
        switch self {
        case .int(let i): Double(i)
        case .number(let text): Double(text)
        default: nil
        }
    }
}
