import Foundation
import Testing

@testable import Sandbox

@Suite struct APITests {
    let sandbox = makeSandbox()

    func token(_ scopes: [String] = SandboxClient.floridayScopes, lifetime: Int? = nil) -> String {
        sandbox.issueToken(clientID: "sandbox-client", scopes: scopes, lifetime: lifetime)
    }

    @Test func missingTokenIs401WithChallenge() throws {
        let response = sandbox.callAPI("/suppliers-api-2026v1/_sandbox/echo/trade-items", token: nil)
        #expect(response.status == 401)
        #expect(response.header("WWW-Authenticate") == "Bearer")
        #expect(response.header("Content-Type") == "application/problem+json; charset=utf-8")
        let problem = try jsonObject(response)
        #expect(problem["status"] as? Int == 401)
        #expect(problem["title"] as? String == "Unauthorized")
        #expect((problem["type"] as? String)?.hasPrefix("https://") == true)
        #expect((problem["traceId"] as? String)?.hasPrefix("00-") == true)
        #expect(sandbox.apiRequests == 1)
        #expect(sandbox.apiUnauthorized == 1)
    }

    @Test func unknownTokenIs401() {
        let response = sandbox.callAPI("/suppliers-api-2026v1/_sandbox/echo/trade-items", token: "eyJ.forged.token")
        #expect(response.status == 401)
        #expect(response.header("WWW-Authenticate") == #"Bearer error="invalid_token""#)
    }

    @Test func revokedTokenIs401() {
        let revoked = token()
        let kept = token()
        sandbox.revoke(token: revoked)
        #expect(sandbox.callAPI("/suppliers-api-2026v1/_sandbox/echo/trade-items", token: revoked).status == 401)
        #expect(sandbox.callAPI("/suppliers-api-2026v1/_sandbox/echo/trade-items", token: kept).status == 200)
    }

    @Test func revokeAllTokensRefusesEarlierTokensOnly() {
        let before = [token(), token()]
        #expect(sandbox.revokeAllTokens() == 2)
        let after = token()
        for t in before {
            let response = sandbox.callAPI("/customers-api-2026v1/_sandbox/echo/trade-items", token: t)
            #expect(response.status == 401)
            #expect(response.header("WWW-Authenticate") == #"Bearer error="invalid_token""#)
        }
        #expect(sandbox.callAPI("/customers-api-2026v1/_sandbox/echo/trade-items", token: after).status == 200)
        #expect(sandbox.apiUnauthorized == 2)
    }

    @Test func expiredTokenIs401() {
        let t = token(lifetime: 60)
        #expect(sandbox.callAPI("/suppliers-api-2026v1/auth/key", token: t).status == 200)
        sandbox.advanceClock(by: 59)
        #expect(sandbox.callAPI("/suppliers-api-2026v1/auth/key", token: t).status == 200)
        sandbox.advanceClock(by: 1)
        let response = sandbox.callAPI("/suppliers-api-2026v1/auth/key", token: t)
        #expect(response.status == 401)
        #expect(response.header("WWW-Authenticate")?.hasPrefix(#"Bearer error="invalid_token", error_description="The token expired at"#) == true)
    }

    @Test func tokenLifetimeAppliesToLaterTokens() throws {
        sandbox.tokenLifetime = 5
        let response = sandbox.tokenRequest(
            "grant_type=client_credentials&client_id=sandbox-client&client_secret=sandbox-secret")
        #expect(try jsonObject(response)["expires_in"] as? Int == 5)
        let t = try accessToken(response)
        sandbox.advanceClock(by: 5)
        #expect(sandbox.callAPI("/suppliers-api-2026v1/_sandbox/echo/x", token: t).status == 401)
    }

    @Test func wrongOrMissingAPIKeyIs403() throws {
        let t = token()
        for key in ["not-the-key", nil] {
            let response = sandbox.callAPI("/suppliers-api-2026v1/_sandbox/echo/trade-items", token: t, key: key)
            #expect(response.status == 403)
            #expect(response.header("Content-Type") == "application/problem+json; charset=utf-8")
            #expect(try jsonObject(response)["status"] as? Int == 403)
        }
        // The token is checked first, as by the real API.
        #expect(sandbox.callAPI("/suppliers-api-2026v1/_sandbox/echo/trade-items", token: "bad", key: "bad").status == 401)
        #expect(sandbox.apiUnauthorized == 1)
    }

    @Test func insufficientScopeIs403() {
        let t = token(["catalog:read"])
        let response = sandbox.callAPI("/customers-api-2026v1/identities", token: t)
        #expect(response.status == 403)
        #expect(response.header("WWW-Authenticate") == #"Bearer error="insufficient_scope", scope="organization:read""#)
    }

    @Test func authKeyAnswersAboutTheKey() throws {
        let response = sandbox.callAPI("/suppliers-api-2026v1/auth/key", token: token([]))
        #expect(response.status == 200)
        #expect(response.header("Content-Type") == "application/json; charset=utf-8")
        let body = try jsonObject(response)
        #expect(Set(body.keys) == ["organizationId", "apiKeyName", "organizationName"])
        #expect(UUID(uuidString: try #require(body["organizationId"] as? String)) != nil)
    }

