import JSON
/// Control endpoints under `/_sandbox/`, without authentication: tests and people drive the
/// sandbox over HTTP with them, e.g. in the docker-compose demo.
///
///     POST /_sandbox/revoke       revoke every token issued so far
///     GET  /_sandbox/stats        counters and current settings
///     POST /_sandbox/reset        counters, failures and token lifetime back to the start; tokens kept
///     POST /_sandbox/configure?idmFailure=503|invalid_client|malformed_json|missing_access_token|none
///                             &apiFailure=503|none&tokenLifetime=60
extension SandboxState {
    func control(_ request: SandboxRequest) -> SandboxResponse {
        switch (request.method, request.path) {
        case ("POST", "/_sandbox/revoke"):
            return .json(200, ["revoked": .int(revokeAllTokens())])
        case ("GET", "/_sandbox/stats"):
            return .json(200, stats())
        case ("POST", "/_sandbox/reset"):
            reset()
            return .json(200, stats())
        case ("POST", "/_sandbox/configure"):
            return configure(query: request.query ?? "")
        case (_, "/_sandbox/stats"):
            return Self.methodNotAllowed("GET")
        case (_, "/_sandbox/revoke"), (_, "/_sandbox/reset"), (_, "/_sandbox/configure"):
            return Self.methodNotAllowed("POST")
        default:
            return .problem(404, detail: "Unknown control endpoint \(request.path).")
        }
    }

    func stats() -> JSONValue {
        let now = currentSeconds
        return withStore { store in
            let c = store.counters
            let active = store.tokens.values.filter { !$0.revoked && $0.expiresAt > now }.count
            return [
                "tokenRequests": .int(c.tokenRequests),
                "tokensIssued": .int(c.tokensIssued),
                "metadataRequests": .int(c.metadataRequests),
                "apiRequests": .int(c.apiRequests),
                "apiUnauthorized": .int(c.apiUnauthorized),
                "activeTokens": .int(active),
                "tokenLifetime": .int(store.tokenLifetime),
                "idmFailure": store.idmFailure.map { .string(Self.name(of: $0)) } ?? .null,
                "apiFailure": store.apiFailure.map { .int($0) } ?? .null,
            ]
        }
    }

    private func configure(query: String) -> SandboxResponse {
        guard let pairs = FormEncoding.parse(Array(query.utf8)) else {
            return .problem(400, detail: "The query is not valid form data.")
        }
        // Validate everything before changing anything.
        var changes: [(inout Store) -> Void] = []
        for (name, value) in pairs {
            switch name {
            case "idmFailure":
                guard let failure = Self.idmFailure(named: value) else {
                    return .problem(
                        400,
                        detail: "idmFailure: a status, invalid_client, malformed_json, missing_access_token or none.")
                }
                changes.append { $0.idmFailure = failure }
            case "apiFailure":
                if value == "none" {
                    changes.append { $0.apiFailure = nil }
                } else if let status = Int(value), (100...599).contains(status) {
                    changes.append { $0.apiFailure = status }
                } else {
                    return .problem(400, detail: "apiFailure: expected a status or none.")
                }
            case "tokenLifetime":
                guard let seconds = Int(value) else { return .problem(400, detail: "tokenLifetime: expected seconds.") }
                changes.append { $0.tokenLifetime = seconds }
            default:
                return .problem(400, detail: "Unknown setting '\(name)'.")
            }
        }
        withStore { store in for change in changes { change(&store) } }
        return .json(200, stats())
    }

    /// `Optional<IDMFailure>` for a configure value: `.some(nil)` is "none".
    private static func idmFailure(named value: String) -> IDMFailure?? {
        switch value {
        case "none": .some(nil)
        case "invalid_client": .invalidClient
        case "malformed_json": .malformedJSON
        case "missing_access_token": .missingAccessToken
        default:
            if let status = Int(value), (100...599).contains(status) { .status(status) } else { .none }
        }
    }

    private static func name(of failure: IDMFailure) -> String {
        switch failure {
        case .status(let status): String(status)
        case .invalidClient: "invalid_client"
        case .malformedJSON: "malformed_json"
        case .missingAccessToken: "missing_access_token"
        }
    }
}
