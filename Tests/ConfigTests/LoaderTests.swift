import Foundation
import Testing
import Config

struct LoaderTests {
    @Test func defaultsWithoutAFile() throws {
        let config = try load(nil)
        #expect(config.listen == HostPort(host: "127.0.0.1", port: 8080))
        #expect(config.environment == .staging)
        #expect(config.apiURL.description == "https://api.staging.floriday.io")
        #expect(config.issuerURL.description == "https://idm.staging.floriday.io/oauth2/ausmw6b47z1BnlHkw0h7")
        #expect(config.tokenURL == nil)
        #expect(config.discoveryURL.description
            == "https://idm.staging.floriday.io/oauth2/ausmw6b47z1BnlHkw0h7/.well-known/oauth-authorization-server")
        #expect(config.clientID == "client-1234")
        #expect(config.clientSecret == Secret("s3cr3t-client-value"))
        #expect(config.apiKey == Secret("k3y-api-value"))
        #expect(config.scopes == [
            "role:app", "catalog:read", "sales-order:write", "organization:read", "supply:read",
            "supply:write", "sales-order:read", "delivery-conditions:read", "fulfillment:write", "fulfillment:read",
        ])
        #expect(config.tokenAuthMethod == .clientSecretPost)
        #expect(config.tokenRefreshMargin == .seconds(60))
        #expect(config.retryBodyLimit == 1_048_576)
        #expect(config.caFile == nil)
        #expect(config.allowMixedEnvironments == false)
        #expect(config.timeouts == Timeouts(
            connect: .seconds(5), request: .seconds(60), idle: .seconds(75), requestHead: .seconds(10), bodyStall: .seconds(30)))
        #expect(config.limits == Limits(
            maxTargetBytes: 8192, maxHeaderBytes: 65_536, maxHeaders: 100, maxBodyBytes: 33_554_432,
            maxConnections: 4096, maxUpstreamConnections: 64))
        #expect(config.shutdownGrace == .seconds(20))
        #expect(config.log == LogSettings(level: "info", format: .text, query: false))
        #expect(config == ProxyConfig(clientID: "client-1234", clientSecret: "s3cr3t-client-value", apiKey: "k3y-api-value"))
    }

    @Test func anEmptyFileGivesTheDefaults() throws {
        let defaults = try load(nil)
        #expect(try load("") == defaults)
        #expect(try load("# only a comment\n") == defaults)
        #expect(try load("---\n") == defaults)
    }

    @Test func liveEnvironmentPreset() throws {
        let config = try load("environment: live\n")
        #expect(config.environment == .live)
        #expect(config.apiURL.description == "https://api.floriday.io")
        #expect(config.issuerURL.description == "https://idm.floriday.io/oauth2/aus3testdcf2vyfs70i7")
    }

    @Test func environmentFromTheEnvironment() throws {
        var environment = credentials
        environment["FLORIDAY_ENVIRONMENT"] = "live"
        #expect(try load(nil, environment: environment).apiURL.host == "api.floriday.io")
        // The file wins.
        #expect(try load("environment: staging", environment: environment).apiURL.host == "api.staging.floriday.io")
        environment["FLORIDAY_ENVIRONMENT"] = "production"
        #expect(message(nil, environment: environment)
            == #"config: environment: "production" is not staging or live (from FLORIDAY_ENVIRONMENT)"#)
    }

    @Test func urlsOverrideThePresets() throws {
        let config = try load("""
            environment: live
            api_url: http://localhost:9000/
            issuer_url: http://localhost:9001/oauth2/default
            token_url: http://localhost:9001/oauth2/default/v1/token
            """)
        #expect(config.environment == .live)
        #expect(config.apiURL == EndpointURL(scheme: "http", host: "localhost", port: 9000, path: ""))
        #expect(config.issuerURL.description == "http://localhost:9001/oauth2/default")
        #expect(config.tokenURL?.description == "http://localhost:9001/oauth2/default/v1/token")
    }

    @Test func everyKeyFromTheFile() throws {
        let config = try load("""
            listen: "[::1]:9999"
            environment: live
            api_url: https://api.floriday.io
            issuer_url: https://idm.floriday.io/oauth2/aus3testdcf2vyfs70i7
            token_url: https://idm.floriday.io/oauth2/aus3testdcf2vyfs70i7/v1/token
            client_id: file-client
            client_secret: file-secret
            api_key: file-key
            scopes: [role:app, catalog:read]
            token_auth_method: client_secret_basic
            token_refresh_margin: 2m
            retry_body_limit: 64KB
            ca_file: /etc/ssl/extra.pem
            allow_mixed_environments: true
            timeouts: { connect: 1s, request: 2m, idle: 90s, request_head: 500ms, body_stall: 1m30s }
            limits:
              max_target_bytes: 4KiB
              max_header_bytes: 32KiB
              max_headers: 50
              max_body_bytes: 1GiB
              max_connections: 10
              max_upstream_connections: 2
            shutdown_grace: 0s
            log: { level: DEBUG, format: json, query: true }
            """)
        #expect(config.listen == HostPort(host: "::1", port: 9999))
        #expect(config.environment == .live)
        #expect(config.tokenURL?.path == "/oauth2/aus3testdcf2vyfs70i7/v1/token")
        #expect(config.clientID == "file-client")
        #expect(config.clientSecret.value == "file-secret")
        #expect(config.apiKey.value == "file-key")
        #expect(config.scopes == ["role:app", "catalog:read"])
        #expect(config.tokenAuthMethod == .clientSecretBasic)
        #expect(config.tokenRefreshMargin == .seconds(120))
        #expect(config.retryBodyLimit == 64_000)
        #expect(config.caFile == "/etc/ssl/extra.pem")
        #expect(config.allowMixedEnvironments)
        #expect(config.timeouts == Timeouts(
            connect: .seconds(1), request: .seconds(120), idle: .seconds(90), requestHead: .milliseconds(500),
            bodyStall: .seconds(90)))
        #expect(config.limits == Limits(
            maxTargetBytes: 4096, maxHeaderBytes: 32_768, maxHeaders: 50, maxBodyBytes: 1 << 30,
            maxConnections: 10, maxUpstreamConnections: 2))
        #expect(config.shutdownGrace == .zero)
        #expect(config.log == LogSettings(level: "debug", format: .json, query: true))
    }

    @Test func partialSectionsKeepTheOtherDefaults() throws {
        let config = try load("timeouts:\n  idle: 5m\nlimits:\n  max_headers: 20\nlog:\n  query: yes\n")
        #expect(config.timeouts == Timeouts(idle: .seconds(300)))
        #expect(config.limits == Limits(maxHeaders: 20))
        #expect(config.log == LogSettings(query: true))
        #expect(try load("timeouts:\nlimits: ~\nlog: null\n").timeouts == Timeouts())
    }

    @Test func listenFromTheEnvironment() throws {
        var environment = credentials
        environment["PROXY_LISTEN"] = "0.0.0.0:9000"
        #expect(try load(nil, environment: environment).listen == HostPort(host: "0.0.0.0", port: 9000))
        #expect(try load("listen: 127.0.0.1:7000", environment: environment).listen.port == 7000)
        environment["PROXY_LISTEN"] = "[::]:8080"
        #expect(try load(nil, environment: environment).listen == HostPort(host: "::", port: 8080))
        environment["PROXY_LISTEN"] = "9000"
        #expect(message(nil, environment: environment) == #"config: listen: "9000" has no port; "#
            + "expected host:port such as 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080 (from PROXY_LISTEN)")
    }

    @Test func ipv6Listen() throws {
        #expect(try load(#"listen: "[::1]:8080""#).listen == HostPort(host: "::1", port: 8080))
        #expect(try load("listen: '[2001:db8::5]:443'").listen.description == "[2001:db8::5]:443")
    }

    @Test func credentialsFromTheFileWin() throws {
        let config = try load("client_id: from-file\nclient_secret: file-secret\napi_key: file-key\n")
        #expect(config.clientID == "from-file")
        #expect(config.clientSecret.value == "file-secret")
        #expect(config.apiKey.value == "file-key")
    }

    @Test func credentialsOnlyInTheFile() throws {
        let config = try load("client_id: a\nclient_secret: b\napi_key: c\n", environment: [:])
        #expect(config.clientID == "a" && config.clientSecret.value == "b" && config.apiKey.value == "c")
    }

    @Test func emptyEnvironmentVariablesCountAsUnset() throws {
        var environment = credentials
        environment["PROXY_LISTEN"] = ""
        environment["FLORIDAY_ENVIRONMENT"] = ""
        environment["FLORIDAY_API_KEY_FILE"] = ""
        let config = try load(nil, environment: environment)
        #expect(config.listen.port == 8080 && config.environment == .staging)
    }
}

