/// The Floriday API stand-in: `/suppliers-api-{version}/...` and `/customers-api-{version}/...`.
extension SandboxState {
    /// The API families; any version after the prefix is accepted, as the proxy forwards any.
    static let apiPrefixes = ["/suppliers-api-", "/customers-api-"]

    static func isAPIPath(_ path: String) -> Bool {
        apiPrefixes.contains { path.hasPrefix($0) }
    }

    func api(_ request: SandboxRequest) -> SandboxResponse {
        let path = request.path
        // "/suppliers-api-2026v1/auth/key" → base "suppliers-api-2026v1", rest "/auth/key".
        let afterSlash = path.dropFirst()
        let base = afterSlash.prefix { $0 != "/" }
        let rest = String(afterSlash.dropFirst(base.count))
        let isSuppliers = base.hasPrefix("suppliers-api-")
        let version = String(base.drop { $0 != "-" }.dropFirst().drop { $0 != "-" }.dropFirst())

        enum Route { case authKey, identities, echo }
        let route: Route =
            switch (request.method, rest) {
            case ("GET", "/auth/key") where isSuppliers: .authKey
            case ("GET", "/identities"): .identities
            default: .echo
            }
        // Scopes as the API descriptions' summaries name them.
        let needScope = route == .identities ? "organization:read" : nil

        let record: TokenRecord
        switch admit(request, needScope: needScope) {
        case .success(let found): record = found
        case .failure(let refusal): return refusal.response
        }

        switch route {
        case .authKey:
            return .json(200, [
                "organizationId": .string(SandboxOrganization.id),
                "apiKeyName": .string(SandboxOrganization.apiKeyName),
                "organizationName": .string(SandboxOrganization.name),
            ])
        case .identities:
            // The `Identity` definitions of the 2026v1 descriptions: suppliers call the
            // organization `organization`, customers `customerOrganization`.
            return .json(200, [
                isSuppliers ? "organization" : "customerOrganization":
                    SandboxOrganization.json(type: isSuppliers ? "SUPPLIER" : "CUSTOMER", full: isSuppliers),
                "clientId": .string(record.clientID),
                "apiVersion": .string(version),
            ])
        case .echo:
            return .json(200, Self.echo(request))
        }
    }

    /// Everything the sandbox received, so tests can assert what a proxy sent: the target
    /// byte for byte, every header (the proxy's injected credentials included), the body.
    static func echo(_ request: SandboxRequest) -> JSONValue {
        var headers: [(String, JSONValue)] = []
        for (name, value) in request.headers {
            let key = name.lowercased()
            if let i = headers.firstIndex(where: { $0.0 == key }), case .string(let earlier) = headers[i].1 {
                // Repeated fields combine as RFC 9110 §5.3 allows.
                headers[i].1 = .string(earlier + ", " + value)
            } else {
                headers.append((key, .string(value)))
            }
        }
        let text = request.body.count <= 64 * 1024 ? String(validating: request.body, as: UTF8.self) : nil
        return [
            "method": .string(request.method),
            "target": .string(request.target),
            "headers": .object(headers),
            "bodyBytes": .int(request.body.count),
            "body": text.map { .string($0) } ?? .null,
        ]
    }
}

/// The one organization every sandbox API key belongs to.
enum SandboxOrganization {
    static let id = "5b0d3c1e-8f7a-4e62-9d35-2c6a1f4b7e90"
    static let name = "Sandbox Nursery B.V."
    static let apiKeyName = "Sandbox API key"

    /// An `Organization` with the properties its definition requires; the suppliers API's
    /// definition (`full`) requires more than the customers API's.
    static func json(type: String, full: Bool) -> JSONValue {
        var members: [(String, JSONValue)] = [
            ("organizationId", .string(id)),
            ("companyGln", "8712345000004"),
            ("name", .string(name)),
            ("rfhRelationId", 123456),
            ("organizationType", .string(type)),
            ("paymentProviders", ["RFH"]),
        ]
        if full {
            let address: JSONValue = [
                "addressLine": "Middenweg 1", "city": "Aalsmeer", "countryCode": "NL", "postalCode": "1431 AA",
            ]
            members += [
                ("sequenceNumber", 1),
                ("creationDateTime", "2024-01-01T00:00:00Z"),
                ("lastModifiedDateTime", "2024-01-01T00:00:00Z"),
                ("commercialName", "Sandbox Nursery"),
                ("mailingAddress", address),
                ("physicalAddress", address),
                ("isFsiCompliant", false),
            ]
        }
        return .object(members)
    }
}
