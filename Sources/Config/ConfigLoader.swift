import Yams

/// Loads the configuration: the YAML file, `${VAR}` expansion, environment fallbacks,
/// `*_FILE` secrets, validation.
///
/// Values in the file win; the environment fills the keys the file leaves out:
///
/// | key             | environment                                          |
/// |-----------------|------------------------------------------------------|
/// | `listen`        | `PROXY_LISTEN`                                       |
/// | `admin_listen`  | `PROXY_ADMIN_LISTEN`                                 |
/// | `environment`   | `FLORIDAY_ENVIRONMENT`                               |
/// | `client_id`     | `FLORIDAY_CLIENT_ID` or `FLORIDAY_CLIENT_ID_FILE`         |
/// | `client_secret` | `FLORIDAY_CLIENT_SECRET` or `FLORIDAY_CLIENT_SECRET_FILE` |
/// | `api_key`       | `FLORIDAY_API_KEY` or `FLORIDAY_API_KEY_FILE`             |
///
/// A `*_FILE` variable names a file holding the value (as Docker secrets are mounted);
/// trailing whitespace is trimmed. Setting both `X` and `X_FILE` is an error. Empty
/// environment variables count as unset.
public enum ConfigLoader {
    public static let topLevelKeys = [
        "listen", "environment", "api_url", "issuer_url", "token_url", "client_id", "client_secret",
        "api_key", "scopes", "token_auth_method", "token_refresh_margin", "retry_body_limit", "ca_file",
        "allow_mixed_environments", "timeouts", "limits", "shutdown_grace", "log", "admin_listen",
        "allow_clients", "inbound_auth", "allow", "organizations", "rate_limit", "upstream_http2",
    ]
    public static let timeoutKeys = ["connect", "request", "idle", "request_head", "body_stall"]
    public static let limitKeys = [
        "max_target_bytes", "max_header_bytes", "max_headers", "max_body_bytes", "max_connections",
        "max_upstream_connections",
    ]
    public static let logKeys = ["level", "format", "query"]

