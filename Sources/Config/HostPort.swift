/// A listen address. `host` has no brackets, also for IPv6.
public struct HostPort: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`, or `[v6]:port` for IPv6; errors name `key`.
    public init(_ string: String, key: String) throws(ConfigError) {
        let example = "expected host:port such as 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080"
        switch Authority.parse(Substring(string)) {
        case .failure(let problem):
            throw ConfigError(key: key, problem: "\"\(string)\" \(problem.text); \(example)")
        case .success(let authority):
            guard let port = authority.port else {
                throw ConfigError(key: key, problem: "\"\(string)\" has no port; \(example)")
            }
            self.init(host: authority.host, port: port)
        }
    }

    /// `host:port`, with IPv6 hosts in brackets.
    public var description: String { "\(Authority.bracketed(host)):\(port)" }
}
