import Foundation
import JSON

/// Failing fields, in the order found, each with its messages: the `errors` member of an
/// ASP.NET `ValidationProblemDetails`.
struct ValidationErrors: Sendable {
    private(set) var fields: [(field: String, messages: [String])] = []

    var isEmpty: Bool { fields.isEmpty }

    mutating func add(_ field: String, _ message: String) {
        if let i = fields.firstIndex(where: { $0.field == field }) {
            fields[i].messages.append(message)
        } else {
            fields.append((field, [message]))
        }
    }

    var json: JSONValue {
        .object(fields.map { ($0.field, .array($0.messages.map { .string($0) })) })
    }
}

/// Checks a JSON value against a schema of a description: required properties, types, enums,
/// formats (`uuid`, `date-time`, `date`, `int32`, `int64`), bounds, lengths and patterns.
/// Properties the schema does not name are ignored, as ASP.NET's JSON binding ignores them.
/// The same checks serve request bodies (the sandbox) and response bodies (the tests).
struct SchemaValidator {
    let description: APIDescription

    /// Validates `value` at `field` (a JSON path such as `packingConfigurations[0].piecesPerPackage`;
    /// empty for the root).
    func validate(_ value: JSONValue, _ schema: Schema, field: String, required: Bool = true, into errors: inout ValidationErrors) {
        validate(value, schema, field: field, required: required, depth: 0, into: &errors)
    }

    private func validate(
        _ value: JSONValue, _ unresolved: Schema, field: String, required: Bool, depth: Int, into errors: inout ValidationErrors
    ) {
        guard depth < JSONParser.maximumDepth else { return }
        guard let schema = description.resolve(unresolved) else {
            errors.add(field, "The schema of the \(label(field)) field cannot be resolved.")
            return
        }
        if case .null = value {
            // NSwag marks optional members by leaving them out of `required`; those, and
            // anything marked `x-nullable`, may be null.
            if required && !(schema.nullable || unresolved.nullable) {
                errors.add(field, "The \(label(field)) field is required.")
            }
            return
        }
        // A schema with properties but no `type` is an object all the same.
        switch schema.type ?? (schema.properties.isEmpty ? nil : "object") {
        case "object":
            guard case .object(let members) = value else { return mismatch(value, field, "an object", &errors) }
            var seen = Set<String>()
            for (name, _) in members where !seen.insert(name).inserted {
                errors.add(join(field, name), "The \(name) property is given more than once.")
            }
            for (name, child) in schema.properties {
                let childRequired = schema.required.contains(name)
                if let member = members.first(where: { $0.0 == name })?.1 {
                    validate(member, child, field: join(field, name), required: childRequired, depth: depth + 1, into: &errors)
                } else if childRequired {
                    errors.add(join(field, name), "The \(name) field is required.")
                }
            }
            if let extra = schema.additionalProperties {
                let named = Set(schema.properties.map(\.0))
                for (name, member) in members where !named.contains(name) {
                    validate(member, extra, field: join(field, name), required: false, depth: depth + 1, into: &errors)
                }
            }
        case "array":
            guard case .array(let items) = value else { return mismatch(value, field, "an array", &errors) }
            checkCount(items.count, schema, field, &errors)
            if let itemSchema = schema.items {
                for (i, item) in items.enumerated() {
                    validate(item, itemSchema, field: "\(field)[\(i)]", required: true, depth: depth + 1, into: &errors)
                }
            }
        case "string":
            guard case .string(let text) = value else { return mismatch(value, field, "a string", &errors) }
            checkString(text, schema, field, &errors)
        case "integer":
            guard case .int(let number) = value else { return mismatch(value, field, "an integer", &errors) }
            checkInteger(number, schema, field, &errors)
        case "number":
            let number: Double?
            switch value {
            case .int(let i): number = Double(i)
            case .number(let text): number = Double(text)
            default: return mismatch(value, field, "a number", &errors)
            }
            if let number { checkBounds(number, schema, field, &errors) }
        case "boolean":
            guard case .bool = value else { return mismatch(value, field, "true or false", &errors) }
        default:
            // `{}` (any value) and `file`: nothing to check in JSON.
            break
        }
    }

    // MARK: Scalars, shared with the parameter checks

    func checkString(_ text: String, _ schema: Schema, _ field: String, _ errors: inout ValidationErrors) {
        if let values = schema.enumValues, !values.isEmpty, !values.contains(text) {
            errors.add(field, "The value '\(text)' is not valid for \(label(field)); expected one of \(values.joined(separator: ", ")).")
            return
        }
        if let format = schema.format, !Self.matches(format: format, text) {
            errors.add(field, "The value '\(text)' is not valid for \(label(field)): expected a \(format).")
            return
        }
        let length = text.count
        if let min = schema.minLength, length < min {
            errors.add(field, "The field \(label(field)) must be a string with a minimum length of '\(min)'.")
        }
        if let max = schema.maxLength, length > max {
            errors.add(field, "The field \(label(field)) must be a string with a maximum length of '\(max)'.")
        }
        if let pattern = schema.pattern, !Self.matches(pattern: pattern, text) {
            errors.add(field, "The field \(label(field)) must match the regular expression '\(pattern)'.")
        }
    }

