import Foundation
import JSON

/// What the sandbox remembers about a token it issued. The API trusts this record,
/// never the token's own claims, so a token edited by hand or issued by an earlier
/// sandbox run is simply unknown.
struct TokenRecord: Sendable {
    var clientID: String
    var scopes: [String]
    /// Seconds since 1970, as in the `exp` claim.
    var expiresAt: Int
    var revoked = false
}

/// Mints tokens that look like the access tokens of Floriday's Okta authorization server.
enum SandboxToken {
    /// Okta's default custom authorization server audience.
    static let audience = "api://default"

    /// Returns a `header.payload.signature` JWT. The signature is random bytes of an RS256
    /// signature's length: nothing verifies it (see `TokenRecord`), but clients that
    /// size buffers or log tokens see realistic lengths.
    static func mint(issuer: String, clientID: String, scopes: [String], issuedAt: Int, expiresAt: Int) -> String {
        let header: JSONValue = ["kid": "sandbox", "alg": "RS256"]
        let payload: JSONValue = [
            "ver": 1,
            "jti": .string("AT." + FormEncoding.base64URL(RandomBytes.make(24))),
            "iss": .string(issuer),
            "aud": .string(audience),
            "iat": .int(issuedAt),
            "exp": .int(expiresAt),
            "cid": .string(clientID),
            "scp": .array(scopes.map { .string($0) }),
            "sub": .string(clientID),
        ]
        return [header.bytes, payload.bytes, RandomBytes.make(256)]
            .map(FormEncoding.base64URL)
            .joined(separator: ".")
    }
}
