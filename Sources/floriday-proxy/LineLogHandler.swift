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
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let line = Self.render(level: event.level, message: "\(event.message)", metadata: merged, format: format)
        line.withUnsafeBytes { LogOutput.standardError.write($0) }
    }

    /// One line, newline included.
    static func render(level: Logger.Level, message: String, metadata merged: Logger.Metadata, format: Format) -> [UInt8] {
        var line: [UInt8] = []
        line.reserveCapacity(256)
        let keys = merged.keys.sorted()
        switch format {
        case .text:
            Self.appendTimestamp(to: &line)
            line.append(0x20)
            line.append(contentsOf: level.rawValue.uppercased().utf8)
            line.append(0x20)
            line.append(contentsOf: message.utf8)
            for key in keys {
                line.append(0x20)
                line.append(contentsOf: key.utf8)
                line.append(UInt8(ascii: "="))
                let value = "\(merged[key]!)"
                if value.isEmpty || value.utf8.contains(0x20) || value.utf8.contains(UInt8(ascii: "\"")) {
                    line.append(contentsOf: jsonString(value).utf8)
                } else {
                    line.append(contentsOf: value.utf8)
                }
            }
        case .json:
            line.append(contentsOf: #"{"time":""#.utf8)
            Self.appendTimestamp(to: &line)
            line.append(contentsOf: #"","level":""#.utf8)
            line.append(contentsOf: level.rawValue.utf8)
            line.append(contentsOf: #"","msg":"#.utf8)
            line.append(contentsOf: jsonString(message).utf8)
            for key in keys {
                line.append(UInt8(ascii: ","))
                line.append(contentsOf: jsonString(key).utf8)
                line.append(UInt8(ascii: ":"))
                line.append(contentsOf: jsonString("\(merged[key]!)").utf8)
            }
            line.append(UInt8(ascii: "}"))
        }
        line.append(0x0A)
        return line
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
