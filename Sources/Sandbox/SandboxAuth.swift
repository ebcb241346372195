import Foundation

/// The API's gate: bearer token first (401), then API key (403), then scope (403), the order
/// the Floriday API checks them in.
extension SandboxState {
    /// Checks a request's credentials. Returns nil when the request may proceed, else the
    /// 401/403 to send. `bearer` is the token or the whole `Authorization` value
    /// (`Bearer <token>`); `needScope` is the scope the operation requires, if any.
    /// Counts a 401 in `apiUnauthorized`, but not the request in `apiRequests` (see
    /// `checkAPIRequest`).
    public func isAuthorized(bearer: String?, apiKey: String?, needScope: String?) -> SandboxResponse? {
        switch authorize(bearer: bearer, apiKey: apiKey, needScope: needScope) {
        case .success: nil
        case .failure(let refusal): refusal.response
        }
    }

    /// The whole gate for one API request: counts it in `apiRequests`, answers `apiFailure` if
    /// set, then checks credentials from the request's headers. Returns nil when the request may
    /// proceed. For routes served outside `handle`, such as streamed bodies; pass the head only.
    public func checkAPIRequest(_ request: SandboxRequest, needScope: String?) -> SandboxResponse? {
        switch admit(request, needScope: needScope) {
        case .success: nil
        case .failure(let refusal): refusal.response
        }
    }

    struct Refusal: Error {
        var response: SandboxResponse
    }

    func admit(_ request: SandboxRequest, needScope: String?) -> Result<TokenRecord, Refusal> {
        let failure = withStore { store -> Int? in
            store.counters.apiRequests += 1
            if store.apiFailure == 401 { store.counters.apiUnauthorized += 1 }
            return store.apiFailure
        }
        if let failure {
            let challenge: [(name: String, value: String)] =
                failure == 401 ? [("WWW-Authenticate", #"Bearer error="invalid_token""#)] : []
            return .failure(Refusal(response: .problem(
                failure, detail: "The sandbox is set to fail every API request.", headers: challenge)))
        }
        return authorize(
            bearer: request.header("Authorization"), apiKey: request.header("X-Api-Key"), needScope: needScope)
    }

    func authorize(bearer: String?, apiKey: String?, needScope: String?) -> Result<TokenRecord, Refusal> {
        let now = currentSeconds
        let lookup = withStore { store -> (TokenRecord?, Bool) in
            let record = Self.bearerToken(bearer).flatMap { store.tokens[$0] }
            return (record, apiKey.map { store.apiKeys.contains($0) } ?? false)
        }
        let (record, keyValid) = lookup

        func unauthorized(_ challenge: String, _ detail: String) -> Result<TokenRecord, Refusal> {
            withStore { $0.counters.apiUnauthorized += 1 }
            let response = SandboxResponse.problem(401, detail: detail, headers: [("WWW-Authenticate", challenge)])
            return .failure(Refusal(response: response))
        }

        guard Self.bearerToken(bearer) != nil else {
            // RFC 6750 §3.1 and ASP.NET: a request without credentials gets a bare challenge.
            return unauthorized("Bearer", "No bearer token was sent.")
        }
        guard let record else {
            return unauthorized(#"Bearer error="invalid_token""#, "The bearer token is not one the sandbox issued.")
        }
        if record.revoked {
            return unauthorized(#"Bearer error="invalid_token""#, "The bearer token has been revoked.")
        }
        if now >= record.expiresAt {
            let expiresAt = Date(timeIntervalSince1970: TimeInterval(record.expiresAt))
            let expiry = ISO8601DateFormatter().string(from: expiresAt)
            let description = "The token expired at '\(expiry)'"
            return unauthorized(
                #"Bearer error="invalid_token", error_description=""# + description + #"""#, description + ".")
        }
        guard keyValid else {
            let detail = apiKey == nil ? "No X-Api-Key header was sent." : "The X-Api-Key is not valid."
            return .failure(Refusal(response: .problem(403, detail: detail)))
        }
        if let needScope, !record.scopes.contains(needScope) {
            return .failure(Refusal(response: .problem(
                403, detail: "The token lacks the scope '\(needScope)'.",
                headers: [("WWW-Authenticate", #"Bearer error="insufficient_scope", scope=""# + needScope + #"""#)])))
        }
        return .success(record)
    }

    /// The token from `Authorization: Bearer <token>` (scheme case-insensitive) or a bare token;
    /// nil if absent, empty or under another scheme.
    static func bearerToken(_ value: String?) -> String? {
        guard let value = value?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        guard let space = value.firstIndex(of: " ") else { return value }
        guard value[..<space].lowercased() == "bearer" else { return nil }
        let token = value[space...].trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }
}
