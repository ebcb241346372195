import Foundation
import Testing

@testable import Sandbox

@Suite struct IdentityServerTests {
    @Test func metadataDocument() throws {
        let sandbox = makeSandbox()
        let response = sandbox.get("/oauth2/ausSandbox/.well-known/oauth-authorization-server")
        #expect(response.status == 200)
        #expect(response.header("content-type") == "application/json")
        let doc = try jsonObject(response)
        #expect(doc["issuer"] as? String == issuer)
        #expect(doc["token_endpoint"] as? String == issuer + "/v1/token")
        #expect(doc["grant_types_supported"] as? [String] == ["client_credentials"])
        #expect(doc["token_endpoint_auth_methods_supported"] as? [String] == ["client_secret_basic", "client_secret_post"])
        #expect(doc["scopes_supported"] as? [String] == SandboxClient.floridayScopes)
        #expect(SandboxClient.floridayScopes.count == 23)

        // The OpenID name and the RFC 8414 §3.1 location serve the same document.
        #expect(sandbox.get("/oauth2/ausSandbox/.well-known/openid-configuration").status == 200)
        #expect(sandbox.get("/.well-known/oauth-authorization-server/oauth2/ausSandbox").status == 200)
        #expect(sandbox.metadataRequests == 3)
    }

    @Test func metadataFollowsIssuerPathAndBaseURL() throws {
        let sandbox = SandboxState(issuerPath: "oauth2/ausmw6b47z1BnlHkw0h7/")
        #expect(sandbox.issuerPath == "/oauth2/ausmw6b47z1BnlHkw0h7")
        let response = sandbox.handle(
            SandboxRequest(method: "GET", target: "/oauth2/ausmw6b47z1BnlHkw0h7/.well-known/oauth-authorization-server", headers: [], body: []),
            baseURL: "http://sandbox:8080/")
        let doc = try jsonObject(response)
        #expect(doc["issuer"] as? String == "http://sandbox:8080/oauth2/ausmw6b47z1BnlHkw0h7")
        #expect(doc["token_endpoint"] as? String == "http://sandbox:8080/oauth2/ausmw6b47z1BnlHkw0h7/v1/token")
    }

    @Test func tokenWithClientSecretPost() throws {
        let sandbox = makeSandbox()
        let response = sandbox.tokenRequest(
            "grant_type=client_credentials&scope=role%3Aapp+catalog:read&client_id=sandbox-client&client_secret=sandbox-secret")
        #expect(response.status == 200)
        #expect(response.header("Cache-Control") == "no-store")
        let body = try jsonObject(response)
        #expect(body["token_type"] as? String == "Bearer")
        #expect(body["expires_in"] as? Int == 3600)
        #expect(body["scope"] as? String == "role:app catalog:read")
        #expect((body["access_token"] as? String)?.isEmpty == false)
        #expect(sandbox.tokenRequests == 1)
        #expect(sandbox.tokensIssued == 1)
    }

    @Test func tokenWithClientSecretBasic() throws {
        // RFC 6749 §2.3.1: id and secret are form-encoded before base64.
        let client = SandboxClient(clientID: "my client", clientSecret: "s3cr:t+/", scopes: ["supply:read"])
        let sandbox = SandboxState(clients: [client])
        let ok = sandbox.tokenRequest("grant_type=client_credentials", headers: [basic("my+client", "s3cr%3At%2B%2F")])
        #expect(ok.status == 200)
        #expect(try jsonObject(ok)["scope"] as? String == "supply:read")

        let wrong = sandbox.tokenRequest("grant_type=client_credentials", headers: [basic("my+client", "nope")])
        #expect(wrong.status == 401)
        #expect(wrong.header("WWW-Authenticate")?.hasPrefix("Basic") == true)
        #expect(try jsonObject(wrong)["error"] as? String == "invalid_client")
    }

    @Test func tokenIsAnOktaShapedJWT() throws {
        let sandbox = makeSandbox(tokenLifetime: 600)
        let token = try accessToken(sandbox.tokenRequest(
            "grant_type=client_credentials&scope=organization:read&client_id=sandbox-client&client_secret=sandbox-secret"))
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        #expect(parts.count == 3)
        let base64URL = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        #expect(parts.allSatisfy { !$0.isEmpty && $0.unicodeScalars.allSatisfy(base64URL.contains) })

        #expect(try jwtSegment(parts[0])["alg"] as? String == "RS256")
        let claims = try jwtSegment(parts[1])
        #expect(claims["ver"] as? Int == 1)
        #expect((claims["jti"] as? String)?.hasPrefix("AT.") == true)
        #expect(claims["iss"] as? String == issuer)
        #expect(claims["aud"] as? String == "api://default")
        #expect(claims["iat"] as? Int == 1_800_000_000)
        #expect(claims["exp"] as? Int == 1_800_000_600)
        #expect(claims["cid"] as? String == "sandbox-client")
        #expect(claims["sub"] as? String == "sandbox-client")
        #expect(claims["scp"] as? [String] == ["organization:read"])

        let other = try accessToken(sandbox.tokenRequest(
            "grant_type=client_credentials&scope=organization:read&client_id=sandbox-client&client_secret=sandbox-secret"))
        #expect(other != token)
        let otherJTI = try jwtSegment(other.split(separator: ".")[1])["jti"] as? String
        #expect(otherJTI != claims["jti"] as? String)
    }

