import Testing
import Config

struct RenderingTests {
    @Test func rendersTheDefaults() throws {
        let rendered = try load(nil).renderedYAML()
        #expect(rendered == """
            # effective configuration; secrets are shown as ***
            listen: "127.0.0.1:8080"
            admin_listen: "127.0.0.1:9901"
            environment: staging
            api_url: https://api.staging.floriday.io
            issuer_url: https://idm.staging.floriday.io/oauth2/ausmw6b47z1BnlHkw0h7
            token_url: null
            client_id: client-1234
            client_secret: "***"
            api_key: "***"
            organizations: {}
            scopes:
              - role:app
              - catalog:read
              - sales-order:write
              - organization:read
              - supply:read
              - supply:write
              - sales-order:read
              - delivery-conditions:read
              - fulfillment:write
              - fulfillment:read
            token_auth_method: client_secret_post
            token_refresh_margin: 1m
            retry_body_limit: 1MiB
            upstream_http2: auto
            ca_file: null
            allow_mixed_environments: false
            timeouts:
              connect: 5s
              request: 1m
              idle: 75s
              request_head: 10s
              body_stall: 30s
            limits:
              max_target_bytes: 8KiB
              max_header_bytes: 64KiB
              max_headers: 100
              max_body_bytes: 32MiB
              max_connections: 4096
              max_upstream_connections: 64
            shutdown_grace: 20s
            allow_clients: []
            inbound_auth: []
            allow: []
            rate_limit:
              enabled: true
              scope: endpoint
              rate: 3.4
              burst: 1000
              max_wait: 30s
              max_waiting: 1000
              endpoints: []
              store: memory
              replicas: 1
            log:
              level: info
              format: text
              query: false

            """)
    }

    @Test func renderedYAMLLoadsBackToTheSameConfig() throws {
        let yaml = """
            listen: "[::1]:9000"
            environment: live
            api_url: http://localhost:8081
            issuer_url: "http://[::1]:8082/oauth2/x"
            token_url: http://localhost:8082/token
            client_id: 'odd: "id" $x #1'
            client_secret: secret
            api_key: key
            scopes: [role:app, "true", "123"]
            token_auth_method: client_secret_basic
            token_refresh_margin: 1m30s
            retry_body_limit: 1000
            ca_file: "/etc/ssl/my certs/ca.pem"
            allow_mixed_environments: true
            timeouts: { connect: 1500ms, request: 2h, idle: 1s, request_head: 250ms, body_stall: 45s }
            limits: { max_target_bytes: 1KB, max_header_bytes: 3MiB, max_headers: 7, max_body_bytes: 5GiB, max_connections: 1, max_upstream_connections: 3 }
            shutdown_grace: 0s
            log: { level: trace, format: json, query: true }
            """
        let config = try load(yaml)
        let rendered = config.renderedYAML()
        var reloaded = try load(rendered, environment: [:])
        #expect(reloaded.clientSecret.value == "***" && reloaded.apiKey.value == "***")
        reloaded.clientSecret = config.clientSecret
        reloaded.apiKey = config.apiKey
        #expect(reloaded == config)
        #expect(config.clientID == #"odd: "id" $x #1"#)
    }
}
