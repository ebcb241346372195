import Foundation
import Logging
import Proxy

/// One line per event on standard error: `text` for people, `json` for log collectors.
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
        let time = Self.timestamp()
        var line: String
        switch format {
        case .text:
            line = "\(time) \(event.level.rawValue.uppercased()) \(event.message)"
            for key in merged.keys.sorted() { line += " \(key)=\(Self.textValue(merged[key]!))" }
        case .json:
            line = "{\"time\":\"\(time)\",\"level\":\"\(event.level.rawValue)\",\"msg\":\(Self.quote("\(event.message)"))"
            for key in merged.keys.sorted() { line += ",\(Self.quote(key)):\(Self.quote("\(merged[key]!)"))" }
            line += "}"
        }
        line += "\n"
        FileHandle.standardError.write(Data(line.utf8))
    }

    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var tm = tm()
        var seconds = now.tv_sec
        gmtime_r(&seconds, &tm)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                      tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1_000_000)
    }

    static func textValue(_ value: Logger.MetadataValue) -> String {
        let text = "\(value)"
        return text.contains(" ") || text.isEmpty ? quote(text) : text
    }

    static func quote(_ text: String) -> String { jsonString(text) }
}
