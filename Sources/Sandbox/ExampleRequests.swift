import JSON
/// Valid requests for an operation, made from its description: every path parameter and
/// required query parameter filled with a value of its type, and a body generated from the
/// body schema. For walking every operation (tests, `sandbox --list`'s examples) and for
/// breaking one field at a time to see the 400 name it.
public struct ExampleRequest: Sendable {
    public var method: String
    /// Path and query after the base path, e.g. `/trade-items/4f…?page=1`.
    public var target: String
    public var body: [UInt8]
    public var contentType: String?
    /// For a broken example: the field the 400 must name.
    public var brokenField: String?
}

extension APIDescription {
    /// A valid request for `operation`.
    public func example(_ operation: APIOperation) -> ExampleRequest {
        build(operation, breaking: nil)
    }

    /// Requests with one field broken each: a path parameter of the wrong type, a required query
    /// parameter left out or out of its range or enum, a required body member left out, a body
    /// member of the wrong type. Each names the field the 400 must name.
    public func brokenExamples(_ operation: APIOperation) -> [ExampleRequest] {
        var broken: [ExampleRequest] = []
        for parameter in operation.parameters where parameter.location == .path || parameter.location == .query {
            let schema = resolve(parameter.schema) ?? parameter.schema
            let bad: String?
            switch (schema.type, schema.format) {
            case ("string", "uuid"), ("string", "date-time"), ("string", "date"): bad = "not-a-\(schema.format!)"
            case ("integer", _): bad = "twelve"
            case ("boolean", _): bad = "maybe"
            case ("string", _) where schema.enumValues?.isEmpty == false: bad = "NOT_IN_THE_ENUM"
            default: bad = nil
            }
            if let bad {
                var request = build(operation, breaking: (parameter.name, bad))
                request.brokenField = parameter.name
                broken.append(request)
            } else if parameter.required && parameter.location == .query {
                var request = build(operation, breaking: (parameter.name, nil))
                request.brokenField = parameter.name
                broken.append(request)
            }
        }
        if let body = operation.parameters.first(where: { $0.location == .body }),
            let schema = resolve(body.schema), schema.type == "object" || !schema.properties.isEmpty
        {
            let generator = BodyGenerator(description: self)
            var rng = SeededRandom(seed: "example " + operation.operationID)
            let valid = generator.value(body.schema, &rng, depth: 1, name: "", overrides: [:])
            if case .object(let members) = valid {
                if let required = schema.properties.first(where: { schema.required.contains($0.0) })?.0 {
                    var request = build(operation, breaking: nil)
                    request.body = JSONValue.object(members.filter { $0.0 != required }).bytes
                    request.brokenField = required
                    broken.append(request)
                }
                if let (name, _) = schema.properties.first(where: { resolve($0.1)?.type == "string" || resolve($0.1)?.type == "integer" }) {
                    var request = build(operation, breaking: nil)
                    request.body = JSONValue.object(members.map { $0.0 == name ? ($0.0, .array([])) : $0 }).bytes
                    request.brokenField = name
                    broken.append(request)
                }
            }
        }
        return broken
    }

    /// `breaking`: a parameter to give this text instead (nil text: to leave out).
    private func build(_ operation: APIOperation, breaking: (name: String, text: String?)?) -> ExampleRequest {
        var path = ""
        var rng = SeededRandom(seed: "example " + operation.operationID)
        for segment in operation.segments {
            switch segment {
            case .literal(let literal): path += "/" + literal
            case .parameter(let name):
                let parameter = operation.parameters.first { $0.name == name && $0.location == .path }
                let text = breaking?.name == name ? breaking?.text ?? "" : parameter.map { value(for: $0, &rng) } ?? "1"
                path += "/" + Self.percentEncoded(text)
            }
        }
        var query: [String] = []
        for parameter in operation.parameters where parameter.location == .query {
            if breaking?.name == parameter.name {
                if let text = breaking?.text { query.append(parameter.name + "=" + Self.percentEncoded(text)) }
            } else if parameter.required {
                query.append(parameter.name + "=" + Self.percentEncoded(value(for: parameter, &rng)))
            }
        }
        var request = ExampleRequest(
            method: operation.method, target: path + (query.isEmpty ? "" : "?" + query.joined(separator: "&")),
            body: [], contentType: nil, brokenField: nil)
        if let body = operation.parameters.first(where: { $0.location == .body }) {
            var bodyRng = SeededRandom(seed: "example " + operation.operationID)
            // Depth 1: arrays of two items, like a body a person would send.
            request.body = BodyGenerator(description: self).value(body.schema, &bodyRng, depth: 1, name: "", overrides: [:]).bytes
            request.contentType = "application/json"
        } else if let file = operation.parameters.first(where: { $0.location == .formData }) {
            let boundary = "sandbox-example-boundary"
            request.contentType = "multipart/form-data; boundary=" + boundary
            request.body = Array((
                "--\(boundary)\r\nContent-Disposition: form-data; name=\"\(file.name)\"; filename=\"a.jpg\"\r\n"
                + "Content-Type: image/jpeg\r\n\r\nnot really a jpeg\r\n--\(boundary)--\r\n").utf8)
        }
        return request
    }

    private func value(for parameter: APIParameter, _ rng: inout SeededRandom) -> String {
        if parameter.name == "sequenceNumber" { return "0" }
        let generated = BodyGenerator(description: self).value(parameter.schema, &rng, depth: 1, name: parameter.name, overrides: [:])
        switch generated {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .number(let n): return n
        case .bool(let b): return b ? "true" : "false"
        // One item: valid both as `csv` and as `multi`.
        case .array(let items): return items.first.map { $0.stringValue ?? $0.serialized } ?? ""
        default: return ""
        }
    }

    /// RFC 3986 §2.1: everything but unreserved characters percent-encoded.
    static func percentEncoded(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            let c = Character(Unicode.Scalar(byte))
            if c.isASCII && (c.isLetter || c.isNumber || "-._~".contains(c)) {
                out.append(c)
            } else {
                out += "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
            }
        }
        return out
    }
}
