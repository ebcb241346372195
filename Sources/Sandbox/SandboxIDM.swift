import Foundation
import JSON

/// The identity server: an Okta-style authorization server that serves its metadata and the
/// OAuth2 client-credentials grant (RFC 6749 §4.4).
extension SandboxState {
    /// RFC 8414 metadata: what a client-credentials client needs. `response_types_supported` is
    /// required by RFC 8414 and empty because there is no authorization endpoint.
    func metadata(issuer: String) -> SandboxResponse {
        withStore { $0.counters.metadataRequests += 1 }
        var scopes: [String] = []
        for scope in clients.flatMap(\.scopes) where !scopes.contains(scope) { scopes.append(scope) }
        let document: JSONValue = [
            "issuer": .string(issuer),
            "token_endpoint": .string(issuer + "/v1/token"),
            "response_types_supported": [],
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": .array(scopes.map { .string($0) }),
        ]
        return .json(200, document, contentType: Self.oktaContentType)
    }

    /// `POST {issuer}/v1/token`.
    func tokenEndpoint(_ request: SandboxRequest, issuer: String) -> SandboxResponse {
        let failure = withStore { store -> IDMFailure? in
            store.counters.tokenRequests += 1
            return store.idmFailure
        }
        if let failure { return Self.simulated(failure, usedBasic: request.header("Authorization") != nil) }

        let contentType = request.header("Content-Type")?.lowercased() ?? ""
        guard contentType.hasPrefix("application/x-www-form-urlencoded") else {
            return Self.oauthError(
                400, "invalid_request", "The request must be sent as application/x-www-form-urlencoded.")
        }
        guard let pairs = FormEncoding.parse(request.body) else {
            return Self.oauthError(400, "invalid_request", "The request body is not valid form data.")
        }
        // RFC 6749 §3.2: parameters must not be repeated.
        var form: [String: String] = [:]
        for (name, value) in pairs {
            if form[name] != nil {
                return Self.oauthError(400, "invalid_request", "The '\(name)' parameter is repeated.")
            }
            form[name] = value
        }

        let client: SandboxClient
        switch authenticateClient(authorization: request.header("Authorization"), form: form) {
        case .success(let found): client = found
        case .failure(let refusal): return refusal.response
        }

        guard let grantType = form["grant_type"], !grantType.isEmpty else {
            return Self.oauthError(400, "invalid_request", "The 'grant_type' parameter is missing.")
        }
        guard grantType == "client_credentials" else {
            return Self.oauthError(
                400, "unsupported_grant_type",
                "The authorization grant type is not supported by the authorization server.")
        }

        // RFC 6749 §3.3: space-delimited; no scope means every scope the client may have.
        var scopes: [String] = []
        for scope in (form["scope"] ?? "").split(separator: " ").map(String.init) where !scopes.contains(scope) {
            scopes.append(scope)
        }
        if scopes.isEmpty { scopes = client.scopes }
        let refused = scopes.filter { !client.scopes.contains($0) }
        guard refused.isEmpty else {
            return Self.oauthError(
                400, "invalid_scope",
                "One or more scopes are not configured for the client: \(refused.joined(separator: " ")).")
        }

        let lifetime = tokenLifetime
        let token = mintToken(issuer: issuer, clientID: client.clientID, scopes: scopes, lifetime: lifetime)
        withStore { $0.counters.tokensIssued += 1 }
        let body: JSONValue = [
            "token_type": "Bearer",
            "expires_in": .int(lifetime),
            "access_token": .string(token),
            "scope": .string(scopes.joined(separator: " ")),
        ]
        return .json(200, body, contentType: Self.oktaContentType, headers: Self.noStore)
    }

