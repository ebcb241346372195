#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Yams

/// A client network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`; a bare address is one host).
public struct ClientNetwork: Sendable, Equatable, CustomStringConvertible {
    /// 4 bytes (IPv4) or 16 (IPv6).
    public let address: [UInt8]
    public let prefixLength: Int

    public init(_ text: String, key: String) throws(ConfigError) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        let host = String(parts[0])
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            address = withUnsafeBytes(of: v4) { Array($0) }
        } else if inet_pton(AF_INET6, host, &v6) == 1 {
            address = withUnsafeBytes(of: v6) { Array($0) }
        } else {
            throw ConfigError(key: key, problem: "\"\(text)\" is not an IP address or CIDR network such as 10.0.0.0/8")
        }
        let maximum = address.count * 8
        if parts.count == 2 {
            guard let length = Int(parts[1]), (0...maximum).contains(length) else {
                throw ConfigError(key: key, problem: "\"\(text)\" has a prefix length outside 0-\(maximum)")
            }
            prefixLength = length
        } else {
            prefixLength = maximum
        }
    }

    /// Whether `bytes` (4 or 16 address bytes) lies in this network. An IPv4-mapped IPv6
    /// address (`::ffff:a.b.c.d`) is compared as IPv4.
    public func contains(_ bytes: [UInt8]) -> Bool {
        var candidate = bytes
        if candidate.count == 16 && address.count == 4 && candidate[0..<10].allSatisfy({ $0 == 0 }) && candidate[10] == 0xFF && candidate[11] == 0xFF {
            candidate = Array(candidate[12...])
        }
        guard candidate.count == address.count else { return false }
        var remaining = prefixLength
        for index in 0..<address.count where remaining > 0 {
            let bits = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
            if candidate[index] & mask != address[index] & mask { return false }
            remaining -= bits
        }
        return true
    }

    public var description: String {
        var buffer = [CChar](repeating: 0, count: 64)
        let family = address.count == 4 ? AF_INET : AF_INET6
        address.withUnsafeBytes { _ = inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) }
        return "\(String(cString: buffer))/\(prefixLength)"
    }
}

/// A credential internal clients present to use the proxy (`inbound_auth`).
public enum InboundCredential: Sendable, Equatable, CustomStringConvertible {
    /// `Authorization: Bearer <token>`; `organizations`: the only ones it may use (nil: any).
    case bearer(Secret, organizations: [String]? = nil)
    /// `Authorization: Basic base64(user:password)`.
    case basic(user: String, password: Secret, organizations: [String]? = nil)

    /// The organisations this credential may use; nil: any.
    public var organizations: [String]? {
        switch self {
        case .bearer(_, let organizations), .basic(_, _, let organizations): return organizations
        }
    }

    public var description: String {
        let scope = organizations.map { ", organizations: [" + $0.joined(separator: ", ") + "]" } ?? ""
        switch self {
        case .bearer: return "{bearer: \"***\"\(scope)}"
        case .basic(let user, _, _): return "{basic: {user: \(user), password: \"***\"}\(scope)}"
        }
    }
}

/// One least-privilege rule (`allow`): the methods and the path a client may use.
public struct AccessRule: Sendable, Equatable, CustomStringConvertible {
    /// Upper-case methods; nil: any method.
    public var methods: [String]?
    /// A path prefix (`/suppliers-api-2024v2/trade-items`) or a glob where `*` matches any
    /// run of characters (`/suppliers-api-*/trade-items*`).
    public var path: String

    public init(methods: [String]?, path: String) {
        self.methods = methods
        self.path = path
    }

    public var description: String {
        let methodList = methods.map { "[" + $0.joined(separator: ", ") + "]" } ?? "any"
        return "{methods: \(methodList), path: \"\(path)\"}"
    }
}

extension YAMLSection {
    /// `allow_clients`: a list of networks.
    func clientNetworks(_ key: String) throws(ConfigError) -> [ClientNetwork]? {
        guard let items = try stringList(key, expected: "a list of IP networks such as 10.0.0.0/8") else { return nil }
        var networks: [ClientNetwork] = []
        for (index, item) in items.enumerated() {
            networks.append(try ClientNetwork(item, key: "\(qualified(key))[\(index + 1)]"))
        }
        return networks
    }

    /// `inbound_auth`: a list of `{bearer: TOKEN}` or `{basic: {user: U, password: P}}`.
    func inboundCredentials(_ key: String) throws(ConfigError) -> [InboundCredential]? {
        guard let node = node(key), !node.isNull else { return nil }
        guard case .sequence(let sequence) = node else {
            throw ConfigError(key: qualified(key), problem: "expected a list such as [{bearer: \"${TOOL_TOKEN}\"}], got \(node.kind)")
        }
        var credentials: [InboundCredential] = []
        for (index, item) in sequence.enumerated() {
            let itemKey = "\(qualified(key))[\(index + 1)]"
            let entry = try YAMLSection(item, path: itemKey, known: ["bearer", "basic", "organizations"], environment: environment)
            let organizations = try entry.stringList("organizations", expected: "a list of organisation names such as [grower-a]")
            let bearer = try entry.string("bearer")
            let basicSection = try entry.section("basic", known: ["user", "password"])
            let user = try basicSection.string("user")
            let password = try basicSection.string("password")
            switch (bearer, user, password) {
            case (let token?, nil, nil):
                guard token.count >= 16 else {
                    throw ConfigError(key: "\(itemKey).bearer", problem: "is shorter than 16 characters; use a long random token")
                }
                credentials.append(.bearer(Secret(token), organizations: organizations))
            case (nil, let user?, let password?):
                guard !user.contains(":") else { throw ConfigError(key: "\(itemKey).basic.user", problem: "must not contain \":\"") }
                guard password.count >= 12 else {
                    throw ConfigError(key: "\(itemKey).basic.password", problem: "is shorter than 12 characters")
                }
                credentials.append(.basic(user: user, password: Secret(password), organizations: organizations))
            case (nil, _, _) where entry.node("basic") != nil:
                throw ConfigError(key: "\(itemKey).basic", problem: "needs both user and password (a variable may be unset)")
            default:
                throw ConfigError(key: itemKey, problem: "expected exactly one of bearer or basic with a value (a variable may be unset)")
            }
        }
        return credentials
    }

    /// `allow`: a list of `{methods: [GET, ...], path: ...}`.
    func accessRules(_ key: String) throws(ConfigError) -> [AccessRule]? {
        guard let node = node(key), !node.isNull else { return nil }
        guard case .sequence(let sequence) = node else {
            throw ConfigError(key: qualified(key), problem: "expected a list such as [{methods: [GET], path: /suppliers-api-*/trade-items*}], got \(node.kind)")
        }
        var rules: [AccessRule] = []
        for (index, item) in sequence.enumerated() {
            let itemKey = "\(qualified(key))[\(index + 1)]"
            let entry = try YAMLSection(item, path: itemKey, known: ["methods", "path"], environment: environment)
            guard let path = try entry.string("path") else { throw ConfigError(key: "\(itemKey).path", problem: "missing") }
            guard path.hasPrefix("/") else { throw ConfigError(key: "\(itemKey).path", problem: "must start with \"/\"") }
            var methods = try entry.stringList("methods", expected: "a list of methods such as [GET, HEAD]")
            if let list = methods {
                methods = list.map { $0.uppercased() }
                for method in methods! where method.isEmpty || !method.allSatisfy({ $0.isLetter }) {
                    throw ConfigError(key: "\(itemKey).methods", problem: "\"\(method)\" is not a method")
                }
            }
            rules.append(AccessRule(methods: methods, path: path))
        }
        return rules
    }
}
