import Foundation
import JSON

/// Makes response bodies from a description's schemas: every required property present,
/// values of the declared type and format, enum values from the enum, bounds and lengths
/// respected, arrays of a few items.
///
/// Deterministic: a body is a function of its seed. Objects of a definition that has an
/// identifier (the path parameter of a get that returns it, e.g. `tradeItemId` for
/// `TradeItem`) are seeded by that identifier, and list item `i` has identifier
/// `SeededRandom("Definition#i").uuid()`, so a get of an id from a list answers the same object,
/// and sync record `k` is list item `k - 1`.
struct BodyGenerator {
    let description: APIDescription
    /// The identifying property of each definition a get-by-id operation returns.
    let identifiers: [String: String]

    /// Items in a list answer, and the first ids a get looks for when working out an item's
    /// sequence number.
    static let listLength = 3
    static let knownItems = 64

    init(description: APIDescription) {
        self.description = description
        var identifiers: [String: String] = [:]
        for operation in description.operations where operation.method == "GET" {
            // Identifiers are uuids here (list items get generated ones); a get by another
            // key, such as `/organizations/{companyGln}`, does not make that key the identifier.
            guard case .parameter(let name)? = operation.segments.last, let schema = operation.successSchema,
                let definition = schema.ref ?? schema.allOf.first?.ref,
                let resolved = description.definitions[definition],
                resolved.properties.contains(where: { $0.0 == name && $0.1.format == "uuid" })
            else { continue }
            identifiers[definition] = identifiers[definition] ?? name
        }
        for (name, schema) in description.definitions where identifiers[name] == nil {
            let guess = name.prefix(1).lowercased() + name.dropFirst() + "Id"
            if schema.properties.contains(where: { $0.0 == guess && $0.1.format == "uuid" }) { identifiers[name] = guess }
        }
        self.identifiers = identifiers
    }

    /// The success body of `operation`, or nil when it has none.
    /// - Parameters:
    ///   - seed: what the body is a function of; the sandbox passes method and path.
    ///   - pathParameters: copied into same-named properties of the answer, so a get of
    ///     `/trade-items/{id}` answers an item with that id.
    ///   - limit: for list and sync answers, the `limitResult` asked for.
    func response(for operation: APIOperation, seed: String, pathParameters: [String: String], limit: Int?) -> JSONValue? {
        guard let schema = operation.successSchema else { return nil }
        if let feed = SyncFeed(template: operation.pathTemplate) {
            if operation.isSync {
                let from = Int(pathParameters["sequenceNumber"] ?? "") ?? 0
                return syncPage(schema, feed: feed, after: from, limit: limit ?? 1000)
            }
            if description.resolve(schema)?.type == "integer" { return .int(feed.size) }
        }
        guard let resolved = description.resolve(schema) else { return .null }
        // A list of identified items: items 0, 1, 2 of the definition's fixed sequence.
        if resolved.type == "array", let items = resolved.items, let definition = definitionName(items), identifiers[definition] != nil {
            let count = min(Self.listLength, max(limit ?? Self.listLength, 1))
            return .array((0..<count).map { item(definition, index: $0) })
        }
        var rng = SeededRandom(seed: seed)
        if let definition = definitionName(schema), let idName = identifiers[definition], let id = pathParameters[idName] {
            return object(definition, id: id, overrides: pathParameters)
        }
        return value(schema, &rng, depth: 0, name: "", overrides: pathParameters)
    }

    /// The page of a sync feed after `sequenceNumber`.
    func syncPage(_ schema: Schema, feed: SyncFeed, after sequenceNumber: Int, limit: Int) -> JSONValue {
        guard let resolved = description.resolve(schema),
            let results = resolved.properties.first(where: { $0.0 == "results" })?.1,
            let itemSchema = description.resolve(results)?.items,
            let definition = definitionName(itemSchema)
        else { return .null }
        let records = feed.page(after: sequenceNumber, limit: limit).map { Array($0) } ?? []
        var members: [(String, JSONValue)] = [("maximumSequenceNumber", .int(feed.size))]
        members.append(("results", .array(records.map { item(definition, index: $0 - 1) })))
        // Whatever else a sync result requires, generated as usual.
        var rng = SeededRandom(seed: "sync " + feed.key)
        for (name, child) in resolved.properties where resolved.required.contains(name) && name != "results" && name != "maximumSequenceNumber" {
            members.append((name, value(child, &rng, depth: 1, name: name, overrides: [:])))
        }
        return .object(members)
    }

    /// Item `index` of a definition's fixed sequence (its sequence number is `index + 1`).
    func item(_ definition: String, index: Int, depth: Int = 0) -> JSONValue {
        var overrides: [String: String] = [:]
        if let idName = identifiers[definition] {
            var rng = SeededRandom(seed: "\(description.family)/\(definition)#\(index)")
            overrides[idName] = rng.uuid()
        }
        return object(definition, id: overrides.values.first ?? "#\(index)", overrides: overrides, index: index, depth: depth)
    }

    /// The object of a definition with this identifier: the same wherever it appears.
    func object(_ definition: String, id: String, overrides: [String: String], index: Int? = nil, depth: Int = 0) -> JSONValue {
        var fixed = overrides
        let position = index ?? indexOf(definition, id: id)
        if let position { fixed["sequenceNumber"] = String(position + 1) }
        var rng = SeededRandom(seed: "\(description.family)/\(definition)/\(id)")
        return value(Schema(ref: definition), &rng, depth: depth, name: "", overrides: fixed)
    }