    /// RFC 6749 §2.3: exactly one of client_secret_basic and client_secret_post.
    private func authenticateClient(authorization: String?, form: [String: String]) -> Result<SandboxClient, Refusal> {
        let usedBasic = authorization != nil
        func invalidClient(_ description: String) -> Result<SandboxClient, Refusal> {
            .failure(Refusal(response: Self.oauthError(401, "invalid_client", description, basicChallenge: usedBasic)))
        }

        let id: String
        let secret: String
        if let authorization {
            if form["client_secret"] != nil {
                return .failure(Refusal(response: Self.oauthError(
                    400, "invalid_request",
                    "Cannot supply multiple client credentials: use the Authorization header or the body.")))
            }
            guard let credentials = Self.basicCredentials(authorization) else {
                return invalidClient("The Authorization header is not valid Basic client authentication.")
            }
            if let formID = form["client_id"], formID != credentials.id {
                return .failure(Refusal(response: Self.oauthError(
                    400, "invalid_request", "The client_id in the body does not match the Authorization header.")))
            }
            (id, secret) = credentials
        } else if let formID = form["client_id"], let formSecret = form["client_secret"] {
            (id, secret) = (formID, formSecret)
        } else if form["client_id"] != nil {
            return invalidClient("The client_secret is missing; this client must authenticate.")
        } else {
            return invalidClient("No client credentials found.")
        }

        guard let client = clients.first(where: { $0.clientID == id }) else {
            return invalidClient(
                "Client authentication failed. Either the client or the client credentials are invalid.")
        }
        guard client.clientSecret == secret else {
            return invalidClient("The client secret supplied for a confidential client is invalid.")
        }
        return .success(client)
    }

    /// `Basic base64(urlencoded id ":" urlencoded secret)` per RFC 6749 §2.3.1.
    static func basicCredentials(_ header: String) -> (id: String, secret: String)? {
        let parts = header.trimmingCharacters(in: .whitespaces).split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "basic",
            let data = Data(base64Encoded: parts[1].trimmingCharacters(in: .whitespaces)),
            let text = String(data: data, encoding: .utf8),
            let colon = text.firstIndex(of: ":"),
            let id = FormEncoding.decodeComponent(text[..<colon]),
            let secret = FormEncoding.decodeComponent(text[text.index(after: colon)...])
        else { return nil }
        return (id, secret)
    }

    /// Okta answers `application/json` without a charset, unlike the API.
    static let oktaContentType = "application/json"

    static let noStore: [(name: String, value: String)] = [("Cache-Control", "no-store"), ("Pragma", "no-cache")]

    /// An RFC 6749 §5.2 error. With `basicChallenge`, a 401 carries the `WWW-Authenticate`
    /// the RFC requires when the client tried the Authorization header.
    static func oauthError(
        _ status: Int, _ error: String, _ description: String, basicChallenge: Bool = false
    ) -> SandboxResponse {
        var headers = noStore
        if status == 401 && basicChallenge {
            headers.append(("WWW-Authenticate", #"Basic realm="sandbox""#))
        }
        let body: JSONValue = ["error": .string(error), "error_description": .string(description)]
        return SandboxResponse.json(status, body, contentType: oktaContentType, headers: headers)
    }

    /// The token endpoint's answer under a simulated failure.
    static func simulated(_ failure: IDMFailure, usedBasic: Bool) -> SandboxResponse {
        switch failure {
        case .status(let status):
            // Okta's own error shape, which is not RFC 6749's.
            let code = status == 429 ? "E0000047" : "E0000009"
            let summary = status == 429
                ? "API call exceeded rate limit due to too many requests."
                : "Internal Server Error"
            let body: JSONValue = [
                "errorCode": .string(code),
                "errorSummary": .string(summary),
                "errorLink": .string(code),
                "errorId": .string("sandbox" + RandomBytes.hex(8)),
                "errorCauses": [],
            ]
            return SandboxResponse.json(status, body, contentType: oktaContentType, headers: noStore)
        case .invalidClient:
            return oauthError(
                401, "invalid_client", "The client secret supplied for a confidential client is invalid.",
                basicChallenge: usedBasic)
        case .malformedJSON:
            return SandboxResponse(
                status: 200, headers: [("Content-Type", oktaContentType)] + noStore,
                body: Array(#"{"token_type":"Bearer","expires_in":3600,"access_token":"eyJ"#.utf8))
        case .missingAccessToken:
            let body: JSONValue = ["token_type": "Bearer", "expires_in": 3600, "scope": "role:app"]
            return SandboxResponse.json(200, body, contentType: oktaContentType, headers: noStore)
        }
    }
}