struct ExpansionTests {
    @Test func expandsVariables() throws {
        let environment = credentials.merging([
            "PORT": "9100", "HOST": "0.0.0.0", "MARGIN": "30s", "ENV": "live", "ALLOW": "true",
            "SCOPE": "supply:read", "BODY": "2MiB",
        ]) { $1 }
        let config = try load("""
            listen: ${HOST}:${PORT}
            environment: ${ENV}
            token_refresh_margin: ${MARGIN}
            allow_mixed_environments: ${ALLOW}
            scopes: [role:app, "${SCOPE}"]
            limits: { max_body_bytes: "${BODY}" }
            """, environment: environment)
        #expect(config.listen == HostPort(host: "0.0.0.0", port: 9100))
        #expect(config.environment == .live)
        #expect(config.tokenRefreshMargin == .seconds(30))
        #expect(config.allowMixedEnvironments)
        #expect(config.scopes == ["role:app", "supply:read"])
        #expect(config.limits.maxBodyBytes == 2 << 20)
    }

    @Test func defaultsApplyWhenUnsetOrEmpty() throws {
        var environment = credentials
        #expect(try load("listen: ${LISTEN:-127.0.0.1:7070}", environment: environment).listen.port == 7070)
        environment["LISTEN"] = ""
        #expect(try load("listen: ${LISTEN:-127.0.0.1:7070}", environment: environment).listen.port == 7070)
        environment["LISTEN"] = "127.0.0.1:6060"
        #expect(try load("listen: ${LISTEN:-127.0.0.1:7070}", environment: environment).listen.port == 6060)
        #expect(try load("shutdown_grace: ${GRACE:-5s}").shutdownGrace == .seconds(5))
        #expect(try load("token_url: ${TOKEN_URL:-}").tokenURL == nil)
    }

