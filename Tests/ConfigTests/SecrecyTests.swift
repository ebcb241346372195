import Testing
import Config

/// Secrets never show up in errors, descriptions or the rendered configuration.
struct SecrecyTests {
    let secret = "s3cr3t-client-value"
    let apiKey = "k3y-api-value"

    func assertHidden(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(!text.contains(secret), "secret in: \(text)", sourceLocation: sourceLocation)
        #expect(!text.contains(apiKey), "API key in: \(text)", sourceLocation: sourceLocation)
        #expect(!text.contains("s3cr3t"), sourceLocation: sourceLocation)
    }

    @Test func notInErrors() {
        let inline = "client_secret: \(secret)\napi_key: \(apiKey)\n"
        let broken = [
            inline + "bogus: 1",
            inline + "client_secret: again",
            "client_secret: \(secret): oops\n",
            "client_secret: [\(secret)]\n",
            "client_secret: {\(secret): 1}\n",
            "api_key: \"\(apiKey)\n",
            "client_secret: \(secret)${\n",
            "client_secret: ${\(secret)}\n",
            "client_secret: ${A:-\(secret)\n",
            inline + "timeouts: \(secret)\n",
            inline + "scopes: \(secret)\n",
            inline + "environment: live\napi_url: https://api.staging.floriday.io",
            inline + "api_url: https://\(secret)@api.floriday.io",
            "\(secret)\n",
            "- \(secret)\n",
        ]
        for yaml in broken {
            let error = loadError(yaml)
            #expect(error != nil, "no error for \(yaml)")
            if let error {
                assertHidden(error.description)
                assertHidden(error.problem)
            }
        }
    }

    @Test func notInDescriptions() throws {
        let config = try load(nil)
        #expect(config.clientSecret.value == secret)
        assertHidden("\(config.clientSecret) \(config.apiKey)")
        assertHidden(String(describing: config.clientSecret))
        assertHidden(String(reflecting: config.apiKey))
    }

    @Test func notInTheRenderedYAML() throws {
        let rendered = try load(nil).renderedYAML()
        assertHidden(rendered)
        #expect(rendered.contains("client_secret: \"***\""))
        #expect(rendered.contains("api_key: \"***\""))
        #expect(rendered.contains("client_id: client-1234"))
    }
}