    @Test func identitiesMatchTheIdentityDefinitions() throws {
        let t = token(["organization:read"])
        let customers = try jsonObject(sandbox.callAPI("/customers-api-2026v1/identities", token: t))
        #expect(customers["clientId"] as? String == "sandbox-client")
        #expect(customers["apiVersion"] as? String == "2026v1")
        let organization = try #require(customers["customerOrganization"] as? [String: Any])
        for field in ["organizationId", "name", "rfhRelationId", "organizationType", "paymentProviders"] {
            #expect(organization[field] != nil, "\(field)")
        }
        #expect(organization["organizationType"] as? String == "CUSTOMER")

        let suppliers = try jsonObject(sandbox.callAPI("/suppliers-api-2025v2/identities", token: t))
        #expect(suppliers["apiVersion"] as? String == "2025v2")
        let supplier = try #require(suppliers["organization"] as? [String: Any])
        for field in ["organizationId", "name", "organizationType", "sequenceNumber", "creationDateTime",
                      "lastModifiedDateTime", "commercialName", "paymentProviders", "mailingAddress",
                      "physicalAddress", "isFsiCompliant"] {
            #expect(supplier[field] != nil, "\(field)")
        }
    }

    @Test func echoReturnsTheRequestAsReceived() throws {
        let target = "/suppliers-api-2026v1/_sandbox/echo/trade-items?x=a%2Fb&y=%20"
        let t = token()
        let response = sandbox.callAPI(target, method: "PUT", token: t, headers: [("Accept", "application/json"), ("X-Multi", "1"), ("x-multi", "2")],
            body: Array(#"{"naïve":true}"#.utf8))
        #expect(response.status == 200)
        let echo = try jsonObject(response)
        #expect(echo["method"] as? String == "PUT")
        #expect(echo["target"] as? String == target)
        let headers = try #require(echo["headers"] as? [String: String])
        #expect(headers["authorization"] == "Bearer " + t)
        #expect(headers["x-api-key"] == apiKey)
        #expect(headers["accept"] == "application/json")
        #expect(headers["x-multi"] == "1, 2")
        #expect(echo["bodyBytes"] as? Int == 15)
        #expect(echo["body"] as? String == #"{"naïve":true}"#)
    }

    @Test func echoOmitsBinaryAndLargeBodies() throws {
        let t = token()
        let binary = try jsonObject(sandbox.callAPI("/customers-api-2026v1/_sandbox/echo/x", method: "POST", token: t, body: [0xff, 0xfe, 0x00]))
        #expect(binary["bodyBytes"] as? Int == 3)
        #expect(binary["body"] is NSNull)

        let large = [UInt8](repeating: UInt8(ascii: "a"), count: 64 * 1024 + 1)
        let echo = try jsonObject(sandbox.callAPI("/customers-api-2026v1/_sandbox/echo/x", method: "POST", token: t, body: large))
        #expect(echo["bodyBytes"] as? Int == large.count)
        #expect(echo["body"] is NSNull)

        let limit = [UInt8](repeating: UInt8(ascii: "a"), count: 64 * 1024)
        let atLimit = try jsonObject(sandbox.callAPI("/customers-api-2026v1/_sandbox/echo/x", method: "POST", token: t, body: limit))
        #expect((atLimit["body"] as? String)?.utf8.count == limit.count)
    }

    @Test func apiFailureAnswersEveryAPICall() throws {
        sandbox.apiFailure = 503
        let response = sandbox.callAPI("/suppliers-api-2026v1/auth/key", token: token())
        #expect(response.status == 503)
        #expect(response.header("Content-Type") == "application/problem+json; charset=utf-8")
        #expect(try jsonObject(response)["status"] as? Int == 503)
        // Even without credentials: the failure comes before the checks.
        #expect(sandbox.callAPI("/suppliers-api-2026v1/_sandbox/echo/x", token: nil).status == 503)
        #expect(sandbox.apiRequests == 2)
        sandbox.apiFailure = nil
        #expect(sandbox.callAPI("/suppliers-api-2026v1/_sandbox/echo/x", token: token()).status == 200)
    }

    @Test func isAuthorizedForStreamingRoutes() {
        let t = token(["supply:read"])
        #expect(sandbox.isAuthorized(bearer: t, apiKey: apiKey, needScope: nil) == nil)
        #expect(sandbox.isAuthorized(bearer: "Bearer " + t, apiKey: apiKey, needScope: "supply:read") == nil)
        #expect(sandbox.isAuthorized(bearer: "bearer " + t, apiKey: apiKey, needScope: "supply:write")?.status == 403)
        #expect(sandbox.isAuthorized(bearer: nil, apiKey: apiKey, needScope: nil)?.status == 401)
        #expect(sandbox.isAuthorized(bearer: "Basic abc", apiKey: apiKey, needScope: nil)?.header("WWW-Authenticate") == "Bearer")
        #expect(sandbox.isAuthorized(bearer: t, apiKey: nil, needScope: nil)?.status == 403)
        #expect(sandbox.apiUnauthorized == 2)
        #expect(sandbox.apiRequests == 0)

        let request = SandboxRequest(
            method: "GET", target: "/suppliers-api-2026v1/_sandbox/echo/big",
            headers: [("authorization", "Bearer " + t), ("x-api-key", apiKey)], body: [])
        #expect(sandbox.checkAPIRequest(request, needScope: nil) == nil)
        #expect(sandbox.apiRequests == 1)
    }

    @Test func unknownPathsAre404ProblemDetails() throws {
        for target in ["/", "/oauth2/other/v1/token", "/suppliers-api", "/_sandbox/nothing"] {
            let response = sandbox.get(target)
            #expect(response.status == 404, "\(target)")
            #expect(response.header("Content-Type") == "application/problem+json; charset=utf-8")
            #expect(try jsonObject(response)["status"] as? Int == 404)
        }
    }
}
