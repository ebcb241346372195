import Foundation

/// The part of a Swagger 2.0 description the sandbox serves from: operations with their
/// parameters, scope, rate limit and success response, and the schema definitions.
public struct APIDescription: Sendable {
    /// `suppliers-api` or `customers-api`: the base path without its leading `/` and version.
    public let family: String
    /// `2026v1`.
    public let version: String
    public let operations: [APIOperation]
    let definitions: [String: Schema]

    /// The schema a `$ref` names, following the one-element `allOf` NSwag wraps a reference in
    /// (to attach `x-nullable` to it). Nil for a dangling reference.
    func resolve(_ schema: Schema) -> Schema? {
        var current = schema
        for _ in 0..<16 {
            if let ref = current.ref {
                guard let target = definitions[ref] else { return nil }
                current = target
            } else if current.type == nil, current.allOf.count == 1 {
                current = current.allOf[0]
            } else {
                return current
            }
        }
        return nil
    }
}

/// One operation: a method on a path template.
public struct APIOperation: Sendable {
    public let method: String
    /// The template as the description writes it, e.g. `/trade-items/{tradeItemId}`.
    public let pathTemplate: String
    public let operationID: String
    public let summary: String
    /// The scopes the summary names (`catalog:read - …`, or `a:write, b:write - …`); every
    /// one is needed. Empty for the few operations whose summary names none.
    public let scopes: [String]
    public let rateLimit: RateLimit?
    public let parameters: [APIParameter]
    /// 200, 201 or 204.
    public let successStatus: Int
    /// Nil when the success response has no body.
    let successSchema: Schema?
    let segments: [PathSegment]

    public var isSync: Bool { pathTemplate.hasSuffix("/{sequenceNumber}") && pathTemplate.contains("/sync/") }
}

/// A per-endpoint limit as a summary states it: `rate limit: 3.4 per second - burst limit: 1000`.
public struct RateLimit: Sendable, Equatable, CustomStringConvertible {
    public var perSecond: Double
    public var burst: Int

    public var description: String {
        let rate = perSecond == perSecond.rounded() ? String(Int(perSecond)) : String(perSecond)
        return "\(rate)/s burst \(burst)"
    }

    /// Reads the limit out of an operation's summary; nil when the summary states none.
    public static func parse(summary: String) -> RateLimit? {
        guard let start = summary.range(of: "rate limit: ") else { return nil }
        let rest = summary[start.upperBound...]
        guard let perRange = rest.range(of: " per second"), let perSecond = Double(rest[..<perRange.lowerBound]) else { return nil }
        guard let burstRange = rest.range(of: "burst limit: ") else { return nil }
        let burst = rest[burstRange.upperBound...].prefix { $0.isNumber }
        guard let burstValue = Int(burst) else { return nil }
        return RateLimit(perSecond: perSecond, burst: burstValue)
    }
}

public struct APIParameter: Sendable {
    public enum Location: String, Sendable { case path, query, header, body, formData }
    public let name: String
    public let location: Location
    public let required: Bool
    /// For a body parameter its schema; otherwise a schema made of the parameter's own
    /// `type`, `format`, `enum`, `items`, bounds and pattern.
    let schema: Schema
    /// `multi` repeats the name per value; `csv` (the default) separates values with commas.
    let collectionFormat: String?
}

enum PathSegment: Sendable, Equatable {
    case literal(String)
    case parameter(String)
}

/// A JSON schema as Swagger 2.0 and the Floriday descriptions use it.
final class Schema: Sendable {
    let type: String?
    let format: String?
    /// A definition name, from `#/definitions/Name`.
    let ref: String?
    let allOf: [Schema]
    /// Floriday's enums are all strings.
    let enumValues: [String]?
    let items: Schema?
    let properties: [(String, Schema)]
    let required: Set<String>
    let additionalProperties: Schema?
    let minimum: Double?
    let maximum: Double?
    let minLength: Int?
    let maxLength: Int?
    let minItems: Int?
    let maxItems: Int?
    let pattern: String?
    let nullable: Bool

