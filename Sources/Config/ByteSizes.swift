/// Parses a byte count: `512`, `512B`, `64KiB`, `32MiB`, `1GiB` (powers of 1024) or
/// `64KB`, `1MB`, `1GB` (powers of 1000). Space between number and unit is allowed.
/// Returns nil for anything else, including negative numbers and overflow.
public func parseByteSize(_ text: String) -> Int? {
    let digits = text.prefix(while: \.isASCIIDigit)
    guard !digits.isEmpty, let number = Int(digits) else { return nil }
    var unitText = text.dropFirst(digits.count)
    if unitText.first == " " {
        while unitText.first == " " { unitText = unitText.dropFirst() }
        guard !unitText.isEmpty else { return nil }
    }
    guard let multiplier = byteUnits[String(unitText)] else { return nil }
    let (value, overflow) = number.multipliedReportingOverflow(by: multiplier)
    return overflow ? nil : value
}

/// Formats a byte count so that `parseByteSize` reads it back, in the largest binary
/// unit that divides it exactly: `8KiB`, `32MiB`, `1000`.
public func formatByteSize(_ bytes: Int) -> String {
    for (unit, size) in [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
    where bytes != 0 && bytes % size == 0 {
        return "\(bytes / size)\(unit)"
    }
    return "\(bytes)"
}

private let byteUnits: [String: Int] = [
    "": 1,
    "B": 1,
    "KiB": 1 << 10,
    "MiB": 1 << 20,
    "GiB": 1 << 30,
    "KB": 1_000,
    "MB": 1_000_000,
    "GB": 1_000_000_000,
]
