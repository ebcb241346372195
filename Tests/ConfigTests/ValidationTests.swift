import Testing
import Config

struct ValidationTests {
    @Test(arguments: [
        // Unknown keys, with suggestions.
        ("client_secert: x", #"config: client_secert: unknown key "client_secert" (did you mean "client_secret"?)"#),
        ("Listen: 127.0.0.1:80", #"config: Listen: unknown key "Listen" (did you mean "listen"?)"#),
        ("upstream: x", #"config: upstream: unknown key "upstream""#),
        ("timeouts: { conect: 5s }", #"config: timeouts.conect: unknown key "conect" (did you mean "connect"?)"#),
        ("limits:\n  max_header: 10\n", #"config: limits.max_header: unknown key "max_header" (did you mean "max_headers"?)"#),
        ("log: { levle: debug }", #"config: log.levle: unknown key "levle" (did you mean "level"?)"#),
        ("log: { color: true }", #"config: log.color: unknown key "color""#),
        ("connect: 5s", #"config: connect: unknown key "connect" (did you mean "timeouts.connect"?)"#),

        // Wrong types.
        ("- listen", #"config: "/etc/floriday-proxy/proxy.yaml" must hold a mapping of keys, got a list"#),
        ("just text", #"config: "/etc/floriday-proxy/proxy.yaml" must hold a mapping of keys, got a single value"#),
        ("timeouts: 5s", "config: timeouts: expected a mapping of keys, got a single value"),
        ("log: [info]", "config: log: expected a mapping of keys, got a list"),
        ("? [a]\n: 1\n", "config: keys must be names, got a list"),
        ("limits: { [a]: 1 }", "config: limits: keys must be names, got a list"),
        ("scopes: role:app", "config: scopes: expected a list of scopes, got a single value"),
        ("scopes: [a, {b: c}]", "config: scopes: item 2: expected a string, got a mapping"),
        ("client_id: [a, b]", "config: client_id: expected a string, got a list"),
        ("listen: { host: localhost }", "config: listen: expected a string, got a mapping"),
        ("allow_mixed_environments: maybe", #"config: allow_mixed_environments: expected true or false, got "maybe""#),
        ("log: { query: 1 }", #"config: log.query: expected true or false, got "1""#),
        ("limits: { max_headers: 1k }", #"config: limits.max_headers: expected a whole number, got "1k""#),
        ("limits: { max_connections: [1] }", "config: limits.max_connections: expected a whole number, got a list"),
        ("timeouts: { idle: [1s] }", "config: timeouts.idle: expected a duration such as 5s, got a list"),

        // Durations and sizes.
        ("timeouts: { connect: 5 }", #"config: timeouts.connect: "5" has no unit; add one, e.g. "5s" (units: ms, s, m, h)"#),
        ("token_refresh_margin: 60", #"config: token_refresh_margin: "60" has no unit; add one, e.g. "60s" (units: ms, s, m, h)"#),
        ("shutdown_grace: soon", #"config: shutdown_grace: "soon" is not a duration; write e.g. 500ms, 5s, 2m, 1h or 1m30s"#),
        ("timeouts: { body_stall: 1d }", #"config: timeouts.body_stall: "1d" is not a duration; write e.g. 500ms, 5s, 2m, 1h or 1m30s"#),
        ("retry_body_limit: 1MiBs", #"config: retry_body_limit: "1MiBs" is not a size; write e.g. 512, 64KiB, 32MiB, 1GiB or 64KB"#),
        ("limits: { max_body_bytes: 1.5MB }", #"config: limits.max_body_bytes: "1.5MB" is not a size; write e.g. 512, 64KiB, 32MiB, 1GiB or 64KB"#),

        // Choices.
        ("environment: prod", #"config: environment: "prod" is not staging or live"#),
        ("token_auth_method: basic", #"config: token_auth_method: "basic" is not client_secret_post or client_secret_basic"#),
        ("log: { level: verbose }", #"config: log.level: "verbose" is not one of trace, debug, info, notice, warning, error, critical"#),
        ("log: { format: xml }", #"config: log.format: "xml" is not text or json"#),

        // Listen and URLs.
        ("listen: 8080", #"config: listen: "8080" has no port; expected host:port such as 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080"#),
        ("listen: localhost:99999", #"config: listen: "localhost:99999" has port 99999, outside 1-65535; expected host:port such as 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080"#),
        ("api_url: https://api.floriday.io/v1", #"config: api_url: "https://api.floriday.io/v1" must not have a path; request paths are forwarded unchanged"#),
        ("api_url: api.floriday.io", #"config: api_url: "api.floriday.io" is not an absolute URL; expected http:// or https:// and a host"#),
        ("issuer_url: ftp://idm.floriday.io/x", #"config: issuer_url: "ftp://idm.floriday.io/x" must start with http:// or https://"#),
        ("token_url: https://idm.floriday.io/token?x=1", #"config: token_url: "https://idm.floriday.io/token?x=1" must not have a query or fragment"#),
        ("issuer_url: https://me:pw@idm.floriday.io", "config: issuer_url: the URL must not contain user info (user:password@)"),

        // Ranges.
        ("scopes: []", "config: scopes: must not be empty"),
        ("scopes: [a, '', c]", "config: scopes: item 2 is empty"),
        ("scopes: [a, ~]", "config: scopes: item 2 is empty"),
        ("scopes: ['catalog:read supply:read']", #"config: scopes: item 1 "catalog:read supply:read" contains a space; write one scope per item"#),
        ("token_refresh_margin: -1s", "config: token_refresh_margin: must not be negative"),
        ("shutdown_grace: -1s", "config: shutdown_grace: must not be negative"),
        ("retry_body_limit: -1KiB", "config: retry_body_limit: must not be negative"),
        ("timeouts: { connect: 0s }", "config: timeouts.connect: must be greater than 0"),
        ("timeouts: { request: 0ms }", "config: timeouts.request: must be greater than 0"),
        ("timeouts: { idle: -5s }", "config: timeouts.idle: must be greater than 0"),
        ("timeouts: { request_head: 0h }", "config: timeouts.request_head: must be greater than 0"),
        ("timeouts: { body_stall: 0m }", "config: timeouts.body_stall: must be greater than 0"),
        ("limits: { max_target_bytes: 0 }", "config: limits.max_target_bytes: must be greater than 0"),
        ("limits: { max_header_bytes: 0KiB }", "config: limits.max_header_bytes: must be greater than 0"),
        ("limits: { max_headers: 0 }", "config: limits.max_headers: must be greater than 0"),
        ("limits: { max_body_bytes: -1 }", "config: limits.max_body_bytes: must be greater than 0"),
        ("limits: { max_connections: -1 }", "config: limits.max_connections: must be greater than 0"),
        ("limits: { max_upstream_connections: 0 }", "config: limits.max_upstream_connections: must be greater than 0"),
    ])
    func reportsOneLineNamingTheKey(yaml: String, expected: String) {
        let error = loadError(yaml)
        #expect(error?.description == expected)
        #expect(error.map { !$0.description.contains("\n") } ?? false)
    }

    @Test func errorKeysAreTheKeysAsWritten() {
        #expect(loadError("timeouts: { conect: 5s }") == ConfigError(
            key: "timeouts.conect", problem: #"unknown key "conect" (did you mean "connect"?)"#))
        #expect(loadError("limits: { max_headers: 0 }")?.key == "limits.max_headers")
        #expect(loadError("not yaml: [")?.key == "config")
    }

    @Test func upstreamHTTP2TakesItsThreeValues() throws {
        #expect(try load(nil).upstreamHTTP2 == .auto)
        #expect(try load("upstream_http2: never\n").upstreamHTTP2 == .never)
        #expect(try load("upstream_http2: always\n").upstreamHTTP2 == .always)
        #expect(loadError("upstream_http2: sometimes\n")?.key == "upstream_http2")
        #expect(loadError("upstream_http2: always\napi_url: http://127.0.0.1:9000\n")?.key == "upstream_http2")
        #expect(try load("upstream_http2: never\n").renderedYAML().contains("upstream_http2: never\n"))
    }

    @Test func acceptsRetryBodyLimitZeroAndMarginZero() throws {
        let config = try load("retry_body_limit: 0\ntoken_refresh_margin: 0s\n")
        #expect(config.retryBodyLimit == 0 && config.tokenRefreshMargin == .zero)
    }

    @Test func apiURLWithASlashIsNormalized() throws {
        #expect(try load("environment: live\napi_url: https://api.floriday.io/").apiURL.path == "")
        #expect(try load("api_url: http://127.0.0.1:9000/").apiURL.description == "http://127.0.0.1:9000")
    }

    @Test(arguments: [
        ("client_id", "FLORIDAY_CLIENT_ID"), ("client_secret", "FLORIDAY_CLIENT_SECRET"), ("api_key", "FLORIDAY_API_KEY"),
    ])
    func missingCredentials(key: String, variable: String) {
        var environment = credentials
        environment[variable] = nil
        let expected = "config: \(key): missing; set \(key) in the config file, or \(variable) or \(variable)_FILE in the environment"
        #expect(message(nil, environment: environment) == expected)
        #expect(message("\(key): ''", environment: environment) == expected)
        #expect(message("\(key):", environment: environment) == expected)
    }

    @Test func missingConfigFile() {
        do {
            _ = try ConfigLoader.load(path: "/nonexistent/floriday/proxy.yaml", environment: credentials)
            Issue.record("loaded a missing file")
        } catch {
            #expect(error.key == "config")
            #expect(error.description == #"config: cannot read "/nonexistent/floriday/proxy.yaml": No such file or directory"#)
        }
    }

    @Test(arguments: [
        ("listen: 127.0.0.1:8080\nlog: { level: info\n", "line 3, column 1: did not find expected ',' or '}' (while parsing a flow mapping)"),
        ("listen: a: b\n", "line 1, column 10: mapping values are not allowed in this context"),
        ("scopes:\n  - a\n - b\n", "line 3, column 2: did not find expected key (while parsing a block mapping)"),
        ("listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n", #"line 1, column 1: duplicate key "listen""#),
        ("limits: *nothing\n", "line 1, column 9: found undefined alias"),
        ("listen: \u{1}x\n", "line 1, column 9: control characters are not allowed"),
        ("log:\n  level: info\n\tformat: text\n", "line 3, column 1: found a tab character that violates indentation (while scanning a plain scalar)"),
        ("---\nlisten: 127.0.0.1:1\n---\nlisten: 127.0.0.1:2\n", "line 3, column 1: but found another document (expected a single document in the stream)"),
    ])
    func invalidYAML(yaml: String, detail: String) {
        #expect(message(yaml) == #"config: "\#(configPath)" is not valid YAML: \#(detail)"#)
    }
}

struct MixedEnvironmentTests {
    let explanation = "(a staging token is refused by live and vice versa); use one environment, or set allow_mixed_environments: true"

    @Test func stagingIssuerWithLiveAPI() {
        #expect(message("api_url: https://api.floriday.io") == "config: issuer_url: idm.staging.floriday.io issues staging tokens "
            + "but api_url api.floriday.io is the live API, which refuses them \(explanation)")
    }

    @Test func liveIssuerWithStagingAPI() {
        #expect(message("environment: live\napi_url: https://api.staging.floriday.io/") == "config: issuer_url: idm.floriday.io issues live tokens "
            + "but api_url api.staging.floriday.io is the staging API, which refuses them \(explanation)")
    }

    @Test func tokenURLIsCheckedToo() {
        let yaml = """
            environment: live
            token_url: https://idm.staging.floriday.io/oauth2/ausmw6b47z1BnlHkw0h7/v1/token
            """
        #expect(message(yaml) == "config: token_url: idm.staging.floriday.io issues staging tokens "
            + "but api_url api.floriday.io is the live API, which refuses them \(explanation)")
    }

    @Test func allowedWhenAsked() throws {
        let config = try load("""
            environment: live
            issuer_url: https://idm.staging.floriday.io/oauth2/ausmw6b47z1BnlHkw0h7
            token_url: https://idm.staging.floriday.io/oauth2/ausmw6b47z1BnlHkw0h7/v1/token
            allow_mixed_environments: true
            """)
        #expect(config.apiURL.host == "api.floriday.io" && config.issuerURL.host == "idm.staging.floriday.io")
    }

    @Test func otherHostsAreNotChecked() throws {
        #expect(try load("environment: live\napi_url: http://127.0.0.1:9000").issuerURL.host == "idm.floriday.io")
        #expect(try load("issuer_url: https://sandbox.local/oauth2/x\napi_url: https://api.floriday.io").apiURL.host == "api.floriday.io")
        #expect(try load("environment: live\napi_url: https://API.Floriday.io").apiURL.host == "api.floriday.io")
    }

    @Test func matchingEnvironmentsPass() throws {
        #expect(try load("environment: live\napi_url: https://api.floriday.io\nissuer_url: https://idm.floriday.io/oauth2/aus3testdcf2vyfs70i7").environment == .live)
    }
}

struct ValidatedTests {
    let base = ProxyConfig(clientID: "id", clientSecret: "secret", apiKey: "key")

    @Test func defaultsAreValid() throws {
        #expect(try base.validated() == base)
        var live = ProxyConfig(environment: .live, clientID: "id", clientSecret: Secret("s"), apiKey: Secret("k"))
        #expect(try live.validated().apiURL.host == "api.floriday.io")
        live.apiURL.path = "/"
        #expect(try live.validated().apiURL.path == "")
    }

    @Test func checksAConfigBuiltInCode() {
        func problem(_ change: (inout ProxyConfig) -> Void) -> String {
            var config = base
            change(&config)
            do {
                _ = try config.validated()
                return "no error"
            } catch {
                return error.description
            }
        }
        #expect(problem { $0.apiURL = FloridayEnvironment.live.apiURL }.hasPrefix("config: issuer_url: idm.staging.floriday.io issues staging tokens"))
        #expect(problem { $0.apiURL = FloridayEnvironment.live.apiURL; $0.allowMixedEnvironments = true } == "no error")
        #expect(problem { $0.timeouts.connect = .zero } == "config: timeouts.connect: must be greater than 0")
        #expect(problem { $0.limits.maxHeaders = 0 } == "config: limits.max_headers: must be greater than 0")
        #expect(problem { $0.tokenRefreshMargin = .seconds(-1) } == "config: token_refresh_margin: must not be negative")
        #expect(problem { $0.scopes = [] } == "config: scopes: must not be empty")
        #expect(problem { $0.clientSecret = Secret("") }
            == "config: client_secret: missing; set client_secret in the config file, or FLORIDAY_CLIENT_SECRET or FLORIDAY_CLIENT_SECRET_FILE in the environment")
        #expect(problem { $0.listen.port = 0 } == "config: listen: has port 0, outside 1-65535")
        #expect(problem { $0.apiURL.scheme = "ftp" } == #"config: api_url: "ftp://api.staging.floriday.io:443" must start with http:// or https://"#)
        #expect(problem { $0.tokenURL = EndpointURL(scheme: "https", host: "") } == #"config: token_url: "https://" has no host"#)
        #expect(problem { $0.apiURL.path = "/v1" } == #"config: api_url: "https://api.staging.floriday.io/v1" must not have a path; request paths are forwarded unchanged"#)
        #expect(problem { $0.log.level = "loud" } == #"config: log.level: "loud" is not one of trace, debug, info, notice, warning, error, critical"#)
        #expect(problem { $0.caFile = "" } == "config: ca_file: must not be empty; leave it out instead")
    }
}
