import Foundation
import Testing

@testable import Sandbox

@Suite struct ControlTests {
    let sandbox = makeSandbox()

    func post(_ target: String) -> SandboxResponse {
        sandbox.handle(SandboxRequest(method: "POST", target: target, headers: [], body: []), baseURL: baseURL)
    }

    @Test func statsCountWhatHappened() throws {
        _ = sandbox.get("/oauth2/ausSandbox/.well-known/oauth-authorization-server")
        let token = try accessToken(sandbox.tokenRequest(
            "grant_type=client_credentials&client_id=sandbox-client&client_secret=sandbox-secret"))
        _ = sandbox.tokenRequest("grant_type=client_credentials&client_id=sandbox-client&client_secret=x")
        _ = sandbox.callAPI("/suppliers-api-2026v1/_sandbox/echo/x", token: token)
        _ = sandbox.callAPI("/suppliers-api-2026v1/_sandbox/echo/x", token: nil)

        let stats = try jsonObject(sandbox.get("/_sandbox/stats"))
        #expect(stats["metadataRequests"] as? Int == 1)
        #expect(stats["tokenRequests"] as? Int == 2)
        #expect(stats["tokensIssued"] as? Int == 1)
        #expect(stats["apiRequests"] as? Int == 2)
        #expect(stats["apiUnauthorized"] as? Int == 1)
        #expect(stats["activeTokens"] as? Int == 1)

        sandbox.resetCounters()
        let counters = [sandbox.tokenRequests, sandbox.tokensIssued, sandbox.metadataRequests,
                        sandbox.apiRequests, sandbox.apiUnauthorized]
        #expect(counters == [0, 0, 0, 0, 0])
    }

    @Test func revokeEndpoint() throws {
        let token = sandbox.issueToken(clientID: "sandbox-client", scopes: [])
        let response = post("/_sandbox/revoke")
        #expect(response.status == 200)
        #expect(try jsonObject(response)["revoked"] as? Int == 1)
        #expect(sandbox.callAPI("/suppliers-api-2026v1/_sandbox/echo/x", token: token).status == 401)
    }

    @Test func resetClearsCountersAndFailuresButKeepsTokens() throws {
        let token = sandbox.issueToken(clientID: "sandbox-client", scopes: [])
        sandbox.idmFailure = .status(500)
        sandbox.apiFailure = 503
        sandbox.tokenLifetime = 1
        _ = sandbox.callAPI("/suppliers-api-2026v1/_sandbox/echo/x", token: token)

        let stats = try jsonObject(post("/_sandbox/reset"))
        #expect(stats["apiRequests"] as? Int == 0)
        #expect(sandbox.idmFailure == nil)
        #expect(sandbox.apiFailure == nil)
        #expect(sandbox.tokenLifetime == 3600)
        #expect(sandbox.callAPI("/suppliers-api-2026v1/_sandbox/echo/x", token: token).status == 200)
    }

    @Test func configureEndpoint() throws {
        let stats = try jsonObject(post("/_sandbox/configure?idmFailure=invalid_client&apiFailure=502&tokenLifetime=60"))
        #expect(stats["idmFailure"] as? String == "invalid_client")
        #expect(stats["apiFailure"] as? Int == 502)
        #expect(stats["tokenLifetime"] as? Int == 60)
        #expect(sandbox.idmFailure == .invalidClient)

        _ = post("/_sandbox/configure?idmFailure=429&apiFailure=none")
        #expect(sandbox.idmFailure == .status(429))
        #expect(sandbox.apiFailure == nil)
        _ = post("/_sandbox/configure?idmFailure=none")
        #expect(sandbox.idmFailure == nil)

        // A bad value changes nothing.
        #expect(post("/_sandbox/configure?tokenLifetime=5&idmFailure=sometimes").status == 400)
        #expect(sandbox.tokenLifetime == 60)
        #expect(post("/_sandbox/configure?colour=blue").status == 400)
    }

    @Test func controlMethods() {
        #expect(sandbox.get("/_sandbox/revoke").status == 405)
        #expect(post("/_sandbox/stats").status == 405)
    }

    @Test func concurrentUseIsSafe() async {
        let sandbox = self.sandbox
        await withTaskGroup(of: Void.self) { group in
            for i in 0..<8 {
                group.addTask {
                    for _ in 0..<50 {
                        let token = sandbox.issueToken(clientID: "sandbox-client", scopes: [])
                        _ = sandbox.callAPI("/suppliers-api-2026v1/_sandbox/echo/x", token: token)
                        if i == 0 { sandbox.revokeAllTokens() }
                    }
                }
            }
        }
        #expect(sandbox.apiRequests == 400)
    }
}

@Suite struct FormEncodingTests {
    @Test func decodesPlusAndPercent() {
        #expect(FormEncoding.decodeComponent("a+b%20c%2B%3a") == "a b c+:")
        #expect(FormEncoding.decodeComponent("%C3%AF") == "ï")
        #expect(FormEncoding.decodeComponent("%") == nil)
        #expect(FormEncoding.decodeComponent("%FF") == nil)
        let pairs = FormEncoding.parse(Array("a=1&b=&c&&d=x%3Dy".utf8))
        #expect(pairs?.map(\.name) == ["a", "b", "c", "d"])
        #expect(pairs?.map(\.value) == ["1", "", "", "x=y"])
    }
}
