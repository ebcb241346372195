/// An absolute `http` or `https` URL without user info, query or fragment.
public struct EndpointURL: Sendable, Equatable, CustomStringConvertible {
    /// `http` or `https`.
    public var scheme: String
    /// Lowercase; IPv6 addresses without brackets.
    public var host: String
    /// The explicit port, or 443 for https and 80 for http.
    public var port: Int
    /// Empty or starting with `/`.
    public var path: String

    public init(scheme: String, host: String, port: Int? = nil, path: String = "") {
        self.scheme = scheme
        self.host = host
        self.port = port ?? (scheme == "https" ? 443 : 80)
        self.path = path
    }

    /// Parses `http(s)://host[:port][/path]`; errors name `key`.
    public init(_ string: String, key: String) throws(ConfigError) {
        // A URL with user info may hold a password: such a URL is not repeated in errors.
        let shown = string.contains("@") ? "the URL" : "\"\(string)\""
        func failure(_ problem: String) -> ConfigError {
            ConfigError(key: key, problem: "\(shown) \(problem)")
        }

        guard let separator = string.firstRange(of: "://") else {
            throw failure("is not an absolute URL; expected http:// or https:// and a host")
        }
        let scheme = string[..<separator.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else {
            throw failure("must start with http:// or https://")
        }
        let rest = string[separator.upperBound...]
        let pathStart = rest.firstIndex(of: "/") ?? rest.endIndex
        let authorityText = rest[..<pathStart]
        let path = rest[pathStart...]

        if authorityText.contains("@") {
            throw failure("must not contain user info (user:password@)")
        }
        if rest.contains("?") || rest.contains("#") {
            throw failure("must not have a query or fragment")
        }
        if string.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F }) {
            throw failure("must not contain spaces or control characters")
        }
        if authorityText.isEmpty {
            throw failure("has no host")
        }
        switch Authority.parse(authorityText) {
        case .failure(let problem):
            throw failure(problem.text)
        case .success(let authority):
            self.init(scheme: scheme, host: authority.host, port: authority.port, path: String(path))
        }
    }

    public var isTLS: Bool { scheme == "https" }

    public var defaultPort: Int { isTLS ? 443 : 80 }

    /// `host[:port]` as for a Host header: the port only when not the scheme's default,
    /// IPv6 hosts in brackets.
    public var authority: String {
        let host = Authority.bracketed(host)
        return port == defaultPort ? host : "\(host):\(port)"
    }

    /// This URL with `suffix` appended to the path, with exactly one `/` between them.
    public func appendingPath(_ suffix: String) -> EndpointURL {
        guard !suffix.isEmpty else { return self }
        var copy = self
        let base = path.hasSuffix("/") ? String(path.dropLast()) : path
        copy.path = base + (suffix.hasPrefix("/") ? suffix : "/" + suffix)
        return copy
    }

    public var description: String { "\(scheme)://\(authority)\(path)" }

    /// Checks the fields of a URL built in code; loaded URLs always pass.
    func check(key: String) throws(ConfigError) {
        let url = "\"\(description)\""
        guard scheme == "http" || scheme == "https" else {
            throw ConfigError(key: key, problem: "\(url) must start with http:// or https://")
        }
        guard !host.isEmpty else {
            throw ConfigError(key: key, problem: "\(url) has no host")
        }
        guard (1...65535).contains(port) else {
            throw ConfigError(key: key, problem: "\(url) has port \(port), outside 1-65535")
        }
        guard path.isEmpty || path.hasPrefix("/") else {
            throw ConfigError(key: key, problem: "\(url) has a path that does not start with \"/\"")
        }
    }
}