    @Test func anUndefinedVariableMeansNotSet() throws {
        // Falls back to the environment variable of the key...
        #expect(try load("client_id: ${UNDEFINED}").clientID == "client-1234")
        // ...or the default...
        #expect(try load("token_refresh_margin: ${UNDEFINED}").tokenRefreshMargin == .seconds(60))
        // ...or reports the credential as missing.
        #expect(message("api_key: ${MY_API_KEY}", environment: ["FLORIDAY_CLIENT_ID": "a", "FLORIDAY_CLIENT_SECRET": "b"])
            == "config: api_key: missing; set api_key in the config file, or FLORIDAY_API_KEY or FLORIDAY_API_KEY_FILE in the environment")
    }

    @Test func doubleDollarIsALiteralDollar() throws {
        let config = try load(#"client_secret: "pa$$word${X:-$$}$$$${HOME}""#, environment: credentials.merging(["X": "x"]) { $1 })
        #expect(config.clientSecret.value == "pa$wordx$${HOME}")
        #expect(try load("client_id: a$b$").clientID == "a$b$")
        #expect(try load("client_id: ${UNDEFINED:-$$x}").clientID == "$x")
    }

    @Test func expansionHappensBeforeTyping() throws {
        // The expanded text is read as a boolean, duration or size, also when quoted.
        let environment = credentials.merging(["FALSE": "false", "N": "100"]) { $1 }
        #expect(try load("allow_mixed_environments: ${FALSE}", environment: environment).allowMixedEnvironments == false)
        #expect(try load("limits: { max_headers: '${N}' }", environment: environment).limits.maxHeaders == 100)
        #expect(try load("log: { query: 'true' }").log.query)
    }

    @Test(arguments: [
        ("client_secret: ${UNCLOSED", #"config: client_secret: has a "${" without its closing "}"; write ${NAME} or ${NAME:-default}, and $$ for a literal $"#),
        ("client_secret: ${1BAD}", "config: client_secret: has an invalid variable reference; write ${NAME} or ${NAME:-default}, and $$ for a literal $"),
        ("client_secret: ${A:B}", "config: client_secret: has an invalid variable reference; write ${NAME} or ${NAME:-default}, and $$ for a literal $"),
        ("client_secret: ${}", "config: client_secret: has an invalid variable reference; write ${NAME} or ${NAME:-default}, and $$ for a literal $"),
        ("timeouts:\n  idle: ${A:-${B}}\n", "config: timeouts.idle: has an invalid variable reference; write ${NAME} or ${NAME:-default}, and $$ for a literal $"),
        ("scopes: [a, '${', c]", #"config: scopes: has a "${" without its closing "}"; write ${NAME} or ${NAME:-default}, and $$ for a literal $"#),
    ])
    func badReferences(yaml: String, expected: String) {
        #expect(message(yaml) == expected)
    }
}

struct SecretFileTests {
    /// A file in a fresh temporary directory, removed by `body`'s end.
    func withTemporaryFile(_ contents: String?, _ body: (String) throws -> Void) throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("config-tests-\(UInt64.random(in: 0 ... .max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("secret")
        if let contents {
            try contents.write(to: file, atomically: true, encoding: .utf8)
        }
        try body(file.path)
    }

    @Test func readsSecretsFromFiles() throws {
        try withTemporaryFile("file-s3cret\n") { path throws in
            let environment = [
                "FLORIDAY_CLIENT_ID": "client", "FLORIDAY_API_KEY_FILE": path, "FLORIDAY_CLIENT_SECRET_FILE": path,
            ]
            let config = try load(nil, environment: environment)
            #expect(config.clientSecret.value == "file-s3cret")
            #expect(config.apiKey.value == "file-s3cret")
            // The documented `client_secret: ${FLORIDAY_CLIENT_SECRET}` falls back to the file too.
            #expect(try load("client_secret: ${FLORIDAY_CLIENT_SECRET}", environment: environment).clientSecret.value == "file-s3cret")
            // A value in the config file wins.
            #expect(try load("api_key: inline", environment: environment).apiKey.value == "inline")
        }
    }

    @Test func trimsTrailingWhitespaceOnly() throws {
        try withTemporaryFile("  id with inner space \t\r\n\n") { path throws in
            let environment = credentials.filter { $0.key != "FLORIDAY_CLIENT_ID" }.merging(["FLORIDAY_CLIENT_ID_FILE": path]) { $1 }
            #expect(try load(nil, environment: environment).clientID == "  id with inner space")
        }
    }

    @Test func anUnreadableFileIsAnError() throws {
        try withTemporaryFile(nil) { path throws in
            var environment = credentials
            environment["FLORIDAY_CLIENT_SECRET"] = nil
            environment["FLORIDAY_CLIENT_SECRET_FILE"] = path
            #expect(message(nil, environment: environment)
                == #"config: client_secret: cannot read FLORIDAY_CLIENT_SECRET_FILE "\#(path)": No such file or directory"#)
        }
    }

    @Test func anEmptyFileIsAnError() throws {
        try withTemporaryFile("\n") { path throws in
            var environment = credentials
            environment["FLORIDAY_API_KEY"] = nil
            environment["FLORIDAY_API_KEY_FILE"] = path
            #expect(message(nil, environment: environment) == #"config: api_key: FLORIDAY_API_KEY_FILE "\#(path)" is empty"#)
        }
    }

    @Test(arguments: [
        ("FLORIDAY_CLIENT_ID", "client_id"), ("FLORIDAY_CLIENT_SECRET", "client_secret"), ("FLORIDAY_API_KEY", "api_key"),
    ])
    func bothVariableAndFileIsAnError(variable: String, key: String) throws {
        try withTemporaryFile("value") { path throws in
            var environment = credentials
            environment[variable + "_FILE"] = path
            let expected = "config: \(key): both \(variable) and \(variable)_FILE are set; set only one"
            #expect(message(nil, environment: environment) == expected)
            // Also when the file sets the key: the environment is ambiguous either way.
            #expect(message("\(key): inline", environment: environment) == expected)
        }
    }
}
