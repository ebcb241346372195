import JSON
/// The Floriday API stand-in: `/suppliers-api-{version}/...` and `/customers-api-{version}/...`.
extension SandboxState {
    /// The API families; any version after the prefix is accepted, as the proxy forwards any.
    static let apiPrefixes = ["/suppliers-api-", "/customers-api-"]

    static func isAPIPath(_ path: String) -> Bool {
        apiPrefixes.contains { path.hasPrefix($0) }
    }

    /// True for `{api}/_sandbox/echo` and the paths under it.
    static func isEchoPath(_ path: String) -> Bool {
        guard isAPIPath(path) else { return false }
        let rest = path.dropFirst().drop { $0 != "/" }
        return rest == echoPrefix || rest.hasPrefix(echoPrefix + "/")
    }

    /// The path prefix, after the base path, under which every method and path is echoed
    /// (`/suppliers-api-2026v1/_sandbox/echo/anything?q=1`). No Floriday path starts with `_`,
    /// so it cannot shadow an operation.
    public static let echoPrefix = "/_sandbox/echo"

    func api(_ request: SandboxRequest) -> SandboxResponse {
        let path = request.path
        // "/suppliers-api-2026v1/trade-items" → base "suppliers-api-2026v1", rest "/trade-items".
        let afterSlash = path.dropFirst()
        let base = afterSlash.prefix { $0 != "/" }
        let rest = String(afterSlash.dropFirst(base.count))
        let family = base.lastIndex(of: "-").map { String(base[..<$0]) } ?? String(base)
        let version = base.lastIndex(of: "-").map { String(base[base.index(after: $0)...]) } ?? ""
        let isSuppliers = family == "suppliers-api"

        // Credentials first (401, then the key's 403), as the API's gateway checks them
        // before it routes.
        let record: TokenRecord
        switch admit(request, needScope: nil) {
        case .success(let found): record = found
        case .failure(let refusal): return refusal.response
        }

        if rest == Self.echoPrefix || rest.hasPrefix(Self.echoPrefix + "/") {
            return .json(200, Self.echo(request))
        }
        // Not in the 2026v1 descriptions, but answered by the API for a key's own details.
        if request.method == "GET" && rest == "/auth/key" && isSuppliers {
            return .json(200, [
                "organizationId": .string(SandboxOrganization.id),
                "apiKeyName": .string(SandboxOrganization.apiKeyName),
                "organizationName": .string(SandboxOrganization.name),
            ])
        }

        guard let served = ServedAPI.bundled.api(family: family, version: version) else {
            return .problem(404, detail: "The sandbox has no description of \(family).")
        }
        let operation: APIOperation
        let pathParameters: [String: String]
        switch served.matcher.match(method: request.method, path: rest) {
        case .notFound:
            return .problem(404, detail: "No operation of \(family) matches \(rest).")
        case .methodNotAllowed(let allowed):
            return .problem(405, detail: "\(rest) allows \(allowed.joined(separator: ", ")).",
                            headers: [("Allow", allowed.joined(separator: ", "))])
        case .found(let found, let parameters):
            operation = found
            pathParameters = parameters
        }
        if let missing = operation.scopes.first(where: { !record.scopes.contains($0) }) {
            return Self.insufficientScope(missing)
        }

        guard let query = FormEncoding.parse(Array((request.query ?? "").utf8)) else {
            var errors = ValidationErrors()
            errors.add("$query", "The query string is not valid percent-encoding.")
            return Self.validationProblem(errors)
        }
        switch served.validator.validate(
            operation, pathParameters: pathParameters, query: query,
            contentType: request.header("Content-Type"), body: request.body)
        {
        case .invalid(let errors):
            return Self.validationProblem(errors)
        case .unsupportedMediaType:
            return .problem(415, detail: "Send the body as application/json.")
        case .valid:
            break
        }

        if operation.pathTemplate == "/identities" {
            // The `Identity` definitions of the 2026v1 descriptions: suppliers call the
            // organization `organization`, customers `customerOrganization`.
            return .json(200, [
                isSuppliers ? "organization" : "customerOrganization":
                    SandboxOrganization.json(type: isSuppliers ? "SUPPLIER" : "CUSTOMER", full: isSuppliers),
                "clientId": .string(record.clientID),
                "apiVersion": .string(version),
            ])
        }
        let limitName = operation.parameters.first { $0.location == .query && $0.name.lowercased().hasPrefix("limit") }?.name
        let limit = limitName.flatMap { name in query.last { $0.name.lowercased() == name.lowercased() }.flatMap { Int($0.value) } }
        // Seeded by method and path (not the version prefix), so the same request gets the same body.
        let body = served.generator.response(
            for: operation, seed: request.method + " " + rest, pathParameters: pathParameters, limit: limit)
        guard let body else {
            return SandboxResponse(status: operation.successStatus)
        }
        return .json(operation.successStatus, body)
    }

    static func insufficientScope(_ scope: String) -> SandboxResponse {
        .problem(
            403, detail: "The token lacks the scope '\(scope)'.",
            headers: [("WWW-Authenticate", #"Bearer error="insufficient_scope", scope=""# + scope + #"""#)])
    }

    /// ASP.NET's answer to a request that fails model validation (RFC 9457 with `errors`).
    static func validationProblem(_ errors: ValidationErrors) -> SandboxResponse {
        let body: JSONValue = [
            "type": .string(ProblemDetails.type(for: 400)),
            "title": "One or more validation errors occurred.",
            "status": 400,
            "errors": errors.json,
            "traceId": .string(ProblemDetails.newTraceID()),
        ]
        return .json(400, body, contentType: SandboxResponse.problemContentType)
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

/// What serving one description takes, built once per description: its path matcher, its
/// validator and its body generator.
struct ServedAPI: Sendable {
    let description: APIDescription
    let matcher: PathMatcher
    let validator: RequestValidator
    let generator: BodyGenerator

    init(_ description: APIDescription) {
        self.description = description
        matcher = PathMatcher(description)
        validator = RequestValidator(description: description)
        generator = BodyGenerator(description: description)
    }

    /// The served form of every bundled description.
    struct Catalog: Sendable {
        let catalog: APICatalog
        let served: [ServedAPI]

        func api(family: String, version: String) -> ServedAPI? {
            guard let description = catalog.description(family: family, version: version) else { return nil }
            return served.first { $0.description.family == description.family && $0.description.version == description.version }
        }
    }

    static let bundled: Catalog = {
        let catalog = APICatalog.bundled
        return Catalog(catalog: catalog, served: catalog.descriptions.map(ServedAPI.init))
    }()
}