    init(type: String? = nil, format: String? = nil, ref: String? = nil, allOf: [Schema] = [],
         enumValues: [String]? = nil, items: Schema? = nil, properties: [(String, Schema)] = [],
         required: Set<String> = [], additionalProperties: Schema? = nil, minimum: Double? = nil,
         maximum: Double? = nil, minLength: Int? = nil, maxLength: Int? = nil, minItems: Int? = nil,
         maxItems: Int? = nil, pattern: String? = nil, nullable: Bool = false) {
        self.type = type
        self.format = format
        self.ref = ref
        self.allOf = allOf
        self.enumValues = enumValues
        self.items = items
        self.properties = properties
        self.required = required
        self.additionalProperties = additionalProperties
        self.minimum = minimum
        self.maximum = maximum
        self.minLength = minLength
        self.maxLength = maxLength
        self.minItems = minItems
        self.maxItems = maxItems
        self.pattern = pattern
        self.nullable = nullable
    }

    /// Reads a schema object (or a non-body parameter, which carries the same keywords).
    convenience init(_ json: [String: Any], keyOrder: [String] = []) {
        let refText = json["$ref"] as? String
        var properties: [(String, Schema)] = []
        if let props = json["properties"] as? [String: Any] {
            // JSONSerialization forgets member order; the description's order is kept by
            // `keyOrder` where the caller knows it, else names are sorted for determinism.
            let names = keyOrder.isEmpty ? props.keys.sorted() : keyOrder.filter { props[$0] != nil }
            for name in names {
                if let child = props[name] as? [String: Any] { properties.append((name, Schema(child))) }
            }
        }
        self.init(
            type: json["type"] as? String,
            format: json["format"] as? String,
            ref: refText.map { String($0.split(separator: "/").last ?? "") },
            allOf: (json["allOf"] as? [[String: Any]])?.map { Schema($0) } ?? [],
            enumValues: (json["enum"] as? [Any])?.compactMap { $0 as? String },
            items: (json["items"] as? [String: Any]).map { Schema($0) },
            properties: properties,
            required: Set(json["required"] as? [String] ?? []),
            additionalProperties: (json["additionalProperties"] as? [String: Any]).map { Schema($0) },
            minimum: (json["minimum"] as? NSNumber)?.doubleValue,
            maximum: (json["maximum"] as? NSNumber)?.doubleValue,
            minLength: (json["minLength"] as? NSNumber)?.intValue,
            maxLength: (json["maxLength"] as? NSNumber)?.intValue,
            minItems: (json["minItems"] as? NSNumber)?.intValue,
            maxItems: (json["maxItems"] as? NSNumber)?.intValue,
            pattern: json["pattern"] as? String,
            nullable: (json["x-nullable"] as? NSNumber)?.boolValue ?? false)
    }
}

extension APIDescription {
    struct LoadError: Error, CustomStringConvertible {
        var description: String
    }

