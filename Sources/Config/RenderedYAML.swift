extension ProxyConfig {
    /// The effective configuration as YAML, for `check-config`. Secrets are shown as `***`.
    /// Loading the output again gives the same configuration (with `***` as the secrets).
    public func renderedYAML() -> String {
        var lines = ["# effective configuration; secrets are shown as ***"]
        func add(_ key: String, _ value: String, indent: Int = 0) {
            lines.append(String(repeating: " ", count: indent) + "\(key): \(value)")
        }
        add("listen", yamlString(listen.description))
        add("admin_listen", adminListen.map { yamlString($0.description) } ?? "off")
        add("environment", environment.rawValue)
        add("api_url", yamlString(apiURL.description))
        add("issuer_url", yamlString(issuerURL.description))
        add("token_url", tokenURL.map { yamlString($0.description) } ?? "null")
        add("client_id", yamlString(clientID))
        add("client_secret", yamlString(clientSecret.description))
        add("api_key", apiKey.value.isEmpty ? "null" : yamlString(apiKey.description))
        if organizations.isEmpty {
            add("organizations", "{}")
        } else {
            lines.append("organizations:")
            lines += organizations.map { "  \($0.name): {api_key: \"***\"}" }
        }
        if scopes.isEmpty {
            add("scopes", "[]")
        } else {
            lines.append("scopes:")
            lines += scopes.map { "  - " + yamlString($0) }
        }
        add("token_auth_method", tokenAuthMethod.rawValue)
        add("token_refresh_margin", formatDuration(tokenRefreshMargin))
        add("retry_body_limit", formatByteSize(retryBodyLimit))
        add("upstream_http2", upstreamHTTP2.rawValue)
        add("ca_file", caFile.map(yamlString) ?? "null")
        add("allow_mixed_environments", "\(allowMixedEnvironments)")
        lines.append("timeouts:")
        add("connect", formatDuration(timeouts.connect), indent: 2)
        add("request", formatDuration(timeouts.request), indent: 2)
        add("idle", formatDuration(timeouts.idle), indent: 2)
        add("request_head", formatDuration(timeouts.requestHead), indent: 2)
        add("body_stall", formatDuration(timeouts.bodyStall), indent: 2)
        lines.append("limits:")
        add("max_target_bytes", formatByteSize(limits.maxTargetBytes), indent: 2)
        add("max_header_bytes", formatByteSize(limits.maxHeaderBytes), indent: 2)
        add("max_headers", "\(limits.maxHeaders)", indent: 2)
        add("max_body_bytes", formatByteSize(limits.maxBodyBytes), indent: 2)
        add("max_connections", "\(limits.maxConnections)", indent: 2)
        add("max_upstream_connections", "\(limits.maxUpstreamConnections)", indent: 2)
        add("shutdown_grace", formatDuration(shutdownGrace))
        add("allow_clients", "[" + allowClients.map { yamlString($0.description) }.joined(separator: ", ") + "]")
        add("inbound_auth", "[" + inboundAuth.map(\.description).joined(separator: ", ") + "]")
        add("allow", "[" + allow.map(\.description).joined(separator: ", ") + "]")
        lines += rateLimit.renderedLines
        lines.append("log:")
        add("level", yamlString(log.level), indent: 2)
        add("format", log.format.rawValue, indent: 2)
        add("query", "\(log.query)", indent: 2)
        return lines.joined(separator: "\n") + "\n"
    }
}

/// A string as a YAML scalar that `ConfigLoader` reads back unchanged: plain when that is
/// unambiguous, else double-quoted. `$` is doubled, as the loader expands `${VAR}`.
func yamlString(_ value: String) -> String {
    let value = value.replacing("$", with: "$$")
    let plainCharacters = value.unicodeScalars.allSatisfy { scalar in
        scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar)
            || "-_./:@+=".unicodeScalars.contains(scalar))
    }
    let startsWell = value.unicodeScalars.first.map { $0.properties.isAlphabetic || $0 == "/" } ?? false
    let ambiguous = ["true", "false", "yes", "no", "on", "off", "y", "n", "null"].contains(value.lowercased())
    if plainCharacters && startsWell && !ambiguous && !value.hasSuffix(":") {
        return value
    }
    var quoted = "\""
    for scalar in value.unicodeScalars {
        switch scalar {
        case "\"": quoted += "\\\""
        case "\\": quoted += "\\\\"
        case "\n": quoted += "\\n"
        case "\t": quoted += "\\t"
        case "\r": quoted += "\\r"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7F {
                let hex = String(scalar.value, radix: 16, uppercase: true)
                quoted += "\\x" + String(repeating: "0", count: 2 - hex.count) + hex
            } else {
                quoted.unicodeScalars.append(scalar)
            }
        }
    }
    return quoted + "\""
}
