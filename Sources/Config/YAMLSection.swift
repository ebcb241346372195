import Yams

/// One mapping of the configuration file (the top level, `timeouts`, `limits` or `log`),
/// with typed access to its values after `${VAR}` expansion.
///
/// A key that is absent, null (`~`, `null`, nothing) or empty after expansion is "not
/// set": the accessors return nil. Error messages repeat a value only for keys whose
/// values are not secret (durations, sizes, booleans, choices).
struct YAMLSection {
    /// `""` for the top level, else the section's key.
    let path: String
    let environment: [String: String]
    private var entries: [String: Node] = [:]

    /// Checks that `node` is a mapping (or nothing) and has only `known` keys.
    /// `nested` lists the keys of sub-sections, for suggestions like "timeouts.connect".
    init(_ node: Node?, path: String, known: [String], nested: [String: [String]] = [:],
         environment: [String: String]) throws(ConfigError) {
        self.path = path
        self.environment = environment
        guard let node, !node.isNull else { return }
        guard case .mapping(let mapping) = node else {
            throw ConfigError(key: path, problem: "expected a mapping of keys, got \(node.kind)")
        }
        for (keyNode, value) in mapping {
            guard let key = keyNode.scalar?.string else {
                throw ConfigError(key: path.isEmpty ? "config" : path, problem: "keys must be names, got \(keyNode.kind)")
            }
            guard known.contains(key) else {
                var problem = "unknown key \"\(key)\""
                if let suggestion = closestKey(to: key, among: known) {
                    problem += " (did you mean \"\(suggestion)\"?)"
                } else if let section = nested.keys.sorted().first(where: { nested[$0]!.contains(key) }) {
                    problem += " (did you mean \"\(section).\(key)\"?)"
                }
                throw ConfigError(key: qualified(key), problem: problem)
            }
            entries[key] = value
        }
    }

    func qualified(_ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }

    func node(_ key: String) -> Node? {
        entries[key]
    }

    /// The sub-section under `key`, empty when not set.
    func section(_ key: String, known: [String]) throws(ConfigError) -> YAMLSection {
        try YAMLSection(entries[key], path: qualified(key), known: known, environment: environment)
    }

    /// The expanded text of a scalar value; nil when not set.
    func text(_ key: String, expected: String) throws(ConfigError) -> String? {
        guard let node = entries[key], !node.isNull else { return nil }
        guard case .scalar(let scalar) = node else {
            throw ConfigError(key: qualified(key), problem: "expected \(expected), got \(node.kind)")
        }
        let text = try expand(scalar, key: qualified(key))
        if text.isEmpty || (scalar.style == .plain && isNullText(text)) { return nil }
        return text
    }

    func string(_ key: String) throws(ConfigError) -> String? {
        try text(key, expected: "a string")
    }

    func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let text = try text(key, expected: "true or false") else { return nil }
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw ConfigError(key: qualified(key), problem: "expected true or false, got \"\(text)\"")
        }
    }

    func duration(_ key: String) throws(ConfigError) -> Duration? {
        guard let text = try text(key, expected: "a duration such as 5s") else { return nil }
        if let duration = parseDuration(text) { return duration }
        let number = text.hasPrefix("-") ? text.dropFirst() : Substring(text)
        if !number.isEmpty && number.allSatisfy({ $0.isASCIIDigit || $0 == "." }) {
            throw ConfigError(
                key: qualified(key),
                problem: "\"\(text)\" has no unit; add one, e.g. \"\(text)s\" (units: ms, s, m, h)")
        }
        throw ConfigError(
            key: qualified(key),
            problem: "\"\(text)\" is not a duration; write e.g. 500ms, 5s, 2m, 1h or 1m30s")
    }

    func size(_ key: String) throws(ConfigError) -> Int? {
        guard let text = try text(key, expected: "a size such as 64KiB") else { return nil }
        // A negative size parses so that the range check can say what is wrong with it.
        if text.hasPrefix("-"), let size = parseByteSize(String(text.dropFirst())) { return -size }
        if let size = parseByteSize(text) { return size }
        throw ConfigError(
            key: qualified(key),
            problem: "\"\(text)\" is not a size; write e.g. 512, 64KiB, 32MiB, 1GiB or 64KB")
    }

    func count(_ key: String) throws(ConfigError) -> Int? {
        guard let text = try text(key, expected: "a whole number") else { return nil }
        guard let value = Int(text) else {
            throw ConfigError(key: qualified(key), problem: "expected a whole number, got \"\(text)\"")
        }
        return value
    }

    /// One of `choices`, compared without regard to case.
    func choice<T: RawRepresentable & CaseIterable>(_ key: String, of type: T.Type) throws(ConfigError) -> T?
    where T.RawValue == String {
        guard let text = try text(key, expected: "a string") else { return nil }
        return try parseChoice(text, key: qualified(key), as: T.self)
    }

    /// A list of strings; nil when not set. Items are expanded; an empty item stays empty.
    func stringList(_ key: String, expected: String) throws(ConfigError) -> [String]? {
        guard let node = entries[key], !node.isNull else { return nil }
        guard case .sequence(let sequence) = node else {
            throw ConfigError(key: qualified(key), problem: "expected \(expected), got \(node.kind)")
        }
        var items: [String] = []
        for (index, item) in sequence.enumerated() {
            guard case .scalar(let scalar) = item else {
                throw ConfigError(key: qualified(key), problem: "item \(index + 1): expected a string, got \(item.kind)")
            }
            let text = try expand(scalar, key: qualified(key))
            items.append(scalar.style == .plain && isNullText(text) ? "" : text)
        }
        return items
    }

    private func expand(_ scalar: Node.Scalar, key: String) throws(ConfigError) -> String {
        switch expandVariables(scalar.string, environment: environment) {
        case .success(let text): return text
        case .failure(let problem): throw ConfigError(key: key, problem: problem.text)
        }
    }
}

func parseChoice<T: RawRepresentable & CaseIterable>(_ text: String, key: String, as type: T.Type) throws(ConfigError) -> T
where T.RawValue == String {
    if let value = T(rawValue: text.lowercased()) { return value }
    throw ConfigError.notOneOf(key: key, value: text, choices: T.allCases.map(\.rawValue))
}

private func isNullText(_ text: String) -> Bool {
    ["~", "null", "Null", "NULL"].contains(text)
}

extension Node {
    /// Null as YAML reads it: `~`, `null` or nothing, unquoted.
    var isNull: Bool {
        guard case .scalar(let scalar) = self, scalar.style == .plain else { return false }
        return scalar.string.isEmpty || isNullText(scalar.string)
    }

    /// For "expected …, got …". A scalar's text is not repeated: it might be a secret.
    var kind: String {
        switch self {
        case .scalar: "a single value"
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .alias: "an alias"
        }
    }
}
