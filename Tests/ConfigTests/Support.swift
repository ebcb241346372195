import Config

/// Credentials as the environment provides them in most tests.
let credentials = [
    "FLORIDAY_CLIENT_ID": "client-1234",
    "FLORIDAY_CLIENT_SECRET": "s3cr3t-client-value",
    "FLORIDAY_API_KEY": "k3y-api-value",
]

let configPath = "/etc/floriday-proxy/proxy.yaml"

/// Loads `yaml` as if it were the file at `configPath` (nil: no file). Other paths are
/// read from disk, for `*_FILE` secrets.
func load(_ yaml: String?, environment: [String: String] = credentials) throws(ConfigError) -> ProxyConfig {
    try ConfigLoader.load(
        path: yaml == nil ? nil : configPath,
        environment: environment,
        readFile: { path in
            if path == configPath, let yaml { return yaml }
            return try ConfigLoader.readTextFile(path)
        })
}

/// The error loading `yaml` gives, or nil when it loads.
func loadError(_ yaml: String?, environment: [String: String] = credentials) -> ConfigError? {
    do {
        _ = try load(yaml, environment: environment)
        return nil
    } catch {
        return error
    }
}

/// The one-line message loading `yaml` gives, or "no error".
func message(_ yaml: String?, environment: [String: String] = credentials) -> String {
    loadError(yaml, environment: environment)?.description ?? "no error"
}
