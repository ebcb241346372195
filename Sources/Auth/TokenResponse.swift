import EventLoop
import JSON
import Upstream

/// Turns the token endpoint's answer into a token or an error (RFC 6749 §5.1 and §5.2).
enum TokenResponseParser {
    /// The longest lifetime believed: a larger `expires_in` (a typo, or "never") counts as this
    /// much, which keeps every instant in range; a token that dies earlier is refused with a
    /// 401 by the API and fetched again.
    static let maximumLifetimeSeconds: Double = 365 * 24 * 3600

    /// `requested`: when the token request was sent, in nanoseconds of `clock`.
    static func parse(_ response: CollectedResponse, margin: Duration, requested: UInt64, clock: any MonotonicClock) -> Result<AccessToken, TokenError> {
        let status = response.head.status
        let json = try? JSONParser.parse(response.body)
        guard status == 200 else {
            // §5.2: {"error": "...", "error_description": "..."}; the description comes from the
            // IDM and never contains our secret, but keep it short for logs.
            let code = json?["error"]?.stringValue
            let description = json?["error_description"]?.stringValue.map { String($0.prefix(200)) }
            let kind: TokenError.Kind
            switch code {
            case "invalid_client": kind = .invalidClient
            case "invalid_scope": kind = .invalidScope
            default: kind = .rejected
            }
            var message = "IDM refused the token request: HTTP \(status)"
            if let code { message += " \(code)" }
            if let description { message += " (\(description))" }
            return .failure(TokenError(kind: kind, message: message, status: status))
        }
        guard let json,
              let value = json["access_token"]?.stringValue, !value.isEmpty,
              let expiresIn = json["expires_in"]?.doubleValue, expiresIn > 0, !expiresIn.isNaN else {
            return .failure(TokenError(kind: .malformedResponse, message: "IDM token response lacks access_token or expires_in", status: status))
        }
        if let type = json["token_type"]?.stringValue, type.lowercased() != "bearer" {
            return .failure(TokenError(kind: .malformedResponse, message: "IDM issued a \(type) token, not a Bearer token", status: status))
        }
        // Lifetimes count from when we asked: the token cannot have been issued earlier.
        let lifetime = Duration.milliseconds(Int64((min(expiresIn, maximumLifetimeSeconds) * 1000).rounded(.down)))
        let expires = requested + lifetime.clampedNanoseconds
        let effectiveMargin = min(margin, lifetime / 2).clampedNanoseconds
        return .success(AccessToken(
            value: value, obtainedAt: clock.nanoseconds, expiresAt: expires, refreshFromAt: expires - effectiveMargin,
            lifetime: lifetime, scope: json["scope"]?.stringValue, clock: clock))
    }
}

/// application/x-www-form-urlencoded (HTML's algorithm: unreserved bytes kept, space as "+").
enum FormEncoding {
    static func encode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "*"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: " "):
                out += "+"
            default:
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
