import Config
import Foundation
import Proxy
import Sandbox
import Testing

/// Three organisations through one token: the key is chosen per request, the token is shared.
@Suite struct OrganizationTests {
    static let keys = ["grower-a": "grower-a-key", "trader-b": "trader-b-key", "agent-c": "agent-c-key"]

    static func harness(defaultKey: Bool = true, configure: (inout ProxyConfig) -> Void = { _ in }) throws -> Harness {
        let h = try Harness { config in
            config.organizations = keys.keys.sorted().map { Organization(name: $0, apiKey: Secret(keys[$0]!)) }
            if !defaultKey { config.apiKey = Secret("") }
            configure(&config)
        }
        h.state.apiKeys = Set(keys.values).union(["sandbox-api-key"])
        return h
    }

    static func echoed(_ response: TestClient.Response) -> (target: String?, headers: [String: Any]) {
        let json = response.json
        return (json["target"] as? String, json["headers"] as? [String: Any] ?? [:])
    }

    static func problemType(_ response: TestClient.Response) -> String? {
        (response.json["type"] as? String).map { String($0.split(separator: ":").last!) }
    }

    @Test func prefixAndHeaderPickTheKeyAndOneTokenServesAll() throws {
        let h = try Self.harness()
        let client = try h.client()

        let a = try client.request("GET", "/org/grower-a/suppliers-api-2026v1/_sandbox/echo/trade-items?limit=2")
        #expect(a.status == 200)
        #expect(Self.echoed(a).target == "/suppliers-api-2026v1/_sandbox/echo/trade-items?limit=2")
        #expect(Self.echoed(a).headers["x-api-key"] as? String == "grower-a-key")

        let b = try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/trade-items", headers: [("X-Floriday-Organization", "trader-b")])
        #expect(b.status == 200)
        #expect(Self.echoed(b).headers["x-api-key"] as? String == "trader-b-key")
        #expect(Self.echoed(b).headers["x-floriday-organization"] == nil)

        let c = try client.request("GET", "/org/agent-c/suppliers-api-2026v1/_sandbox/echo/x", headers: [("X-Floriday-Organization", "agent-c")])
        #expect(Self.echoed(c).headers["x-api-key"] as? String == "agent-c-key")

        let none = try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x")
        #expect(Self.echoed(none).headers["x-api-key"] as? String == "sandbox-api-key")

        // One token fetch for every organisation.
        #expect(h.state.tokensIssued == 1)
        #expect(eventually { h.logs.all.filter { $0.contains(" access ") || $0.hasPrefix("info access") }.count >= 4 })
        let access = h.logs.all.filter { $0.hasPrefix("info access") }
        #expect(access.contains { $0.contains("organization=grower-a") && $0.contains("path=/suppliers-api-2026v1/_sandbox/echo/trade-items") })
        #expect(access.contains { $0.contains("organization=trader-b") })
        #expect(access.contains { $0.contains("organization=(default)") })
        #expect(!h.logs.text.contains("grower-a-key") && !h.logs.text.contains("trader-b-key"))
    }

    @Test func unknownMissingAndConflictingOrganisationsAreRefusedWithoutForwarding() throws {
        let h = try Self.harness(defaultKey: false)
        let client = try h.client()
        // Warm the token so the counter below counts API requests only.
        #expect(try client.request("GET", "/org/grower-a/suppliers-api-2026v1/_sandbox/echo/x").status == 200)
        let before = h.state.apiRequests

        let unknown = try client.request("GET", "/org/nobody/suppliers-api-2026v1/_sandbox/echo/x")
        #expect(unknown.status == 404 && Self.problemType(unknown) == "unknown-organization")
        #expect(unknown.header("content-type") == "application/problem+json")
        let unknownHeader = try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x", headers: [("X-Floriday-Organization", "nobody")])
        #expect(unknownHeader.status == 404 && Self.problemType(unknownHeader) == "unknown-organization")
        let invalid = try client.request("GET", "/org/Grower_A/suppliers-api-2026v1/_sandbox/echo/x")
        #expect(invalid.status == 404 && !invalid.bodyString.contains("Grower_A"))

        let missing = try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x")
        #expect(missing.status == 400 && Self.problemType(missing) == "organization-required")

        let conflict = try client.request("GET", "/org/grower-a/suppliers-api-2026v1/_sandbox/echo/x", headers: [("X-Floriday-Organization", "trader-b")])
        #expect(conflict.status == 400 && Self.problemType(conflict) == "organization-conflict")
        let twoHeaders = try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x", headers: [("X-Floriday-Organization", "grower-a"), ("X-Floriday-Organization", "trader-b")])
        #expect(twoHeaders.status == 400 && Self.problemType(twoHeaders) == "organization-conflict")

        #expect(h.state.apiRequests == before)
    }

