extension ProxyConfig {
    /// Re-runs the semantic validation (URLs, ranges, credentials, mixed environments),
    /// for a configuration built or changed in code. `ConfigLoader.load` ends with it.
    /// Returns the configuration with an `api_url` path of "/" normalized to "".
    public func validated() throws(ConfigError) -> ProxyConfig {
        var config = self
        if config.apiURL.path == "/" { config.apiURL.path = "" }
        if listen.host.isEmpty {
            throw ConfigError(key: "listen", problem: "has no host; expected host:port such as 127.0.0.1:8080")
        }
        if !(1...65535).contains(listen.port) {
            throw ConfigError(key: "listen", problem: "has port \(listen.port), outside 1-65535")
        }

        try apiURL.check(key: "api_url")
        if !config.apiURL.path.isEmpty {
            throw ConfigError(
                key: "api_url",
                problem: "\"\(apiURL)\" must not have a path; request paths are forwarded unchanged")
        }
        try issuerURL.check(key: "issuer_url")
        try tokenURL?.check(key: "token_url")

        for (key, value, variable) in [
            ("client_id", clientID, "FLORIDAY_CLIENT_ID"),
            ("client_secret", clientSecret.value, "FLORIDAY_CLIENT_SECRET"),
            ("api_key", organizations.isEmpty ? apiKey.value : "-", "FLORIDAY_API_KEY"),
        ] where value.isEmpty {
            throw ConfigError.missingCredential(key: key, variable: variable)
        }
        var names = Set<String>()
        for organization in organizations {
            if !Organization.isValidName(Array(organization.name.utf8)) {
                throw ConfigError(key: "organizations.\(organization.name)", problem: "is not a valid organisation name")
            }
            if !names.insert(organization.name).inserted {
                throw ConfigError(key: "organizations.\(organization.name)", problem: "is configured twice")
            }
            if organization.apiKey.value.isEmpty {
                throw ConfigError(key: "organizations.\(organization.name).api_key", problem: "is empty (a variable may be unset)")
            }
        }
        for (index, credential) in inboundAuth.enumerated() {
            for name in credential.organizations ?? [] where !names.contains(name) {
                throw ConfigError(key: "inbound_auth[\(index + 1)].organizations", problem: "\"\(name)\" is not one of the configured organizations")
            }
        }
        try rateLimit.validate()

        if scopes.isEmpty {
            throw ConfigError(key: "scopes", problem: "must not be empty")
        }
        for (index, scope) in scopes.enumerated() {
            if scope.isEmpty {
                throw ConfigError(key: "scopes", problem: "item \(index + 1) is empty")
            }
            if scope.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 }) {
                throw ConfigError(key: "scopes", problem: "item \(index + 1) \"\(scope)\" contains a space; write one scope per item")
            }
        }

        if tokenRefreshMargin < .zero {
            throw ConfigError(key: "token_refresh_margin", problem: "must not be negative")
        }
        if retryBodyLimit < 0 {
            throw ConfigError(key: "retry_body_limit", problem: "must not be negative")
        }
        if let adminListen, adminListen == listen {
            throw ConfigError(key: "admin_listen", problem: "must differ from listen (\(listen))")
        }
        if shutdownGrace < .zero {
            throw ConfigError(key: "shutdown_grace", problem: "must not be negative")
        }
        if upstreamHTTP2 == .always && apiURL.scheme != "https" {
            throw ConfigError(key: "upstream_http2", problem: "always needs an https api_url: HTTP/2 is negotiated by TLS ALPN")
        }
        if caFile?.isEmpty == true {
            throw ConfigError(key: "ca_file", problem: "must not be empty; leave it out instead")
        }

        for (key, value) in [
            ("connect", timeouts.connect), ("request", timeouts.request), ("idle", timeouts.idle),
            ("request_head", timeouts.requestHead), ("body_stall", timeouts.bodyStall),
        ] where value <= .zero {
            throw ConfigError(key: "timeouts.\(key)", problem: "must be greater than 0")
        }
        for (key, value) in [
            ("max_target_bytes", limits.maxTargetBytes), ("max_header_bytes", limits.maxHeaderBytes),
            ("max_headers", limits.maxHeaders), ("max_body_bytes", limits.maxBodyBytes),
            ("max_connections", limits.maxConnections), ("max_upstream_connections", limits.maxUpstreamConnections),
        ] where value <= 0 {
            throw ConfigError(key: "limits.\(key)", problem: "must be greater than 0")
        }

        if !LogSettings.levels.contains(log.level) {
            throw ConfigError.notOneOf(key: "log.level", value: log.level, choices: LogSettings.levels)
        }

        if !allowMixedEnvironments {
            try checkEnvironmentsMatch(key: "issuer_url", idmURL: issuerURL)
            if let tokenURL {
                try checkEnvironmentsMatch(key: "token_url", idmURL: tokenURL)
            }
        }
        return config
    }

    /// Floriday's live API refuses staging tokens and the staging API refuses live ones.
    /// Hosts outside Floriday (a local sandbox, say) are not checked.
    private func checkEnvironmentsMatch(key: String, idmURL: EndpointURL) throws(ConfigError) {
        guard let tokens = FloridayEnvironment.of(host: idmURL.host),
              let api = FloridayEnvironment.of(host: apiURL.host),
              tokens != api
        else { return }
        throw ConfigError(
            key: key,
            problem: "\(idmURL.host) issues \(tokens) tokens but api_url \(apiURL.host) is the \(api) API, "
                + "which refuses them (a staging token is refused by live and vice versa); "
                + "use one environment, or set allow_mixed_environments: true")
    }
}

extension ConfigError {
    static func missingCredential(key: String, variable: String) -> ConfigError {
        ConfigError(
            key: key,
            problem: "missing; set \(key) in the config file, or \(variable) or \(variable)_FILE in the environment")
    }

    static func notOneOf(key: String, value: String, choices: [String]) -> ConfigError {
        let list: String
        if choices.count == 2 {
            list = "\(choices[0]) or \(choices[1])"
        } else {
            list = "one of " + choices.joined(separator: ", ")
        }
        return ConfigError(key: key, problem: "\"\(value)\" is not \(list)")
    }
}
