/// An OAuth2 client the sandbox's identity server knows.
public struct SandboxClient: Sendable, Equatable {
    public var clientID: String
    public var clientSecret: String
    /// The scopes this client may ask for; a token request without `scope` gets all of them.
    public var scopes: [String]

    public init(clientID: String, clientSecret: String, scopes: [String]) {
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.scopes = scopes
    }
}

extension SandboxClient {
    /// The scopes a Floriday client-credentials application can be granted: `role:app` and
    /// every scope an operation of the 2026v1 descriptions names.
    public static let floridayScopes = [
        "role:app", "catalog:read", "sales-order:write", "organization:read", "supply:read",
        "supply:write", "sales-order:read", "delivery-conditions:read", "fulfillment:write",
        "fulfillment:read", "catalog:write", "contract:read", "contract:write", "network:read",
        "network:write", "supply-request:write", "clock-supply:read", "clock-supply:write",
        "sticker:read", "sticker:write", "purchase-order:read", "purchase-order:write", "webhooks:write",
    ]

    public static let `default` = SandboxClient(
        clientID: "sandbox-client", clientSecret: "sandbox-secret", scopes: floridayScopes)
}

/// Ways the token endpoint can be told to misbehave, so clients' error paths can be tested.
public enum IDMFailure: Sendable, Equatable {
    /// Answer every token request with this status (e.g. 500, 503) and an Okta-style error body.
    case status(Int)
    /// Refuse every client with 401 `invalid_client`, as after a secret rotation.
    case invalidClient
    /// Answer 200 with a body that is not valid JSON.
    case malformedJSON
    /// Answer 200 with valid JSON that lacks `access_token`.
    case missingAccessToken
}