    @Test func anInboundCredentialBoundToOneOrganisationMayUseOnlyThatOne() throws {
        let h = try Self.harness { config in
            config.inboundAuth = [.bearer(Secret("grower-a-tool-token-0123"), organizations: ["grower-a"]),
                                  .bearer(Secret("every-organisation-token"))]
        }
        let client = try h.client()
        let bound = [("Authorization", "Bearer grower-a-tool-token-0123")]
        #expect(try client.request("GET", "/org/grower-a/suppliers-api-2026v1/_sandbox/echo/x", headers: bound).status == 200)
        let other = try client.request("GET", "/org/trader-b/suppliers-api-2026v1/_sandbox/echo/x", headers: bound)
        #expect(other.status == 403 && Self.problemType(other) == "organization-denied")
        let byDefault = try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x", headers: bound)
        #expect(byDefault.status == 403 && Self.problemType(byDefault) == "organization-denied")
        let free = [("Authorization", "Bearer every-organisation-token")]
        #expect(try client.request("GET", "/org/trader-b/suppliers-api-2026v1/_sandbox/echo/x", headers: free).status == 200)
        // No credential at all: 401 before anything is said about organisations.
        let anonymous = try client.request("GET", "/org/nobody/suppliers-api-2026v1/_sandbox/echo/x")
        #expect(anonymous.status == 401)
    }

    @Test func allowRulesSeeThePathWithoutThePrefix() throws {
        let h = try Self.harness { config in
            config.allow = [AccessRule(methods: ["GET"], path: "/suppliers-api-2026v1/trade-items")]
        }
        let client = try h.client()
        #expect(try client.request("GET", "/org/grower-a/suppliers-api-2026v1/trade-items").status == 200)
        #expect(try client.request("GET", "/org/grower-a/suppliers-api-2026v1/other").status == 403)
    }

    @Test func aReloadAddsChangesAndRemovesOrganisationsOnOpenConnections() throws {
        let h = try Self.harness()
        let client = try h.client()
        #expect(try client.request("GET", "/org/agent-c/suppliers-api-2026v1/_sandbox/echo/x").status == 200)
        var config = h.proxy.config
        config.organizations = [Organization(name: "grower-a", apiKey: Secret("grower-a-key-2")),
                                Organization(name: "new-d", apiKey: Secret("new-d-key"))]
        h.state.apiKeys = ["grower-a-key-2", "new-d-key", "sandbox-api-key"]
        _ = try h.proxy.reload(config)
        let changed = try client.request("GET", "/org/grower-a/suppliers-api-2026v1/_sandbox/echo/x")
        #expect(Self.echoed(changed).headers["x-api-key"] as? String == "grower-a-key-2")
        #expect(Self.echoed(try client.request("GET", "/org/new-d/suppliers-api-2026v1/_sandbox/echo/x")).headers["x-api-key"] as? String == "new-d-key")
        #expect(try client.request("GET", "/org/agent-c/suppliers-api-2026v1/_sandbox/echo/x").status == 404)
        #expect(h.proxy.organizationStatus().map(\.name) == ["(default)", "grower-a", "new-d"])
    }
}
