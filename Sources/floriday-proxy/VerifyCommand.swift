import ArgumentParser
import Auth
import Config
import EventLoop
import Foundation
import JSON
import Logging
import Proxy
import Upstream

extension FloridayProxy {
    /// The check Floriday's own guide describes: get a token, then call an identity endpoint
    /// with it and each API key (the top-level one and every organisation's), and say in plain
    /// words what went wrong.
    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check the credentials against Floriday: fetch a token, then call the API with it and every configured API key. Exit 0 only when every key gets a 200.")
        @OptionGroup var options: ConfigOption
        @Option(help: "Which API to call: suppliers (GET /suppliers-api-VERSION/auth/key) or customers (GET /customers-api-VERSION/identities).")
        var api = "suppliers"
        @Option(help: "API version in the path.") var version = "2024v2"

        func run() throws {
            ignoreSIGPIPE()
            guard ["suppliers", "customers"].contains(api) else { fail("verify: --api: expected suppliers or customers, got \(api)") }
            let config = options.load()
            var logger = Logger(label: "verify")
            logger.logLevel = .critical
            print("environment: \(config.environment.rawValue)   api: \(config.apiURL)   issuer: \(config.issuerURL)")
            let tls = OneShot.clientTLS(config)

            // 1. The token.
            let token: AccessToken
            switch OneShot.token(config: config, tls: tls, logger: logger) {
            case .failure(let error):
                print("✘ token: \(error.message)")
                print("  → \(Self.explain(error, config: config))")
                throw ExitCode(1)
            case .success(let value):
                token = value
                let scope = token.scope ?? config.scopes.joined(separator: " ")
                print("✔ token: obtained for client \(config.clientID), valid \(Int(token.lifetime.seconds)) s, scopes: \(scope)")
            }

            // 2. The API with the token and each key: one line per key, named by the
            // organisation Floriday reports for it.
            let path = api == "suppliers" ? "/suppliers-api-\(version)/auth/key" : "/customers-api-\(version)/identities"
            guard let url = AbsoluteURL(config.apiURL.description)?.appendingPath(path) else { fail("config: api_url: not a usable URL") }
            var failures = 0
            for (name, apiKey) in ProxyServer.organizationKeys(config) {
                let label = name == "(default)" ? "api_key" : "organizations.\(name)"
                let result = OneShot.fetch(
                    url: url, method: "GET",
                    headers: [("Accept", "application/json"), ("Authorization", "Bearer \(token.value)"), ("X-Api-Key", apiKey), ("Host", url.authority)],
                    tls: url.isTLS ? tls : nil, timeout: config.timeouts.request)
                switch result {
                case .failure(let error):
                    print("✘ \(label): GET \(path): \(error)")
                    print("  → \(Self.explain(error))")
                    failures += 1
                case .success(let response) where response.head.status == 200:
                    print("✔ \(label): GET \(path): 200 OK, organisation: \(Self.organizationName(response.body) ?? "(not named in the answer)")")
                case .success(let response):
                    print("✘ \(label): GET \(path): HTTP \(response.head.status)")
                    print("  → \(Self.explain(status: response.head.status, response: response, config: config))")
                    failures += 1
                }
            }
            if failures > 0 { throw ExitCode(1) }
        }

        /// The organisation's name in an `/auth/key` answer (`organizationName`) or an
        /// `/identities` one (`organization.name` or `customerOrganization.name`).
        static func organizationName(_ body: [UInt8]) -> String? {
            guard let json = try? JSONParser.parse(body) else { return nil }
            if let name = json["organizationName"]?.stringValue { return name }
            for key in ["organization", "customerOrganization"] {
                if let name = json[key]?["name"]?.stringValue { return name }
            }
            return nil
        }

