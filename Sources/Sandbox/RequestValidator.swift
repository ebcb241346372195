import Foundation
import JSON

/// Checks a request against its operation: path and query parameters against their declared
/// types, formats, enums and bounds (required ones must be there), and a JSON body against its
/// schema. What fails is named field by field, as ASP.NET model binding names it: a parameter
/// by its name, a body member by its JSON path.
struct RequestValidator {
    let description: APIDescription

    enum Outcome {
        case valid(body: JSONValue?)
        /// 400 with a `ValidationProblemDetails` naming each field.
        case invalid(ValidationErrors)
        /// 415: a body operation given something other than JSON.
        case unsupportedMediaType
    }

    func validate(
        _ operation: APIOperation, pathParameters: [String: String], query: [(name: String, value: String)],
        contentType: String?, body: [UInt8]
    ) -> Outcome {
        var errors = ValidationErrors()
        let schemas = SchemaValidator(description: description)
        for parameter in operation.parameters {
            switch parameter.location {
            case .path:
                guard let value = pathParameters[parameter.name] else {
                    errors.add(parameter.name, "The \(parameter.name) field is required.")
                    continue
                }
                checkParameter(value, parameter, schemas, &errors)
            case .query:
                let values = queryValues(parameter, query)
                if values.isEmpty || (values.count == 1 && values[0].isEmpty && parameter.schema.type != "string") {
                    if parameter.required { errors.add(parameter.name, "The \(parameter.name) field is required.") }
                    continue
                }
                if parameter.schema.type == "array" {
                    let itemSchema = parameter.schema.items ?? Schema(type: "string")
                    for value in values {
                        checkParameter(value, APIParameter(name: parameter.name, location: .query, required: true, schema: itemSchema, collectionFormat: nil), schemas, &errors)
                    }
                    if let max = parameter.schema.maxItems, values.count > max {
                        errors.add(parameter.name, "The field \(parameter.name) must be an array with a maximum length of '\(max)'.")
                    }
                } else {
                    if values.count > 1 {
                        errors.add(parameter.name, "The \(parameter.name) parameter is given more than once.")
                    }
                    checkParameter(values[0], parameter, schemas, &errors)
                }
            case .header, .formData:
                break
            case .body:
                break
            }
        }

        var parsedBody: JSONValue?
        if let bodyParameter = operation.parameters.first(where: { $0.location == .body }) {
            if body.isEmpty {
                if bodyParameter.required {
                    errors.add(bodyParameter.name, "A non-empty request body is required.")
                }
            } else {
                guard Self.isJSON(contentType) else { return .unsupportedMediaType }
                do {
                    let value = try JSONParser.parse(body)
                    parsedBody = value
                    schemas.validate(value, bodyParameter.schema, field: "", into: &errors)
                } catch {
                    errors.add("$", "The request body is not valid JSON: \(error).")
                    errors.add(bodyParameter.name, "The \(bodyParameter.name) field is required.")
                }
            }
        }
        if let file = operation.parameters.first(where: { $0.location == .formData && $0.required }) {
            let type = contentType?.lowercased() ?? ""
            if !type.hasPrefix("multipart/form-data") {
                if !body.isEmpty && !type.isEmpty { return .unsupportedMediaType }
                errors.add(file.name, "The \(file.name) field is required.")
            } else if !Self.contains(body, Array("name=\"\(file.name)\"".utf8)) {
                errors.add(file.name, "The \(file.name) field is required.")
            }
        }
        return errors.isEmpty ? .valid(body: parsedBody) : .invalid(errors)
    }

    /// The values given for a query parameter: `name=a&name=b` (`multi`) or `name=a,b` (`csv`).
    private func queryValues(_ parameter: APIParameter, _ query: [(name: String, value: String)]) -> [String] {
        // ASP.NET binds query names case-insensitively.
        let wanted = parameter.name.lowercased()
        let values = query.filter { $0.name.lowercased() == wanted }.map(\.value)
        if parameter.schema.type == "array", (parameter.collectionFormat ?? "csv") == "csv" {
            return values.flatMap { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        }
        return values
    }

    /// A path or query value is text; it is read as the declared type first.
    private func checkParameter(_ text: String, _ parameter: APIParameter, _ schemas: SchemaValidator, _ errors: inout ValidationErrors) {
        let schema = description.resolve(parameter.schema) ?? parameter.schema
        let name = parameter.name
        switch schema.type {
        case "integer":
            guard let number = Int(text) else {
                errors.add(name, "The value '\(text)' is not valid for \(name): expected an integer.")
                return
            }
            schemas.checkInteger(number, schema, name, &errors)
        case "number":
            guard Double(text) != nil else {
                errors.add(name, "The value '\(text)' is not valid for \(name): expected a number.")
                return
            }
        case "boolean":
            guard ["true", "false"].contains(text.lowercased()) else {
                errors.add(name, "The value '\(text)' is not valid for \(name): expected true or false.")
                return
            }
        default:
            // ASP.NET binds enum names case-insensitively.
            if let values = schema.enumValues, let canonical = values.first(where: { $0.lowercased() == text.lowercased() }) {
                schemas.checkString(canonical, schema, name, &errors)
            } else {
                schemas.checkString(text, schema, name, &errors)
            }
        }
    }

    /// `application/json`, `text/json` and `application/*+json`, the types the descriptions consume.
    static func isJSON(_ contentType: String?) -> Bool {
        guard let contentType else { return false }
        let type = contentType.split(separator: ";")[0].trimmingCharacters(in: .whitespaces).lowercased()
        return type == "application/json" || type == "text/json" || (type.hasPrefix("application/") && type.hasSuffix("+json"))
    }

    private static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, haystack.count >= needle.count else { return false }
        for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
            if haystack[start..<(start + needle.count)].elementsEqual(needle) { return true }
        }
        return false
    }
}
