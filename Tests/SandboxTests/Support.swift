import Foundation
import Testing

@testable import Sandbox

let baseURL = "https://127.0.0.1:8443"
let issuer = baseURL + "/oauth2/ausSandbox"
let tokenPath = "/oauth2/ausSandbox/v1/token"
let apiKey = "sandbox-api-key"

/// A sandbox on a fixed clock, so expiry is tested by advancing it instead of sleeping.
func makeSandbox(tokenLifetime: Int = 3600) -> SandboxState {
    let state = SandboxState(tokenLifetime: tokenLifetime)
    state.now = { Date(timeIntervalSince1970: 1_800_000_000) }
    return state
}

extension SandboxState {
    func get(_ target: String, headers: [(name: String, value: String)] = []) -> SandboxResponse {
        handle(SandboxRequest(method: "GET", target: target, headers: headers, body: []), baseURL: baseURL)
    }

    /// POSTs a form to the token endpoint.
    func tokenRequest(_ form: String, headers: [(name: String, value: String)] = []) -> SandboxResponse {
        let request = SandboxRequest(
            method: "POST", target: tokenPath,
            headers: [("Content-Type", "application/x-www-form-urlencoded")] + headers,
            body: Array(form.utf8))
        return handle(request, baseURL: baseURL)
    }

    /// An API call with a token and the API key unless told otherwise.
    func callAPI(
        _ target: String, method: String = "GET", token: String?, key: String? = apiKey,
        headers: [(name: String, value: String)] = [], body: [UInt8] = []
    ) -> SandboxResponse {
        var all = headers
        if let token { all.append(("Authorization", "Bearer " + token)) }
        if let key { all.append(("X-Api-Key", key)) }
        return handle(SandboxRequest(method: method, target: target, headers: all, body: body), baseURL: baseURL)
    }
}

func basic(_ id: String, _ secret: String) -> (name: String, value: String) {
    ("Authorization", "Basic " + Data("\(id):\(secret)".utf8).base64EncodedString())
}

func jsonObject(_ response: SandboxResponse) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
}

/// Decodes one base64url JWT segment as a JSON object.
func jwtSegment(_ segment: Substring) throws -> [String: Any] {
    var text = segment.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    text += String(repeating: "=", count: (4 - text.count % 4) % 4)
    let data = try #require(Data(base64Encoded: text))
    return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
}

func accessToken(_ response: SandboxResponse) throws -> String {
    try #require(try jsonObject(response)["access_token"] as? String)
}