    /// Reads one Swagger 2.0 document.
    init(swagger data: Data) throws {
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
            let basePath = root["basePath"] as? String,
            let paths = root["paths"] as? [String: Any]
        else { throw LoadError(description: "not a Swagger 2.0 document with basePath and paths") }
        // "/suppliers-api-2026v1" → family "suppliers-api", version "2026v1".
        let base = basePath.drop { $0 == "/" }
        guard let dash = base.lastIndex(of: "-") else { throw LoadError(description: "basePath \(basePath) has no version") }
        family = String(base[..<dash])
        version = String(base[base.index(after: dash)...])

        var definitions: [String: Schema] = [:]
        for (name, value) in root["definitions"] as? [String: Any] ?? [:] {
            if let json = value as? [String: Any] { definitions[name] = Schema(json) }
        }
        self.definitions = definitions

        var operations: [APIOperation] = []
        for template in paths.keys.sorted() {
            guard let item = paths[template] as? [String: Any] else { continue }
            for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
                guard let op = item[method] as? [String: Any] else { continue }
                operations.append(Self.operation(method: method, template: template, op))
            }
        }
        self.operations = operations
    }

    private static func operation(method: String, template: String, _ op: [String: Any]) -> APIOperation {
        let summary = op["summary"] as? String ?? ""
        var parameters: [APIParameter] = []
        for json in op["parameters"] as? [[String: Any]] ?? [] {
            guard let name = json["name"] as? String, let location = APIParameter.Location(rawValue: json["in"] as? String ?? "")
            else { continue }
            let schema = location == .body ? Schema(json["schema"] as? [String: Any] ?? [:]) : Schema(json)
            parameters.append(APIParameter(
                name: name, location: location, required: (json["required"] as? NSNumber)?.boolValue ?? (location == .path),
                schema: schema, collectionFormat: json["collectionFormat"] as? String))
        }
        let responses = op["responses"] as? [String: Any] ?? [:]
        let status = ["200", "201", "204", "202"].first { responses[$0] != nil } ?? "200"
        let schema = ((responses[status] as? [String: Any])?["schema"] as? [String: Any]).map { Schema($0) }
        return APIOperation(
            method: method.uppercased(), pathTemplate: template, operationID: op["operationId"] as? String ?? "",
            summary: summary, scopes: scopes(inSummary: summary), rateLimit: RateLimit.parse(summary: summary),
            parameters: parameters, successStatus: Int(status) ?? 200, successSchema: schema,
            segments: PathSegment.parse(template: template))
    }

    /// `catalog:read - Returns…` → ["catalog:read"]; `sales-order:write, sticker:write - …` → both.
    /// A summary whose first part is not a list of `area:access` names states no scope.
    static func scopes(inSummary summary: String) -> [String] {
        guard let first = summary.components(separatedBy: " - ").first else { return [] }
        let names = first.components(separatedBy: ", ")
        let valid = names.allSatisfy { name in
            let parts = name.split(separator: ":", omittingEmptySubsequences: false)
            return parts.count == 2 && parts.allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.isLowercase || $0 == "-" } }
        }
        return valid ? names : []
    }
}

extension PathSegment {
    static func parse(template: String) -> [PathSegment] {
        template.split(separator: "/").map { part in
            part.hasPrefix("{") && part.hasSuffix("}") ? .parameter(String(part.dropFirst().dropLast())) : .literal(String(part))
        }
    }
}

/// Every description the sandbox carries: the Swagger files under `Resources/floriday-api/`.
/// A new version is served by dropping its file in beside the others.
public struct APICatalog: Sendable {
    public let descriptions: [APIDescription]

    public init(descriptions: [APIDescription]) {
        self.descriptions = descriptions
    }

    /// The descriptions shipped with the sandbox, read once per process.
    public static let bundled: APICatalog = {
        let folder = Bundle.module.resourceURL?.appendingPathComponent("floriday-api")
        let names = folder.flatMap { try? FileManager.default.contentsOfDirectory(atPath: $0.path) } ?? []
        let urls = names.filter { $0.hasSuffix(".json") }.sorted().compactMap { folder?.appendingPathComponent($0) }
        var descriptions: [APIDescription] = []
        for url in urls {
            // A file the sandbox ships is read at start-up; one that does not parse is a build
            // mistake, not a condition to serve around.
            guard let data = try? Data(contentsOf: url), let description = try? APIDescription(swagger: data) else {
                preconditionFailure("floriday-api/\(url.lastPathComponent) is not a readable Swagger 2.0 description")
            }
            descriptions.append(description)
        }
        return APICatalog(descriptions: descriptions)
    }()

    /// The description for `family` at `version`; a version the sandbox has no file for is
    /// served from the newest description of the family (the proxy forwards any version).
    public func description(family: String, version: String) -> APIDescription? {
        let candidates = descriptions.filter { $0.family == family }
        return candidates.first { $0.version == version } ?? candidates.max { Self.versionOrder($0.version, $1.version) }
    }

    /// `2025v2` < `2026v1`: the year, then the number after `v`.
    static func versionOrder(_ a: String, _ b: String) -> Bool {
        func key(_ v: String) -> (Int, Int) {
            let parts = v.split(separator: "v")
            return (Int(parts.first ?? "") ?? 0, Int(parts.count > 1 ? parts[1] : "") ?? 0)
        }
        return key(a) < key(b)
    }
}
