import Redis
import Yams

/// `rate_limit`: how the proxy shapes requests to Floriday's per-key, per-endpoint limits.
public struct RateLimitSettings: Sendable, Equatable {
    public enum Scope: String, Sendable, CaseIterable {
        /// One bucket per API key and endpoint (Floriday's own accounting).
        case endpoint
        /// One bucket per API key for every endpoint, with `rate` and `burst`.
        case key
    }

    /// A configured limit for the requests a method list and path glob match.
    public struct EndpointLimit: Sendable, Equatable, CustomStringConvertible {
        /// Upper-case methods; nil: any.
        public var methods: [String]?
        /// `*` matches any run of characters, `{name}` one path segment; the whole path must match.
        public var path: String
        public var rate: Double
        public var burst: Int

        public init(methods: [String]?, path: String, rate: Double, burst: Int) {
            self.methods = methods
            self.path = path
            self.rate = rate
            self.burst = burst
        }

        public var description: String {
            let methodList = methods.map { "methods: [" + $0.joined(separator: ", ") + "], " } ?? ""
            return "{\(methodList)path: \(yamlString(path)), rate: \(formatRate(rate)), burst: \(burst)}"
        }
    }

    public var enabled = true
    public var scope = Scope.endpoint
    /// Requests per second for endpoints without a published limit (and everything with `scope: key`).
    public var rate = 3.4
    public var burst = 1000
    /// The longest a request may wait for its turn before the proxy answers 429 itself.
    public var maxWait: Duration = .seconds(30)
    /// Requests that may wait for one bucket at a time; more get 429 at once.
    public var maxWaiting = 1000
    /// Overrides and additions to the built-in table, checked first, in order.
    public var endpoints: [EndpointLimit] = []
    /// Where the buckets live: in this process, or in a Redis that every replica shares.
    public var store = Store.memory
    /// How many replicas share the budget: while the shared store is away, each shapes
    /// locally to `1 / replicas` of every limit.
    public var replicas = 1

    public init() {}

    public static let keys = ["enabled", "scope", "rate", "burst", "max_wait", "max_waiting", "endpoints",
                              "store", "store_password", "store_password_file", "replicas"]

    /// `rate_limit.store`.
    public enum Store: Sendable, Equatable, CustomStringConvertible {
        /// Buckets in this process (one replica).
        case memory
        /// Buckets in Redis (`redis://` or `rediss://`), shared by every replica that names it.
        case redis(RedisEndpoint)

        /// Without the password: `memory`, or `redis://:***@host:6379/0`.
        public var description: String {
            switch self {
            case .memory: return "memory"
            case .redis(let endpoint): return endpoint.description
            }
        }
    }
}

func formatRate(_ rate: Double) -> String {
    rate == rate.rounded() && abs(rate) < 1e15 ? String(Int(rate)) : String(rate)
}

extension YAMLSection {
    func number(_ key: String) throws(ConfigError) -> Double? {
        guard let text = try text(key, expected: "a number") else { return nil }
        guard let value = Double(text), value.isFinite else {
            throw ConfigError(key: qualified(key), problem: "expected a number such as 3.4, got \"\(text)\"")
        }
        return value
    }

    /// The `rate_limit` section.
    func rateLimit(_ key: String, readFile: (String) throws -> String) throws(ConfigError) -> RateLimitSettings {
        let section = try self.section(key, known: RateLimitSettings.keys)
        var settings = RateLimitSettings()
        if let value = try section.bool("enabled") { settings.enabled = value }
        if let value = try section.choice("scope", of: RateLimitSettings.Scope.self) { settings.scope = value }
        if let value = try section.number("rate") { settings.rate = value }
        if let value = try section.count("burst") { settings.burst = value }
        if let value = try section.duration("max_wait") { settings.maxWait = value }
        if let value = try section.count("max_waiting") { settings.maxWaiting = value }
        if let value = try section.count("replicas") { settings.replicas = value }
        settings.store = try section.store(readFile: readFile)
        guard let node = section.node("endpoints"), !node.isNull else { return settings }
        guard case .sequence(let sequence) = node else {
            throw ConfigError(key: section.qualified("endpoints"), problem: "expected a list such as [{methods: [GET], path: \"/suppliers-api-*/trade-items\", rate: 2, burst: 200}], got \(node.kind)")
        }
        for (index, item) in sequence.enumerated() {
            let itemKey = "\(section.qualified("endpoints"))[\(index + 1)]"
            let entry = try YAMLSection(item, path: itemKey, known: ["methods", "path", "rate", "burst"], environment: environment)
            guard let path = try entry.string("path") else { throw ConfigError(key: "\(itemKey).path", problem: "missing") }
            guard let rate = try entry.number("rate") else { throw ConfigError(key: "\(itemKey).rate", problem: "missing") }
            guard let burst = try entry.count("burst") else { throw ConfigError(key: "\(itemKey).burst", problem: "missing") }
            var methods = try entry.stringList("methods", expected: "a list of methods such as [GET, HEAD]")
            if let list = methods {
                methods = list.map { $0.uppercased() }
                for method in methods! where method.isEmpty || !method.allSatisfy({ $0.isLetter }) {
                    throw ConfigError(key: "\(itemKey).methods", problem: "\"\(method)\" is not a method")
                }
            }
            settings.endpoints.append(.init(methods: methods, path: path, rate: rate, burst: burst))
        }
        return settings
    }
}

