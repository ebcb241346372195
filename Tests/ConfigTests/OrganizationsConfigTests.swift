import Config
import Foundation
import Testing

@Suite struct OrganizationsConfigTests {
    @Test func organisationsWithInlineKeysAndKeyFilesMakeTheTopLevelKeyOptional() throws {
        let file = NSTemporaryDirectory() + "trader-b-key-\(UUID().uuidString)"
        try "trader-b-key\n".write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        var environment = credentials
        environment["FLORIDAY_API_KEY"] = nil
        environment["GROWER_A_API_KEY"] = "grower-a-key"
        let config = try load("""
            organizations:
              grower-a: { api_key: "${GROWER_A_API_KEY}" }
              trader-b: { api_key_file: \(file) }
            """, environment: environment)
        #expect(config.organizations == [Organization(name: "grower-a", apiKey: Secret("grower-a-key")),
                                         Organization(name: "trader-b", apiKey: Secret("trader-b-key"))])
        #expect(config.apiKey.value.isEmpty)
        let rendered = config.renderedYAML()
        #expect(rendered.contains("api_key: null\norganizations:\n  grower-a: {api_key: \"***\"}\n  trader-b: {api_key: \"***\"}\n"))
        #expect(!rendered.contains("grower-a-key") && !rendered.contains("trader-b-key"))
    }

    @Test func withoutOrganisationsTheTopLevelKeyIsStillRequired() {
        var environment = credentials
        environment["FLORIDAY_API_KEY"] = nil
        #expect(loadError(nil, environment: environment)?.key == "api_key")
    }

    @Test func badOrganisationEntriesNameTheirKey() {
        #expect(loadError("organizations: { Grower_A: { api_key: x } }")?.key == "organizations.Grower_A")
        #expect(loadError("organizations: { grower-a: { api_key: \"${UNSET_VARIABLE_X}\" } }")?.key == "organizations.grower-a.api_key")
        #expect(loadError("organizations: { grower-a: { api_key: x, api_key_file: /y } }")?.key == "organizations.grower-a")
        #expect(loadError("organizations: { grower-a: { key: x } }")?.key == "organizations.grower-a.key")
        #expect(loadError("organizations: [grower-a]")?.key == "organizations")
        #expect(message("organizations: { grower-a: { api_key_file: /nonexistent/key } }").hasPrefix("config: organizations.grower-a.api_key_file: cannot read"))
    }

    @Test func inboundCredentialsMayBeBoundToConfiguredOrganisations() throws {
        let config = try load("""
            organizations: { grower-a: { api_key: a }, trader-b: { api_key: b } }
            inbound_auth:
              - { bearer: "a-long-random-tool-token", organizations: [grower-a] }
              - { bearer: "another-long-tool-token" }
            """)
        #expect(config.inboundAuth[0].organizations == ["grower-a"])
        #expect(config.inboundAuth[1].organizations == nil)
        #expect(config.renderedYAML().contains("{bearer: \"***\", organizations: [grower-a]}"))
        let error = loadError("""
            organizations: { grower-a: { api_key: a } }
            inbound_auth: [{ bearer: "a-long-random-tool-token", organizations: [nobody] }]
            """)
        #expect(error?.key == "inbound_auth[1].organizations")
    }

    @Test func rateLimitSettingsLoadAndRenderBack() throws {
        let config = try load("""
            rate_limit:
              scope: key
              rate: 2.5
              burst: 50
              max_wait: 5s
              max_waiting: 10
              endpoints:
                - { methods: [get], path: "/suppliers-api-*/trade-items/summary", rate: 2, burst: 200 }
            """)
        #expect(config.rateLimit.enabled)
        #expect(config.rateLimit.scope == .key)
        #expect(config.rateLimit.rate == 2.5 && config.rateLimit.burst == 50)
        #expect(config.rateLimit.maxWait == .seconds(5) && config.rateLimit.maxWaiting == 10)
        #expect(config.rateLimit.endpoints == [.init(methods: ["GET"], path: "/suppliers-api-*/trade-items/summary", rate: 2, burst: 200)])
        #expect(try load("rate_limit: { enabled: false }").rateLimit.enabled == false)
        let reloaded = try load(config.renderedYAML())
        #expect(reloaded.rateLimit == config.rateLimit)
    }

    @Test func badRateLimitSettingsNameTheirKey() {
        #expect(loadError("rate_limit: { rate: 0 }")?.key == "rate_limit.rate")
        #expect(loadError("rate_limit: { rate: fast }")?.key == "rate_limit.rate")
        #expect(loadError("rate_limit: { burst: 0 }")?.key == "rate_limit.burst")
        #expect(loadError("rate_limit: { max_wait: 10 }")?.key == "rate_limit.max_wait")
        #expect(loadError("rate_limit: { scope: organisation }")?.key == "rate_limit.scope")
        #expect(loadError("rate_limit: { max_wiat: 1s }").map { "\($0)" }?.contains("did you mean \"max_wait\"") == true)
        #expect(loadError("rate_limit: { endpoints: [{ path: x, rate: 1, burst: 1 }] }")?.key == "rate_limit.endpoints[1].path")
        #expect(loadError("rate_limit: { endpoints: [{ path: /x, burst: 1 }] }")?.key == "rate_limit.endpoints[1].rate")
        #expect(loadError("max_wait: 1s").map { "\($0)" }?.contains("rate_limit.max_wait") == true)
    }
}