    private func indexOf(_ definition: String, id: String) -> Int? {
        for index in 0..<Self.knownItems {
            var rng = SeededRandom(seed: "\(description.family)/\(definition)#\(index)")
            if rng.uuid() == id.lowercased() { return index }
        }
        return nil
    }

    private func definitionName(_ schema: Schema) -> String? {
        schema.ref ?? (schema.allOf.count == 1 ? schema.allOf[0].ref : nil)
    }

    // MARK: Values

    /// Optional properties are filled down to this depth; below it only required ones.
    static let optionalDepth = 3
    static let maximumDepth = 12

    func value(_ unresolved: Schema, _ rng: inout SeededRandom, depth: Int, name: String, overrides: [String: String]) -> JSONValue {
        guard depth < Self.maximumDepth, let schema = description.resolve(unresolved) else { return .null }
        switch schema.type ?? (schema.properties.isEmpty ? nil : "object") {
        case "object":
            var members: [(String, JSONValue)] = []
            for (property, child) in schema.properties {
                let required = schema.required.contains(property)
                if let fixed = overrides[property], let typed = typed(fixed, child), fits(typed, child) {
                    members.append((property, typed))
                } else if required || depth < Self.optionalDepth {
                    members.append((property, value(child, &rng, depth: depth + 1, name: property, overrides: [:])))
                }
            }
            return .object(members)
        case "array":
            guard let items = schema.items else { return .array([]) }
            var count = depth == 0 ? Self.listLength : (depth < Self.optionalDepth ? 2 : 1)
            if let min = schema.minItems { count = max(count, min) }
            if let max = schema.maxItems { count = min(count, max) }
            if let definition = definitionName(items), identifiers[definition] != nil, depth < Self.optionalDepth {
                let start = rng.below(Self.knownItems - count)
                return .array((start..<(start + count)).map { item(definition, index: $0, depth: depth + 1) })
            }
            return .array((0..<count).map { _ in value(items, &rng, depth: depth + 1, name: name, overrides: [:]) })
        case "string":
            return .string(string(schema, &rng, name: name))
        case "integer":
            return .int(integer(schema, &rng))
        case "number":
            return number(schema, &rng)
        case "boolean":
            return .bool(rng.below(2) == 1)
        default:
            // `{}`: any value; an empty object is one.
            return .object([])
        }
    }

    /// Whether a value copied from the request satisfies the property's schema (a path
    /// parameter may be looser than the property it names).
    private func fits(_ value: JSONValue, _ schema: Schema) -> Bool {
        var errors = ValidationErrors()
        SchemaValidator(description: description).validate(value, schema, field: "", into: &errors)
        return errors.isEmpty
    }

    /// A path parameter's text as a value of the property's type; nil when it does not fit.
    private func typed(_ text: String, _ schema: Schema) -> JSONValue? {
        switch description.resolve(schema)?.type {
        case "string": .string(text)
        case "integer": Int(text).map { .int($0) }
        default: nil
        }
    }

    private func string(_ schema: Schema, _ rng: inout SeededRandom, name: String) -> String {
        if let values = schema.enumValues, !values.isEmpty { return values[rng.below(values.count)] }
        switch schema.format {
        case "uuid":
            return rng.uuid()
        case "date-time":
            // Whole seconds in 2026, in UTC.
            return String(format: "2026-%02d-%02dT%02d:%02d:%02dZ", 1 + rng.below(12), 1 + rng.below(28), rng.below(24), rng.below(60), rng.below(60))
        case "date":
            return String(format: "2026-%02d-%02d", 1 + rng.below(12), 1 + rng.below(28))
        case "duration":
            // .NET writes a TimeSpan as `hh:mm:ss`.
            return String(format: "%02d:%02d:00", rng.below(24), rng.below(60))
        case "uri":
            return "https://image.floriday.io/\(rng.uuid()).jpg"
        default:
            break
        }
        let minLength = schema.minLength ?? 0
        let maxLength = max(schema.maxLength ?? 40, minLength)
        if let pattern = schema.pattern {
            // Floriday's patterns: `^[0-9]+$` (references) and `^[a-z0-9]*$` (image-bank ids).
            let length = max(1, min(maxLength, 6, max(minLength, 4)))
            let digits = String((0..<length).map { _ in Character(String(rng.below(10))) })
            return pattern.contains("a-z") ? String(("r" + digits).prefix(maxLength)) : digits
        }
        var text = (name.isEmpty ? "value" : name) + " " + String(1 + rng.below(999))
        if text.count > maxLength {
            // Short fields are codes (`countryCode`, `currency`): capitals from the name.
            let letters = (name.isEmpty ? "value" : name).filter(\.isLetter)
            text = String(letters.prefix(maxLength))
            if maxLength <= 3 { text = text.uppercased() }
        }
        while text.count < minLength { text += "x" }
        return text
    }

    private func integer(_ schema: Schema, _ rng: inout SeededRandom) -> Int {
        let low = schema.minimum.map { Int($0.rounded(.up)) } ?? 1
        let high = schema.maximum.map { Int(min($0, 1e15).rounded(.down)) } ?? low + 999
        guard high > low else { return low }
        return low + rng.below(min(high - low, 999) + 1)
    }

    private func number(_ schema: Schema, _ rng: inout SeededRandom) -> JSONValue {
        let low = schema.minimum ?? 0
        let high = schema.maximum ?? low + 1000
        guard high > low else { return .number(SchemaValidator.text(low)) }
        // Two decimals, as prices and quantities have.
        let span = min(high - low, 1000)
        let cents = Double(rng.below(Int(span * 100) + 1)) / 100
        let value = min(low + cents, high)
        return value == value.rounded() ? .int(Int(value)) : .number(String(format: "%.2f", value))
    }
}