        static func explain(_ error: TokenError, config: ProxyConfig) -> String {
            switch error.kind {
            case .invalidClient:
                return "The identity server does not accept this client id and secret. Check client_id/client_secret (FLORIDAY_CLIENT_ID/FLORIDAY_CLIENT_SECRET), and that they were issued for the \(config.environment.rawValue) environment: staging and live credentials are separate."
            case .invalidScope:
                return "The client may not ask for some of these scopes: \(config.scopes.joined(separator: " ")). Remove the ones your application was not granted (the `scopes` key)."
            case .unreachable:
                if error.message.contains("TLS") || error.message.contains("certificate") {
                    return "TLS trouble with the identity server: its certificate is not trusted. Behind a TLS-inspecting proxy, put that proxy's CA certificate in ca_file."
                }
                if error.message.contains("resolve") {
                    return "DNS trouble: the identity server's name does not resolve from here. Check issuer_url and the machine's DNS."
                }
                return "The identity server cannot be reached (network, firewall, or issuer_url)."
            case .rejected:
                return "The identity server refused the request. Check issuer_url / token_url and token_auth_method."
            case .malformedResponse:
                return "The identity server's answer was not a token. Is issuer_url really Floriday's authorization server?"
            case .backingOff:
                return "Recent failures; try again shortly."
            }
        }

        static func explain(_ error: UpstreamError) -> String {
            switch error {
            case .tlsFailed(_, let verification):
                return verification
                    ? "The API's certificate is not trusted or does not match its name. Behind a TLS-inspecting proxy, put its CA in ca_file."
                    : "The TLS handshake with the API failed."
            case .connectFailed(let reason):
                return reason.contains("resolve") ? "DNS trouble: api_url's host does not resolve from here." : "The API cannot be reached (network, firewall, or api_url)."
            case .timedOut:
                return "The API did not answer in time."
            default:
                return "The connection to the API broke."
            }
        }

        static func explain(status: Int, response: CollectedResponse, config: ProxyConfig) -> String {
            switch status {
            case 401:
                return "The API refused a fresh token. Usually the token is from the other environment (staging token on the live API or the reverse: check environment, api_url and issuer_url), or this machine's clock is far off (check NTP)."
            case 403:
                let challenge = response.head.headers.firstString("www-authenticate") ?? ""
                if challenge.contains("insufficient_scope") {
                    return "The token lacks the scope this endpoint needs (organization:read for identities). Add it to `scopes` and to your application in Floriday."
                }
                return "Forbidden: this API key is wrong, withdrawn, or belongs to the other environment."
            case 404:
                return "Not found: check the API version (--version) and api_url."
            case 423:
                return "Locked: the organisation or key is locked at Floriday."
            case 429:
                return "Rate limited: wait and retry."
            default:
                return "Unexpected answer: \(String(decoding: response.body.prefix(300), as: UTF8.self))"
            }
        }
    }

    struct TokenCommand: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "token", abstract: "Fetch a token and print its decoded claims (the token itself only with --raw).")
        @OptionGroup var options: ConfigOption
        @Flag(help: "Also print the token itself (it grants full API access: keep it out of logs and tickets).") var raw = false

        func run() throws {
            ignoreSIGPIPE()
            let config = options.load()
            var logger = Logger(label: "token")
            logger.logLevel = .critical
            switch OneShot.token(config: config, tls: OneShot.clientTLS(config), logger: logger) {
            case .failure(let error):
                print("✘ token: \(error.message)")
                print("  → \(Verify.explain(error, config: config))")
                throw ExitCode(1)
            case .success(let token):
                print("lifetime: \(Int(token.lifetime.seconds)) s")
                if let claims = JWTClaims(token: token.value) {
                    for (label, key) in [("issuer", "iss"), ("audience", "aud"), ("client id", "cid"), ("subject", "sub"), ("scopes", "scp")] {
                        if let value = claims.string(key) { print("\(label): \(value)") }
                    }
                    if let issued = claims.date("iat") { print("issued: \(issued)") }
                    if let expires = claims.date("exp") { print("expires: \(expires)") }
                } else {
                    print("(the token is not a JWT; no claims to show)")
                }
                if raw { print(token.value) }
            }
        }
    }
}
