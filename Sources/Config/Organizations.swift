import Yams

/// One organisation the proxy works for (`organizations`): Floriday issues one API key per
/// organisation (one GLN) for an application, so an application serving several has one
/// token and several keys.
public struct Organization: Sendable, Equatable, CustomStringConvertible {
    /// `[a-z0-9][a-z0-9-]{0,62}`: how a request names it (`/org/{name}/…` or `X-Floriday-Organization`).
    public var name: String
    public var apiKey: Secret

    public init(name: String, apiKey: Secret) {
        self.name = name
        self.apiKey = apiKey
    }

    public var description: String { "\(name): {api_key: \"***\"}" }

    /// Whether `name` is a valid organisation name.
    public static func isValidName(_ name: some Collection<UInt8>) -> Bool {
        guard let first = name.first, (1...63).contains(name.count), isLowerAlphanumeric(first) else { return false }
        return name.allSatisfy { isLowerAlphanumeric($0) || $0 == UInt8(ascii: "-") }
    }

    private static func isLowerAlphanumeric(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }
}

extension ProxyConfig {
    /// The organisation called `name`, if configured.
    public func organization(named name: String) -> Organization? {
        organizations.first { $0.name == name }
    }
}

extension YAMLSection {
    /// `organizations`: a mapping of name to `{api_key: …}` or `{api_key_file: …}`.
    func organizations(_ key: String, readFile: (String) throws -> String) throws(ConfigError) -> [Organization] {
        guard let node = node(key), !node.isNull else { return [] }
        guard case .mapping(let mapping) = node else {
            throw ConfigError(key: qualified(key), problem: "expected a mapping such as {grower-a: {api_key: \"${GROWER_A_API_KEY}\"}}, got \(node.kind)")
        }
        var organizations: [Organization] = []
        for (nameNode, value) in mapping {
            guard let name = nameNode.scalar?.string else {
                throw ConfigError(key: qualified(key), problem: "organisation names must be names, got \(nameNode.kind)")
            }
            guard Organization.isValidName(Array(name.utf8)) else {
                throw ConfigError(key: "\(qualified(key)).\(name)", problem: "is not a valid organisation name: lower-case letters, digits and \"-\", starting with a letter or digit, at most 63 characters")
            }
            let itemKey = "\(qualified(key)).\(name)"
            let entry = try YAMLSection(value, path: itemKey, known: ["api_key", "api_key_file"], environment: environment)
            let inline = try entry.string("api_key")
            let file = try entry.string("api_key_file")
            let apiKey: String
            switch (inline, file) {
            case (let value?, nil):
                apiKey = value
            case (nil, let path?):
                apiKey = try secret(fromFile: path, key: "\(itemKey).api_key_file", source: "\"\(path)\"", readFile: readFile)
            case (.some, .some):
                throw ConfigError(key: itemKey, problem: "set api_key or api_key_file, not both")
            case (nil, nil):
                throw ConfigError(key: "\(itemKey).api_key", problem: "missing (a variable may be unset); set api_key or api_key_file")
            }
            organizations.append(Organization(name: name, apiKey: Secret(apiKey)))
        }
        return organizations
    }
}