    @Test func noScopeGrantsAllAllowedScopes() throws {
        let sandbox = makeSandbox()
        let body = try jsonObject(sandbox.tokenRequest(
            "grant_type=client_credentials&client_id=sandbox-client&client_secret=sandbox-secret"))
        #expect(body["scope"] as? String == SandboxClient.floridayScopes.joined(separator: " "))
    }

    @Test func invalidClient() throws {
        let sandbox = makeSandbox()
        for form in [
            "grant_type=client_credentials&client_id=sandbox-client&client_secret=wrong",
            "grant_type=client_credentials&client_id=stranger&client_secret=sandbox-secret",
            "grant_type=client_credentials&client_id=sandbox-client",
            "grant_type=client_credentials",
        ] {
            let response = sandbox.tokenRequest(form)
            #expect(response.status == 401, "\(form)")
            #expect(try jsonObject(response)["error"] as? String == "invalid_client")
            #expect(response.header("WWW-Authenticate") == nil)
        }
        #expect(sandbox.tokenRequests == 4)
        #expect(sandbox.tokensIssued == 0)
    }

    @Test func bothClientAuthMethodsIsInvalidRequest() throws {
        let response = makeSandbox().tokenRequest(
            "grant_type=client_credentials&client_id=sandbox-client&client_secret=sandbox-secret",
            headers: [basic("sandbox-client", "sandbox-secret")])
        #expect(response.status == 400)
        #expect(try jsonObject(response)["error"] as? String == "invalid_request")
    }

    @Test func invalidScope() throws {
        let response = makeSandbox().tokenRequest(
            "grant_type=client_credentials&scope=role:app%20admin:write&client_id=sandbox-client&client_secret=sandbox-secret")
        #expect(response.status == 400)
        let body = try jsonObject(response)
        #expect(body["error"] as? String == "invalid_scope")
        #expect((body["error_description"] as? String)?.contains("admin:write") == true)
    }

    @Test func unsupportedGrantType() throws {
        let response = makeSandbox().tokenRequest(
            "grant_type=password&client_id=sandbox-client&client_secret=sandbox-secret")
        #expect(response.status == 400)
        #expect(try jsonObject(response)["error"] as? String == "unsupported_grant_type")
    }

    @Test func malformedTokenRequests() throws {
        let sandbox = makeSandbox()
        let credentials = "client_id=sandbox-client&client_secret=sandbox-secret"
        for form in [credentials, "grant_type=client_credentials&grant_type=client_credentials&" + credentials,
                     "grant_type=client_credentials&scope=%zz&" + credentials] {
            let response = sandbox.tokenRequest(form)
            #expect(response.status == 400, "\(form)")
            #expect(try jsonObject(response)["error"] as? String == "invalid_request")
        }
        let json = sandbox.handle(
            SandboxRequest(method: "POST", target: tokenPath, headers: [("Content-Type", "application/json")],
                           body: Array("{}".utf8)), baseURL: baseURL)
        #expect(json.status == 400)
        #expect(sandbox.get(tokenPath).status == 405)
    }

    @Test func idmFailures() throws {
        let sandbox = makeSandbox()
        let form = "grant_type=client_credentials&client_id=sandbox-client&client_secret=sandbox-secret"

        sandbox.idmFailure = .status(503)
        let unavailable = sandbox.tokenRequest(form)
        #expect(unavailable.status == 503)
        #expect(try jsonObject(unavailable)["errorCode"] != nil)

        sandbox.idmFailure = .invalidClient
        let refused = sandbox.tokenRequest(form)
        #expect(refused.status == 401)
        #expect(try jsonObject(refused)["error"] as? String == "invalid_client")

        sandbox.idmFailure = .malformedJSON
        let malformed = sandbox.tokenRequest(form)
        #expect(malformed.status == 200)
        #expect((try? JSONSerialization.jsonObject(with: Data(malformed.body))) == nil)

        sandbox.idmFailure = .missingAccessToken
        let missing = sandbox.tokenRequest(form)
        #expect(missing.status == 200)
        #expect(try jsonObject(missing)["access_token"] == nil)

        #expect(sandbox.tokenRequests == 4)
        #expect(sandbox.tokensIssued == 0)
        sandbox.idmFailure = nil
        #expect(sandbox.tokenRequest(form).status == 200)
        #expect(sandbox.tokensIssued == 1)
    }
}
