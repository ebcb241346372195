import Config
import Testing

struct AccessControlTests {
    @Test func networks() throws {
        let config = try load("allow_clients: [10.0.0.0/8, 192.168.1.7, \"2001:db8::/32\"]\n")
        #expect(config.allowClients.map(\.description) == ["10.0.0.0/8", "192.168.1.7/32", "2001:db8::/32"])
        let ten = config.allowClients[0]
        #expect(ten.contains([10, 1, 2, 3]))
        #expect(!ten.contains([11, 0, 0, 1]))
        #expect(ten.contains([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 10, 9, 9, 9]))   // IPv4-mapped
        #expect(config.allowClients[2].contains([0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 7, count: 12)))
        #expect(loadError("allow_clients: [10.0.0.0/33]\n")?.key == "allow_clients[1]")
        #expect(loadError("allow_clients: [nonsense]\n")?.key == "allow_clients[1]")
    }

    @Test func inboundCredentialsFromTheEnvironment() throws {
        var environment = credentials
        environment["TOOL_A_TOKEN"] = "a-long-random-tool-token"
        environment["REPORTS_PASSWORD"] = "reports-password-1"
        let yaml = """
            inbound_auth:
              - bearer: "${TOOL_A_TOKEN}"
              - basic: { user: reports, password: "${REPORTS_PASSWORD}" }
            """
        let config = try load(yaml, environment: environment)
        #expect(config.inboundAuth == [.bearer(Secret("a-long-random-tool-token")), .basic(user: "reports", password: Secret("reports-password-1"))])
        let rendered = config.renderedYAML()
        #expect(!rendered.contains("a-long-random-tool-token") && !rendered.contains("reports-password-1"))
        #expect(rendered.contains("user: reports"))
    }

    @Test func inboundCredentialErrorsNameTheKey() {
        #expect(loadError("inbound_auth: [{bearer: short}]\n")?.key == "inbound_auth[1].bearer")
        #expect(loadError("inbound_auth: [{bearer: \"${UNSET_TOKEN}\"}]\n")?.key == "inbound_auth[1]")
        #expect(loadError("inbound_auth: [{basic: {user: a}}]\n")?.key == "inbound_auth[1].basic")
        #expect(loadError("inbound_auth: [{token: abcdefghijklmnopq}]\n")?.key == "inbound_auth[1].token")
        #expect(loadError("inbound_auth: {bearer: abcdefghijklmnopq}\n")?.key == "inbound_auth")
    }

    @Test func rules() throws {
        let config = try load("allow:\n  - {methods: [get, HEAD], path: /suppliers-api-*/trade-items*}\n  - {path: /customers-api-2024v2/identities}\n")
        #expect(config.allow == [AccessRule(methods: ["GET", "HEAD"], path: "/suppliers-api-*/trade-items*"), AccessRule(methods: nil, path: "/customers-api-2024v2/identities")])
        #expect(loadError("allow: [{methods: [GET]}]\n")?.key == "allow[1].path")
        #expect(loadError("allow: [{path: trade-items}]\n")?.key == "allow[1].path")
        #expect(loadError("allow: [{path: /x, verbs: [GET]}]\n")?.key == "allow[1].verbs")
    }
}