    func checkInteger(_ number: Int, _ schema: Schema, _ field: String, _ errors: inout ValidationErrors) {
        if schema.format == "int32", Int32(exactly: number) == nil {
            errors.add(field, "The value '\(number)' is not valid for \(label(field)): expected an int32.")
            return
        }
        checkBounds(Double(number), schema, field, &errors)
    }

    private func checkBounds(_ number: Double, _ schema: Schema, _ field: String, _ errors: inout ValidationErrors) {
        let low = schema.minimum.map { number < $0 } ?? false
        let high = schema.maximum.map { number > $0 } ?? false
        if low || high {
            let min = schema.minimum.map(Self.text) ?? "-∞"
            let max = schema.maximum.map(Self.text) ?? "∞"
            errors.add(field, "The field \(label(field)) must be between \(min) and \(max).")
        }
    }

    private func checkCount(_ count: Int, _ schema: Schema, _ field: String, _ errors: inout ValidationErrors) {
        if let min = schema.minItems, count < min {
            errors.add(field, "The field \(label(field)) must be an array with a minimum length of '\(min)'.")
        }
        if let max = schema.maxItems, count > max {
            errors.add(field, "The field \(label(field)) must be an array with a maximum length of '\(max)'.")
        }
    }

    private func mismatch(_ value: JSONValue, _ field: String, _ expected: String, _ errors: inout ValidationErrors) {
        errors.add(field, "The JSON value at \(field.isEmpty ? "$" : "$." + field) could not be converted: expected \(expected).")
    }

    private func label(_ field: String) -> String { field.isEmpty ? "request body" : field }

    private func join(_ parent: String, _ name: String) -> String { parent.isEmpty ? name : parent + "." + name }

    static func text(_ number: Double) -> String {
        number == number.rounded() && abs(number) < 1e15 ? String(Int(number)) : String(number)
    }

    // MARK: Formats

    static func matches(format: String, _ text: String) -> Bool {
        switch format {
        case "uuid": isUUID(text)
        case "date-time": isDateTime(text)
        case "date": isDate(Array(text.utf8)[...])
        case "uri": URL(string: text)?.scheme != nil
        default: true
        }
    }

    /// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, hex digits in either case.
    static func isUUID(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 36 else { return false }
        for (i, b) in bytes.enumerated() {
            if [8, 13, 18, 23].contains(i) {
                guard b == UInt8(ascii: "-") else { return false }
            } else {
                guard isHex(b) else { return false }
            }
        }
        return true
    }

    /// RFC 3339 §5.6 `full-date`: `YYYY-MM-DD`.
    static func isDate(_ b: ArraySlice<UInt8>) -> Bool {
        let s = Array(b)
        guard s.count == 10, s[4] == UInt8(ascii: "-"), s[7] == UInt8(ascii: "-"),
            let month = number(s[5..<7]), let day = number(s[8..<10]), number(s[0..<4]) != nil
        else { return false }
        return (1...12).contains(month) && (1...31).contains(day)
    }

    /// RFC 3339 §5.6 `date-time`: `full-date "T" HH:MM:SS[.frac] (Z | ±HH:MM)`. ASP.NET also
    /// binds a date-time without an offset (local time), so the offset may be missing.
    static func isDateTime(_ text: String) -> Bool {
        let s = Array(text.utf8)
        guard s.count >= 19, isDate(s[0..<10]), s[10] == UInt8(ascii: "T") || s[10] == UInt8(ascii: "t"),
            s[13] == UInt8(ascii: ":"), s[16] == UInt8(ascii: ":"),
            let hour = number(s[11..<13]), let minute = number(s[14..<16]), let second = number(s[17..<19]),
            hour < 24, minute < 60, second < 61
        else { return false }
        var i = 19
        if i < s.count, s[i] == UInt8(ascii: ".") {
            i += 1
            let start = i
            while i < s.count, isDigit(s[i]) { i += 1 }
            guard i > start else { return false }
        }
        if i == s.count { return true }
        if s[i] == UInt8(ascii: "Z") || s[i] == UInt8(ascii: "z") { return i + 1 == s.count }
        // `±HH:MM`, or `±HHMM` as Python's `%z` writes it (.NET's parser takes both).
        guard s[i] == UInt8(ascii: "+") || s[i] == UInt8(ascii: "-") else { return false }
        let offset = Array(s[(i + 1)...].filter { $0 != UInt8(ascii: ":") })
        let colons = s.count - (i + 1) - offset.count
        guard offset.count == 4, colons == 0 || (colons == 1 && s.count == i + 6 && s[i + 3] == UInt8(ascii: ":")),
            let h = number(offset[0..<2]), let m = number(offset[2..<4])
        else { return false }
        return h < 24 && m < 60
    }

    static func matches(pattern: String, _ text: String) -> Bool {
        guard let regex = try? NSRegularExpression(pattern: pattern) else { return true }
        let range = NSRange(text.startIndex..., in: text)
        return regex.firstMatch(in: text, range: range) != nil
    }

    private static func isDigit(_ b: UInt8) -> Bool { (0x30...0x39).contains(b) }
    private static func isHex(_ b: UInt8) -> Bool { isDigit(b) || (0x41...0x46).contains(b) || (0x61...0x66).contains(b) }

    private static func number(_ digits: ArraySlice<UInt8>) -> Int? {
        var value = 0
        for b in digits {
            guard isDigit(b) else { return nil }
            value = value * 10 + Int(b - 0x30)
        }
        return value
    }
}