    /// Loads and validates the configuration. Only throws `ConfigError`.
    ///
    /// - Parameters:
    ///   - path: The YAML file; nil for none (environment and defaults only).
    ///   - environment: The process environment, e.g. `ProcessInfo.processInfo.environment`.
    ///   - readFile: Reads the config file and `*_FILE` secrets; the default reads UTF-8 from disk.
    public static func load(
        path: String?,
        environment: [String: String],
        readFile: (String) throws -> String = ConfigLoader.readTextFile
    ) throws(ConfigError) -> ProxyConfig {
        let environment = environment.filter { !$0.value.isEmpty }

        var root: Node?
        if let path {
            let text: String
            do {
                text = try readFile(path)
            } catch {
                throw ConfigError(key: "config", problem: "cannot read \"\(path)\": \(error)")
            }
            root = try parseYAML(text, path: path)
            if let root, !root.isNull, root.mapping == nil {
                throw ConfigError(key: "config", problem: "\"\(path)\" must hold a mapping of keys, got \(root.kind)")
            }
        }

        let file = try YAMLSection(
            root, path: "", known: topLevelKeys,
            nested: ["timeouts": timeoutKeys, "limits": limitKeys, "log": logKeys, "rate_limit": RateLimitSettings.keys],
            environment: environment)
        let timeoutsSection = try file.section("timeouts", known: timeoutKeys)
        let limitsSection = try file.section("limits", known: limitKeys)
        let logSection = try file.section("log", known: logKeys)

        let listen: HostPort
        if let text = try file.string("listen") {
            listen = try HostPort(text, key: "listen")
        } else if let text = environment["PROXY_LISTEN"] {
            listen = try fromEnvironment("PROXY_LISTEN") { () throws(ConfigError) in try HostPort(text, key: "listen") }
        } else {
            listen = ProxyConfig.defaultListen
        }

        let floridayEnvironment: FloridayEnvironment
        if let value = try file.choice("environment", of: FloridayEnvironment.self) {
            floridayEnvironment = value
        } else if let text = environment["FLORIDAY_ENVIRONMENT"] {
            floridayEnvironment = try fromEnvironment("FLORIDAY_ENVIRONMENT") { () throws(ConfigError) in
                try parseChoice(text, key: "environment", as: FloridayEnvironment.self)
            }
        } else {
            floridayEnvironment = .staging
        }

        let apiURL = try file.string("api_url").map { text throws(ConfigError) in try EndpointURL(text, key: "api_url") }
        let issuerURL = try file.string("issuer_url").map { text throws(ConfigError) in try EndpointURL(text, key: "issuer_url") }
        let tokenURL = try file.string("token_url").map { text throws(ConfigError) in try EndpointURL(text, key: "token_url") }

        let clientID = try credential("client_id", in: file, variable: "FLORIDAY_CLIENT_ID", readFile: readFile)
        let clientSecret = try credential("client_secret", in: file, variable: "FLORIDAY_CLIENT_SECRET", readFile: readFile)
        let organizations = try file.organizations("organizations", readFile: readFile)
        // With organisations configured, a key for requests that name none is optional.
        let apiKey = try credential("api_key", in: file, variable: "FLORIDAY_API_KEY", readFile: readFile, required: organizations.isEmpty)

        var config = ProxyConfig(
            environment: floridayEnvironment, clientID: clientID,
            clientSecret: Secret(clientSecret), apiKey: Secret(apiKey))
        config.listen = listen
        config.organizations = organizations
        config.rateLimit = try file.rateLimit("rate_limit", readFile: readFile)
        if let apiURL { config.apiURL = apiURL }
        if let issuerURL { config.issuerURL = issuerURL }
        config.tokenURL = tokenURL

        if let scopes = try file.stringList("scopes", expected: "a list of scopes") { config.scopes = scopes }
        if let method = try file.choice("token_auth_method", of: TokenAuthMethod.self) { config.tokenAuthMethod = method }
        if let margin = try file.duration("token_refresh_margin") { config.tokenRefreshMargin = margin }
        if let limit = try file.size("retry_body_limit") { config.retryBodyLimit = limit }
        if let mode = try file.choice("upstream_http2", of: UpstreamHTTP2Setting.self) { config.upstreamHTTP2 = mode }
        config.caFile = try file.string("ca_file")
        if let allow = try file.bool("allow_mixed_environments") { config.allowMixedEnvironments = allow }

        let t = timeoutsSection
        if let value = try t.duration("connect") { config.timeouts.connect = value }
        if let value = try t.duration("request") { config.timeouts.request = value }
        if let value = try t.duration("idle") { config.timeouts.idle = value }
        if let value = try t.duration("request_head") { config.timeouts.requestHead = value }
        if let value = try t.duration("body_stall") { config.timeouts.bodyStall = value }

        let l = limitsSection
        if let value = try l.size("max_target_bytes") { config.limits.maxTargetBytes = value }
        if let value = try l.size("max_header_bytes") { config.limits.maxHeaderBytes = value }
        if let value = try l.count("max_headers") { config.limits.maxHeaders = value }
        if let value = try l.size("max_body_bytes") { config.limits.maxBodyBytes = value }
        if let value = try l.count("max_connections") { config.limits.maxConnections = value }
        if let value = try l.count("max_upstream_connections") { config.limits.maxUpstreamConnections = value }

        if let value = try file.duration("shutdown_grace") { config.shutdownGrace = value }

        if let networks = try file.clientNetworks("allow_clients") { config.allowClients = networks }
        if let credentials = try file.inboundCredentials("inbound_auth") { config.inboundAuth = credentials }
        if let rules = try file.accessRules("allow") { config.allow = rules }

        // admin_listen: present but empty (or "off") disables the admin listener.
        if file.node("admin_listen") != nil {
            let text = try file.string("admin_listen")
            if let text, text.lowercased() != "off" {
                config.adminListen = try HostPort(text, key: "admin_listen")
            } else {
                config.adminListen = nil
            }
        } else if let text = environment["PROXY_ADMIN_LISTEN"] {
            config.adminListen = text.lowercased() == "off"
                ? nil
                : try fromEnvironment("PROXY_ADMIN_LISTEN") { () throws(ConfigError) in try HostPort(text, key: "admin_listen") }
        }

        if let level = try logSection.string("level") {
            guard LogSettings.levels.contains(level.lowercased()) else {
                throw ConfigError.notOneOf(key: "log.level", value: level, choices: LogSettings.levels)
            }
            config.log.level = level.lowercased()
        }
        if let format = try logSection.choice("format", of: LogFormat.self) { config.log.format = format }
        if let query = try logSection.bool("query") { config.log.query = query }

        return try config.validated()
    }

