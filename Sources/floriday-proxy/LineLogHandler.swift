import Foundation
import Logging
import Proxy

/// One line per event on standard error: `text` for people, `json` for log collectors.
///
/// The access log writes a line per request, so this is on the hot path: the line is built
/// as bytes in one buffer, without Foundation formatting, and handed whole to `LogOutput`,
/// which writes it on a thread of its own (a slow reader of standard error never stalls
/// the event loops; see `LogOutput`).
struct LineLogHandler: LogHandler {
    enum Format { case text, json }

    let label: String
    let format: Format
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = event.metadata ?? [:]
        if !metadata.isEmpty { merged.merge(metadata) { fromEvent, _ in fromEvent } }
        let line = Self.render(level: event.level, message: "\(event.message)", metadata: merged, format: format)
        line.withUnsafeBytes { LogOutput.standardError.write($0) }
    }

    /// One line, newline included. Keys are sorted, so lines of one kind line up.
    static func render(level: Logger.Level, message: String, metadata: Logger.Metadata, format: Format) -> [UInt8] {
        var line: [UInt8] = []
        line.reserveCapacity(320)
        let entries = metadata.sorted { $0.key < $1.key }
        switch format {
        case .text:
            appendTimestamp(to: &line)
            line.append(0x20)
            line.append(contentsOf: levelNames[level]!.utf8)
            line.append(0x20)
            line.append(contentsOf: message.utf8)
            for (key, value) in entries {
                line.append(0x20)
                line.append(contentsOf: key.utf8)
                line.append(UInt8(ascii: "="))
                let text = string(value)
                // Quoted (JSON rules) when it would otherwise be ambiguous or break the line.
                if text.isEmpty || text.utf8.contains(where: { $0 <= 0x20 || $0 == UInt8(ascii: "\"") || $0 == 0x7F }) {
                    appendJSONString(text, to: &line)
                } else {
                    line.append(contentsOf: text.utf8)
                }
            }
        case .json:
            line.append(contentsOf: #"{"time":""#.utf8)
            appendTimestamp(to: &line)
            line.append(contentsOf: #"","level":""#.utf8)
            line.append(contentsOf: level.rawValue.utf8)
            line.append(contentsOf: #"","msg":"#.utf8)
            appendJSONString(message, to: &line)
            for (key, value) in entries {
                line.append(UInt8(ascii: ","))
                appendJSONString(key, to: &line)
                line.append(UInt8(ascii: ":"))
                appendJSONString(string(value), to: &line)
            }
            line.append(UInt8(ascii: "}"))
        }
        line.append(0x0A)
        return line
    }

    private static let levelNames: [Logger.Level: String] = Dictionary(
        uniqueKeysWithValues: Logger.Level.allCases.map { ($0, $0.rawValue.uppercased()) })

    private static func string(_ value: Logger.MetadataValue) -> String {
        if case .string(let text) = value { return text }
        return "\(value)"
    }

    /// `text` as a JSON string (RFC 8259 §7): quotes, backslashes and control characters
    /// escaped, everything else copied as UTF-8.
    static func appendJSONString(_ text: String, to line: inout [UInt8]) {
        line.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): line.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): line.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: line.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: line.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: line.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20, 0x7F:
                let hex: StaticString = "0123456789abcdef"
                line.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                         hex.utf8Start[Int(byte >> 4)], hex.utf8Start[Int(byte & 0x0F)]])
            default: line.append(byte)
            }
        }
        line.append(UInt8(ascii: "\""))
    }

    /// RFC 3339 UTC with milliseconds, e.g. 2026-11-29T05:25:11.160Z.
    static func appendTimestamp(to line: inout [UInt8]) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func digits(_ value: Int, _ width: Int) {
            var divisor = 1
            for _ in 1..<width { divisor *= 10 }
            var rest = value
            while divisor > 0 {
                line.append(UInt8(ascii: "0") + UInt8(rest / divisor))
                rest %= divisor
                divisor /= 10
            }
        }
        digits(Int(parts.tm_year) + 1900, 4); line.append(UInt8(ascii: "-"))
        digits(Int(parts.tm_mon) + 1, 2); line.append(UInt8(ascii: "-"))
        digits(Int(parts.tm_mday), 2); line.append(UInt8(ascii: "T"))
        digits(Int(parts.tm_hour), 2); line.append(UInt8(ascii: ":"))
        digits(Int(parts.tm_min), 2); line.append(UInt8(ascii: ":"))
        digits(Int(parts.tm_sec), 2); line.append(UInt8(ascii: "."))
        digits(Int(now.tv_nsec) / 1_000_000, 3); line.append(UInt8(ascii: "Z"))
    }
}
