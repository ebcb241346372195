/// A configuration problem, reported as one line naming the key it is about.
///
/// Keys are written as in the file: `listen`, `timeouts.connect`, `limits.max_headers`.
/// Problems with the configuration file as a whole (unreadable, not YAML) use the key `config`.
/// Messages never contain a secret value.
public struct ConfigError: Error, Sendable, CustomStringConvertible, Equatable {
    public var key: String
    public var problem: String

    public init(key: String, problem: String) {
        self.key = key
        self.problem = problem
    }

    /// `config: <key>: <problem>`, or `config: <problem>` for the key `config` itself.
    public var description: String {
        key == "config" ? "config: \(problem)" : "config: \(key): \(problem)"
    }
}
