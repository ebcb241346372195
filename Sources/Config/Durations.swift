/// Parses a duration such as `500ms`, `5s`, `2m`, `1h`, `1m30s` or `1.5s`.
///
/// Units: `ns`, `us`, `ms`, `s`, `m`, `h`. Several number-unit pairs may follow each
/// other; a leading `-` negates the whole. A number without a unit (`30`) is rejected
/// because it is ambiguous. Returns nil for anything else.
public func parseDuration(_ text: String) -> Duration? {
    var chars = Substring(text)
    var negative = false
    if chars.first == "-" {
        negative = true
        chars = chars.dropFirst()
    }
    guard !chars.isEmpty else { return nil }

    var totalNanoseconds: Int64 = 0
    while !chars.isEmpty {
        let whole = chars.prefix(while: \.isASCIIDigit)
        chars = chars.dropFirst(whole.count)
        var fraction: Substring = ""
        if chars.first == "." {
            chars = chars.dropFirst()
            fraction = chars.prefix(while: \.isASCIIDigit)
            chars = chars.dropFirst(fraction.count)
            guard !fraction.isEmpty, fraction.count <= 9 else { return nil }
        }
        guard !whole.isEmpty || !fraction.isEmpty else { return nil }

        let unitText = chars.prefix(while: { $0.isLetter })
        chars = chars.dropFirst(unitText.count)
        guard let unit = durationUnits[String(unitText)] else { return nil }

        guard let wholeValue = Int64(whole.isEmpty ? "0" : whole),
              case let (wholeNs, o1) = wholeValue.multipliedReportingOverflow(by: unit), !o1
        else { return nil }
        var partNs = wholeNs
        if !fraction.isEmpty {
            // fraction × unit / 10^digits, exact for every unit up to an hour.
            var scale: Int64 = 1
            for _ in 0..<fraction.count { scale *= 10 }
            guard let fractionValue = Int64(fraction) else { return nil }
            let (fractionNs, o2) = fractionValue.multipliedReportingOverflow(by: unit)
            guard !o2 else { return nil }
            let (sum, o3) = partNs.addingReportingOverflow(fractionNs / scale)
            guard !o3 else { return nil }
            partNs = sum
        }
        let (sum, overflow) = totalNanoseconds.addingReportingOverflow(partNs)
        guard !overflow else { return nil }
        totalNanoseconds = sum
    }
    return .nanoseconds(negative ? -totalNanoseconds : totalNanoseconds)
}

/// Formats a duration so that `parseDuration` reads it back: `500ms`, `5s`, `1m`, `90s`, `1h30m`.
public func formatDuration(_ duration: Duration) -> String {
    let (seconds, attoseconds) = duration.components
    // Whole nanoseconds are all the parser can express.
    let (scaled, o1) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
    let (total, o2) = scaled.addingReportingOverflow(attoseconds / 1_000_000_000)
    guard !o1, !o2 else { return "\(seconds)s" }
    if total == 0 { return "0s" }
    let sign = total < 0 ? "-" : ""
    var rest = total.magnitude

    var mixed = ""
    for (unit, size) in formattingUnits where rest >= size {
        mixed += "\(rest / size)\(unit)"
        rest %= size
    }
    // Prefer a single unit when it is shorter: "90s" over "1m30s", "1m" over "60s".
    var best = mixed
    for (unit, size) in formattingUnits where total.magnitude % size == 0 {
        let single = "\(total.magnitude / size)\(unit)"
        if single.count < best.count { best = single }
    }
    return sign + best
}

private let durationUnits: [String: Int64] = [
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
]

private let formattingUnits: [(String, UInt64)] = [
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
]

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
