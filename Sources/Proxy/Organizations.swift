import Config
import EventLoop
import HTTP1
import RateLimit
import Synchronization

/// The organisation a request acts for, and the key it is sent with.
/// A class (immutable): each request holds its route with one retain.
final class OrganizationRoute: Sendable {
    /// The configured name; `OrganizationRoute.defaultName` for the top-level `api_key`.
    let name: String
    let apiKey: String
    /// `X-Api-Key: <key>`, built once.
    let apiKeyField: HTTPField

    static let defaultName = "(default)"

    init(name: String, apiKey: String) {
        self.name = name
        self.apiKey = apiKey
        apiKeyField = HTTPField("X-Api-Key", apiKey)
    }

    var isDefault: Bool { name == Self.defaultName }
}

/// Picks the organisation a request names: the path prefix `/org/{name}/…` (removed before
/// forwarding) or the `X-Floriday-Organization` header (removed by `HeaderRewrite`).
struct OrganizationTable: Sendable {
    let byName: [String: OrganizationRoute]
    let fallback: OrganizationRoute?

    init(_ config: ProxyConfig) {
        var byName: [String: OrganizationRoute] = [:]
        for organization in config.organizations {
            byName[organization.name] = OrganizationRoute(name: organization.name, apiKey: organization.apiKey.value)
        }
        self.byName = byName
        fallback = config.apiKey.value.isEmpty ? nil : OrganizationRoute(name: OrganizationRoute.defaultName, apiKey: config.apiKey.value)
    }

    static let prefix: [UInt8] = Array("/org/".utf8)

    /// The organisation and the target to forward (without the prefix), or the problem.
    func resolve(target: [UInt8], headers: HTTPHeaders) -> Result<(OrganizationRoute, [UInt8]), Problem> {
        var named: ArraySlice<UInt8>?
        var forwarded = target
        if target.starts(with: Self.prefix) {
            let rest = target[Self.prefix.count...]
            let end = rest.firstIndex { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") } ?? rest.endIndex
            named = rest[..<end]
            // `/org/a` and `/org/a?x` forward as `/` and `/?x`.
            forwarded = end < rest.endIndex && rest[end] == UInt8(ascii: "/") ? Array(rest[end...]) : [UInt8(ascii: "/")] + rest[end...]
        }
        for field in headers.fields where field.name.count == 23 && field.name.hasName("x-floriday-organization") {
            let value = field.value[...]
            if let earlier = named, !earlier.elementsEqual(value) {
                return .failure(Problem(.organizationConflict, detail: "The request names two different organisations (path prefix and X-Floriday-Organization, or two headers).", reason: "organization-conflict"))
            }
            named = value
        }
        guard let named else {
            guard let fallback else {
                return .failure(Problem(.organizationRequired, detail: "Name an organisation with the path prefix /org/{name}/ or the X-Floriday-Organization header: this proxy has no default API key."))
            }
            return .success((fallback, forwarded))
        }
        guard Organization.isValidName(named) else {
            return .failure(Problem(.unknownOrganization, detail: "The organisation name is not valid (lower-case letters, digits and \"-\").", reason: "invalid-name"))
        }
        let name = String(decoding: named, as: UTF8.self)
        guard let route = byName[name] else {
            return .failure(Problem(.unknownOrganization, detail: "No organisation \"\(name)\" is configured."))
        }
        return .success((route, forwarded))
    }

    /// Every route, default first, for verification and the status page.
    var all: [OrganizationRoute] {
        (fallback.map { [$0] } ?? []) + byName.values.sorted { $0.name < $1.name }
    }
}

/// Per-organisation counts for the status page: requests waiting for their turn now, and 429
/// answers (the proxy's own and Floriday's) since start. Kept across reloads.
public final class OrganizationActivity: Sendable {
    final class Counts: Sendable {
        let waiting = Atomic<Int>(0)
        let tooManyRequests = Atomic<Int>(0)
    }

    private let counts = Locked<[String: Counts]>([:])

    func counts(for name: String) -> Counts {
        counts.withLock { table in
            if let found = table[name] { return found }
            let made = Counts()
            table[name] = made
            return made
        }
    }

    /// (name, waiting, 429s) for `names`, in that order.
    public func snapshot(_ names: [String]) -> [(name: String, waiting: Int, tooManyRequests: Int)] {
        names.map { name in
            let counts = counts(for: name)
            return (name, counts.waiting.load(ordering: .relaxed), counts.tooManyRequests.load(ordering: .relaxed))
        }
    }
}

extension RateLimitPolicy {
    init(_ settings: RateLimitSettings) {
        self.init()
        scope = settings.scope == .key ? .key : .endpoint
        defaultLimit = BucketLimit(rate: settings.rate, burst: Double(settings.burst))
        maxWait = settings.maxWait
        maxWaiting = settings.maxWaiting
        rules = settings.endpoints.map {
            EndpointRule(methods: $0.methods, path: $0.path, limit: BucketLimit(rate: $0.rate, burst: Double($0.burst)))
        }
    }
}