extension YAMLSection {
    /// `store`, with the password from the URL, `store_password` or `store_password_file`.
    /// Errors never repeat the URL: it may hold the password.
    fileprivate func store(readFile: (String) throws -> String) throws(ConfigError) -> RateLimitSettings.Store {
        let inline = try string("store_password")
        let file = try string("store_password_file")
        guard let text = try string("store"), text.lowercased() != "memory" else {
            if inline != nil || file != nil {
                throw ConfigError(key: qualified(inline != nil ? "store_password" : "store_password_file"),
                                  problem: "is only used with a redis:// or rediss:// store")
            }
            return .memory
        }
        var endpoint: RedisEndpoint
        do {
            endpoint = try RedisEndpoint(url: text)
        } catch {
            throw ConfigError(key: qualified("store"), problem: "expected memory, redis://[:password@]host[:port][/database] or rediss://…: \(error.description)")
        }
        var password: String?
        switch (inline, file) {
        case (let value?, nil):
            password = value
        case (nil, let path?):
            password = try secret(fromFile: path, key: qualified("store_password_file"), source: "\"\(path)\"", readFile: readFile)
        case (.some, .some):
            throw ConfigError(key: qualified("store_password"), problem: "set store_password or store_password_file, not both")
        case (nil, nil):
            break
        }
        if let password {
            if endpoint.password != nil {
                throw ConfigError(key: qualified("store"), problem: "holds a password and store_password\(file != nil ? "_file" : "") gives one too; set only one")
            }
            endpoint.password = password
        }
        return .redis(endpoint)
    }
}

extension RateLimitSettings {
    func validate() throws(ConfigError) {
        if !(rate > 0) { throw ConfigError(key: "rate_limit.rate", problem: "must be greater than 0") }
        if burst < 1 { throw ConfigError(key: "rate_limit.burst", problem: "must be at least 1") }
        if maxWait < .zero { throw ConfigError(key: "rate_limit.max_wait", problem: "must not be negative") }
        if maxWaiting < 0 { throw ConfigError(key: "rate_limit.max_waiting", problem: "must not be negative") }
        if replicas < 1 { throw ConfigError(key: "rate_limit.replicas", problem: "must be at least 1") }
        for (index, endpoint) in endpoints.enumerated() {
            let key = "rate_limit.endpoints[\(index + 1)]"
            if !endpoint.path.hasPrefix("/") { throw ConfigError(key: "\(key).path", problem: "must start with \"/\"") }
            if !(endpoint.rate > 0) { throw ConfigError(key: "\(key).rate", problem: "must be greater than 0") }
            if endpoint.burst < 1 { throw ConfigError(key: "\(key).burst", problem: "must be at least 1") }
        }
    }

    var renderedLines: [String] {
        var lines = ["rate_limit:"]
        lines.append("  enabled: \(enabled)")
        lines.append("  scope: \(scope.rawValue)")
        lines.append("  rate: \(formatRate(rate))")
        lines.append("  burst: \(burst)")
        lines.append("  max_wait: \(formatDuration(maxWait))")
        lines.append("  max_waiting: \(maxWaiting)")
        lines.append("  endpoints: [" + endpoints.map(\.description).joined(separator: ", ") + "]")
        lines.append("  store: \(yamlString(store.description))")
        lines.append("  replicas: \(replicas)")
        return lines
    }
}
