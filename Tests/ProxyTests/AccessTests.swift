import Config
import Foundation
import HTTP1
@testable import Proxy
import Testing

/// Gateway mode: who may use the proxy, and for what.
@Suite struct AccessTests {
    @Test func clientNetworksAreEnforced() throws {
        let denied = try Harness { $0.allowClients = [try! ClientNetwork("10.0.0.0/8", key: "t"), try! ClientNetwork("::1", key: "t")] }
        let response = try denied.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/x")
        #expect(response.status == 403)
        #expect(response.json["type"] as? String == "urn:floriday-proxy:problem:access-denied")
        #expect(denied.state.apiRequests == 0)
        let allowed = try Harness { $0.allowClients = [try! ClientNetwork("127.0.0.0/8", key: "t")] }
        #expect(try allowed.client().request("GET", "/suppliers-api-2026v1/_sandbox/echo/x").status == 200)
    }

    @Test func inboundCredentialsAreRequiredAndNeverForwarded() throws {
        let h = try Harness {
            $0.inboundAuth = [.bearer(Secret("tool-a-token-0123456789")), .basic(user: "reports", password: Secret("reports-password-1"))]
        }
        let client = try h.client()
        let missing = try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x")
        #expect(missing.status == 401)
        #expect(missing.header("www-authenticate")?.contains("Bearer realm=\"floriday-proxy\"") == true)
        #expect(missing.header("www-authenticate")?.contains("Basic realm=\"floriday-proxy\"") == true)
        #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x", headers: [("Authorization", "Bearer tool-a-token-012345678")]).status == 401)
        #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x", headers: [("Authorization", "Bearer tool-a-token-01234567890")]).status == 401)
        let bearer = try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x", headers: [("Authorization", "bearer tool-a-token-0123456789")])
        #expect(bearer.status == 200)
        let forwarded = bearer.json["headers"] as? [String: String]
        #expect(forwarded?["authorization"]?.hasPrefix("Bearer ey") == true)   // ours, not the tool's
        #expect(!(bearer.bodyString.contains("tool-a-token")))
        let basic = "Basic " + Data("reports:reports-password-1".utf8).base64EncodedString()
        #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x", headers: [("Authorization", basic)]).status == 200)
        let wrongBasic = "Basic " + Data("reports:nope".utf8).base64EncodedString()
        #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x", headers: [("Authorization", wrongBasic)]).status == 401)
        #expect(h.state.apiRequests == 2)
        #expect(!h.logs.text.contains("tool-a-token") && !h.logs.text.contains("reports-password-1"))
    }

    @Test func allowRulesGiveLeastPrivilege() throws {
        let h = try Harness {
            $0.allow = [AccessRule(methods: ["GET", "HEAD"], path: "/suppliers-api-*/trade-items*"), AccessRule(methods: nil, path: "/customers-api-2026v1/identities")]
        }
        let client = try h.client()
        #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/trade-items?x=1").status == 200)
        #expect(try client.request("GET", "/suppliers-api-2024v2/_sandbox/echo/trade-items/abc").status == 200)
        #expect(try client.request("GET", "/customers-api-2026v1/identities").status == 200)
        for (method, target) in [
            ("POST", "/suppliers-api-2026v1/_sandbox/echo/trade-items"),
            ("GET", "/suppliers-api-2026v1/_sandbox/echo/sales-orders"),
            ("GET", "/suppliers-api-2026v1/_sandbox/echo/trade-items/../sales-orders"),
            ("GET", "/suppliers-api-2026v1/_sandbox/echo/trade-items/%2e%2e/sales-orders"),
            ("GET", "/suppliers-api-2026v1/_sandbox/echo/trade-items%2f..%2fsales-orders"),
            ("GET", "/customers-api-2026v1/identitiesX"),
        ] {
            let response = try client.request(method, target, body: method == "POST" ? [] : nil)
            #expect(response.status == 403, "\(method) \(target)")
        }
        #expect(h.state.apiRequests == 3)
    }

    @Test func globsAndPrefixes() {
        func match(_ pattern: String, _ path: String) -> Bool { AccessPolicy.matches(Array(pattern.utf8), Array(path.utf8)) }
        #expect(match("/a/b", "/a/b/c"))
        #expect(!match("/a/b", "/a/c"))
        #expect(!match("/a/b", "/a/bc"))
        #expect(match("/a/", "/a/bc"))
        #expect(match("/suppliers-api-*/trade-items*", "/suppliers-api-2024v2/_sandbox/echo/trade-items"))
        #expect(match("/suppliers-api-*/trade-items*", "/suppliers-api-2024v2/_sandbox/echo/trade-items/1/x"))
        #expect(!match("/suppliers-api-*/trade-items", "/suppliers-api-2024v2/_sandbox/echo/trade-items/1"))
        #expect(match("/*/x/*/y", "/a/x/b/c/y"))
        #expect(!match("/*/x/*/y", "/a/x/b/c/z"))
        #expect(match("*", "/anything"))
    }

    @Test func constantTimeComparison() {
        #expect(AccessPolicy.constantTimeEqual(Array("abc".utf8), Array("abc".utf8)))
        #expect(!AccessPolicy.constantTimeEqual(Array("abc".utf8), Array("abd".utf8)))
        #expect(!AccessPolicy.constantTimeEqual(Array("abc".utf8), Array("abcd".utf8)))
        #expect(!AccessPolicy.constantTimeEqual([], Array("a".utf8)))
    }
}
