import Testing
import Config

/// The documented example at the root of the repository loads, and gives the defaults.
struct ExampleFileTests {
    let path: String = {
        // Tests/ConfigTests/ExampleFileTests.swift → the package root.
        var components = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        components.removeLast(3)
        return components.joined(separator: "/") + "/proxy.yaml"
    }()

    @Test func loadsWithTheDocumentedDefaults() throws {
        let config = try ConfigLoader.load(path: path, environment: credentials)
        #expect(config == ProxyConfig(clientID: "client-1234", clientSecret: "s3cr3t-client-value", apiKey: "k3y-api-value"))
    }

    @Test func environmentVariablesStillApply() throws {
        var environment = credentials
        environment["PROXY_LISTEN"] = "0.0.0.0:8080"
        environment["FLORIDAY_ENVIRONMENT"] = "live"
        let config = try ConfigLoader.load(path: path, environment: environment)
        #expect(config.listen == HostPort(host: "0.0.0.0", port: 8080))
        #expect(config.environment == .live)
        #expect(config.apiURL.description == "https://api.floriday.io")
        #expect(config.issuerURL.description == "https://idm.floriday.io/oauth2/aus3testdcf2vyfs70i7")
    }

    @Test func needsTheCredentials() {
        do {
            _ = try ConfigLoader.load(path: path, environment: [:])
            Issue.record("loaded without credentials")
        } catch {
            #expect(error.key == "client_id")
        }
    }

    @Test func documentsEveryKey() throws {
        let text = try ConfigLoader.readTextFile(path)
        let keys = ConfigLoader.topLevelKeys + ConfigLoader.timeoutKeys + ConfigLoader.limitKeys + ConfigLoader.logKeys
            + RateLimitSettings.keys
        for key in keys {
            #expect(text.contains("\(key):"), "\(key) is not in proxy.yaml")
        }
    }
}
