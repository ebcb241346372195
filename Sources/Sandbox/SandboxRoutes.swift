/// The sandbox's router: identity server, API and control endpoints on one origin.
extension SandboxState {
    /// Answers one request. `baseURL` is the sandbox's own absolute URL (e.g.
    /// `https://127.0.0.1:8443`), from which the issuer and token endpoint are derived.
    public func handle(_ request: SandboxRequest, baseURL: String) -> SandboxResponse {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        let issuerPath = withStore { store in
            store.lastBaseURL = base
            return store.issuerPath
        }
        let issuer = base + issuerPath
        let path = request.path

        // Okta serves metadata under the issuer; RFC 8414 §3.1 puts `.well-known` first. Accept both.
        let metadataPaths = [
            issuerPath + "/.well-known/oauth-authorization-server",
            issuerPath + "/.well-known/openid-configuration",
            "/.well-known/oauth-authorization-server" + issuerPath,
        ]
        if metadataPaths.contains(path) {
            return request.method == "GET" ? metadata(issuer: issuer) : Self.methodNotAllowed("GET")
        }
        if path == issuerPath + "/v1/token" {
            return request.method == "POST" ? tokenEndpoint(request, issuer: issuer) : Self.methodNotAllowed("POST")
        }
        if Self.isAPIPath(path) {
            return api(request)
        }
        if path.hasPrefix("/_sandbox/") {
            return control(request)
        }
        return .problem(404, detail: "The sandbox has nothing at \(path).")
    }

    static func methodNotAllowed(_ allowed: String) -> SandboxResponse {
        .problem(405, detail: "Use \(allowed).", headers: [("Allow", allowed)])
    }
}
