import EventLoop
import Foundation
import Sandbox
import Testing

/// `verify` and `check-config` with several organisations, as users run them.
@Suite(.serialized) struct OrganizationCommandTests {
    @Test func verifyChecksEveryKeyOnALineOfItsOwnAndFailsIfOneFails() throws {
        let state = SandboxState(apiKeys: ["sandbox-api-key", "grower-a-key", "trader-b-key"])
        let sandbox = try SandboxServer(state: state, address: SocketAddress(ip: "127.0.0.1", port: 0)!, tls: true)
        defer { sandbox.stop() }
        let ca = try CertificateFile(sandbox.certificateAuthorityPEM!)
        let organizations = """
            organizations:
              grower-a: { api_key: grower-a-key }
              trader-b: { api_key: "${TRADER_B_KEY}" }
            """
        let config = try ProcessTests.sandboxConfig(sandbox, caFile: ca.path, extra: organizations)
        var environment = ProcessTests.sandboxCredentials
        environment["TRADER_B_KEY"] = "trader-b-key"
        let ok = try ProcessTests.run(["verify", "--config", config], environment: environment)
        #expect(ok.status == 0)
        #expect(ok.stdout.contains("✔ api_key: GET /suppliers-api-2024v2/auth/key: 200 OK, organisation: Sandbox Nursery B.V."))
        #expect(ok.stdout.contains("✔ organizations.grower-a: GET /suppliers-api-2024v2/auth/key: 200 OK, organisation: Sandbox Nursery B.V."))
        #expect(ok.stdout.contains("✔ organizations.trader-b: GET"))
        // Customers: the name comes from /identities.
        let customers = try ProcessTests.run(["verify", "--config", config, "--api", "customers", "--version", "2026v1"], environment: environment)
        #expect(customers.status == 0)
        #expect(customers.stdout.contains("✔ organizations.grower-a: GET /customers-api-2026v1/identities: 200 OK, organisation: Sandbox Nursery B.V."))

        environment["TRADER_B_KEY"] = "withdrawn-key-value"
        let oneBad = try ProcessTests.run(["verify", "--config", config], environment: environment)
        #expect(oneBad.status == 1)
        #expect(oneBad.stdout.contains("✔ organizations.grower-a:"))
        #expect(oneBad.stdout.contains("✘ organizations.trader-b: GET /suppliers-api-2024v2/auth/key: HTTP 403"))
        #expect(!oneBad.stdout.contains("withdrawn-key-value") && !oneBad.stdout.contains("grower-a-key"))
    }

    @Test func checkConfigListsTheOrganisationsWithKeysHidden() throws {
        let config = try ProcessTests.writeTemp("""
            organizations:
              grower-a: { api_key: grower-a-key }
            rate_limit: { max_wait: 10s }
            """)
        var environment = ProcessTests.credentials
        environment["FLORIDAY_API_KEY"] = nil
        let outcome = try ProcessTests.run(["check-config", "--config", config], environment: environment)
        #expect(outcome.status == 0)
        #expect(outcome.stdout.contains("api_key: null\norganizations:\n  grower-a: {api_key: \"***\"}\n"))
        #expect(outcome.stdout.contains("rate_limit:\n  enabled: true\n"))
        #expect(outcome.stdout.contains("  max_wait: 10s\n"))
        #expect(!outcome.stdout.contains("grower-a-key"))

        let bad = try ProcessTests.writeTemp("organizations: { grower-a: { api_key: x } }\nrate_limit: { rate: -1 }\n")
        let refused = try ProcessTests.run(["check-config", "--config", bad], environment: ProcessTests.credentials)
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("rate_limit.rate"))
    }
}