    /// The value of a credential: the file's, else `variable`, else the file `variable_FILE` names.
    private static func credential(
        _ key: String, in file: YAMLSection, variable: String, readFile: (String) throws -> String, required: Bool = true
    ) throws(ConfigError) -> String {
        let environment = file.environment
        let fileVariable = variable + "_FILE"
        if environment[variable] != nil && environment[fileVariable] != nil {
            throw ConfigError(key: key, problem: "both \(variable) and \(fileVariable) are set; set only one")
        }
        if let value = try file.string(key) { return value }
        if let value = environment[variable] { return value }
        guard let path = environment[fileVariable] else {
            if !required { return "" }
            throw ConfigError.missingCredential(key: key, variable: variable)
        }
        return try secret(fromFile: path, key: key, source: "\(fileVariable) \"\(path)\"", readFile: readFile)
    }

    /// Runs `parse` on an environment variable's value, naming the variable in its error.
    private static func fromEnvironment<T>(
        _ variable: String, _ parse: () throws(ConfigError) -> T
    ) throws(ConfigError) -> T {
        do {
            return try parse()
        } catch {
            throw ConfigError(key: error.key, problem: "\(error.problem) (from \(variable))")
        }
    }

    /// Parses the file into a node tree; syntax errors give the line and column, but not
    /// the line's text, which may hold a secret.
    private static func parseYAML(_ text: String, path: String) throws(ConfigError) -> Node? {
        func failure(_ detail: String) -> ConfigError {
            ConfigError(key: "config", problem: "\"\(path)\" is not valid YAML: \(detail)")
        }
        do {
            // `.basic`: no tag resolution. The loader reads every scalar as text and
            // interprets it by key, so the default resolver's regular expressions
            // (NSRegularExpression, ICU) would only cost start-up time and memory.
            return try Yams.compose(yaml: text, .basic)
        } catch let error as YamlError {
            switch error {
            case .scanner(let context, let problem, let mark, _),
                 .parser(let context, let problem, let mark, _),
                 .composer(let context, let problem, let mark, _):
                let while_ = context.map { " (\($0.text))" } ?? ""
                throw failure("line \(mark.line), column \(mark.column): \(problem)\(while_)")
            case .reader(let problem, let offset, _, let yaml):
                if let offset, let (line, column) = lineAndColumn(ofCharacter: offset, in: yaml) {
                    throw failure("line \(line), column \(column): \(problem)")
                }
                throw failure(problem)
            case .duplicatedKeysInMapping(let duplicates, let context):
                let keys = duplicates.map { "\"\($0)\"" }.joined(separator: ", ")
                throw failure("line \(context.mark.line), column \(context.mark.column): duplicate key \(keys)")
            default:
                throw failure("\(error)")
            }
        } catch {
            throw failure("\(error)")
        }
    }

    private static func lineAndColumn(ofCharacter offset: Int, in text: String) -> (Int, Int)? {
        guard offset >= 0, offset <= text.count else { return nil }
        var line = 1, column = 1
        for character in text.prefix(offset) {
            if character == "\n" || character == "\r\n" {
                line += 1
                column = 1
            } else {
                column += 1
            }
        }
        return (line, column)
    }
}
