import Config
import EventLoop
import Foundation
import HTTP1

/// Who may use the gateway (the `accept` phase): client networks, inbound credentials and
/// method/path rules, checked in that order. The proxy holds credentials with the whole
/// organisation's rights; without these, anyone who reaches it acts as that organisation.
struct AccessPolicy: Sendable {
    private let networks: [ClientNetwork]
    /// Expected bearer tokens and `user:password` pairs, as bytes for constant-time comparison.
    private let bearers: [[UInt8]]
    private let basics: [[UInt8]]
    /// The organisations each credential may use (nil: any), indexed like `bearers` + `basics`.
    private let scopes: [[String]?]
    /// Whether any credential is bound to organisations.
    let restrictsOrganizations: Bool
    private let rules: [AccessRule]
    let challenge: String?

    init(_ config: ProxyConfig) {
        networks = config.allowClients
        rules = config.allow
        var bearers: [[UInt8]] = []
        var basics: [[UInt8]] = []
        var bearerScopes: [[String]?] = []
        var basicScopes: [[String]?] = []
        for credential in config.inboundAuth {
            switch credential {
            case .bearer(let token, let organizations):
                bearers.append(Array(token.value.utf8))
                bearerScopes.append(organizations)
            case .basic(let user, let password, let organizations):
                basics.append(Array("\(user):\(password.value)".utf8))
                basicScopes.append(organizations)
            }
        }
        self.bearers = bearers
        self.basics = basics
        scopes = bearerScopes + basicScopes
        restrictsOrganizations = scopes.contains { $0 != nil }
        var schemes: [String] = []
        if !bearers.isEmpty { schemes.append("Bearer realm=\"floriday-proxy\"") }
        if !basics.isEmpty { schemes.append("Basic realm=\"floriday-proxy\", charset=\"UTF-8\"") }
        challenge = schemes.isEmpty ? nil : schemes.joined(separator: ", ")
    }

    var isOpen: Bool { networks.isEmpty && bearers.isEmpty && basics.isEmpty }

    func check(_ request: HTTPRequestHead, path: [UInt8], client: SocketAddress?) -> Problem? {
        checkClient(request, client: client) ?? checkRules(request, path: path)
    }

    /// Client networks and inbound credentials.
    func checkClient(_ request: HTTPRequestHead, client: SocketAddress?) -> Problem? {
        if !networks.isEmpty {
            guard let client, networks.contains(where: { $0.contains(client.addressBytes) }) else {
                return Problem(.accessDenied, detail: "This client address may not use the proxy.", reason: "client-address")
            }
        }
        if !bearers.isEmpty || !basics.isEmpty {
            guard authenticated(request.headers.first("authorization")) else {
                var problem = Problem(.unauthorized, detail: "The proxy needs a valid inbound credential in the Authorization header.", reason: "inbound-auth")
                problem.challenge = challenge
                return problem
            }
        }
        return nil
    }

    /// Whether the request's credential may act for `organization` (checked after `checkClient`).
    func permits(_ request: HTTPRequestHead, organization: String) -> Bool {
        guard restrictsOrganizations, let index = credentialIndex(request.headers.first("authorization")) else { return true }
        return scopes[index].map { $0.contains(organization) } ?? true
    }

    /// The method and path rules (`allow`).
    func checkRules(_ request: HTTPRequestHead, path: [UInt8]) -> Problem? {
        if !rules.isEmpty {
            guard let decoded = Self.normalizedPath(path) else {
                return Problem(.accessDenied, detail: "Paths with dot-segments or encoded slashes are refused while allow rules apply.", reason: "path-not-canonical")
            }
            let method = request.method
            let allowed = rules.contains { rule in
                (rule.methods?.contains(method) ?? true) && Self.matches(Array(rule.path.utf8), decoded)
            }
            if !allowed {
                return Problem(.accessDenied, detail: "No allow rule permits \(method) on this path.", reason: "rule")
            }
        }
        return nil
    }

    // MARK: Credentials

    private func authenticated(_ header: [UInt8]?) -> Bool {
        credentialIndex(header) != nil
    }

    /// The matching credential's index in `bearers` + `basics`.
    private func credentialIndex(_ header: [UInt8]?) -> Int? {
        guard let header, let space = header.firstIndex(of: UInt8(ascii: " ")) else { return nil }
        let scheme = String(decoding: header[..<space], as: UTF8.self).lowercased()
        let value = Array(header[(space + 1)...].drop(while: { $0 == UInt8(ascii: " ") }))
        switch scheme {
        case "bearer":
            return Self.firstEqual(value, bearers)
        case "basic":
            guard let decoded = Data(base64Encoded: Data(value)) else { return nil }
            return Self.firstEqual(Array(decoded), basics).map { $0 + bearers.count }
        default:
            return nil
        }
    }

    /// Compares against every candidate without stopping early, each in constant time for
    /// its length, so timing tells nothing about how much of a secret was guessed.
    private static func firstEqual(_ value: [UInt8], _ candidates: [[UInt8]]) -> Int? {
        var found: Int?
        for (index, candidate) in candidates.enumerated() where constantTimeEqual(value, candidate) && found == nil { found = index }
        return found
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
        for index in 0..<max(a.count, b.count) {
            let x = index < a.count ? a[index] : 0
            let y = index < b.count ? b[index] : 0
            difference |= x ^ y
        }
        return difference == 0
    }

    // MARK: Paths

    /// The path as the API will see it: percent-decoded. nil when it holds dot-segments or
    /// encoded slashes/backslashes: an API that normalises them could reach a path that no
    /// rule allows (`/allowed/../forbidden`), so such paths are refused, not matched.
    static func normalizedPath(_ raw: [UInt8]) -> [UInt8]? {
        var decoded: [UInt8] = []
        decoded.reserveCapacity(raw.count)
        var index = 0
        while index < raw.count {
            let byte = raw[index]
            if byte == UInt8(ascii: "%"), index + 2 < raw.count, let high = hex(raw[index + 1]), let low = hex(raw[index + 2]) {
                let value = high << 4 | low
                if value == UInt8(ascii: "/") || value == UInt8(ascii: "\\") || value == 0 { return nil }
                decoded.append(value)
                index += 3
            } else {
                if byte == UInt8(ascii: "\\") { return nil }
                decoded.append(byte)
                index += 1
            }
        }
        for segment in decoded.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
            if segment.elementsEqual([UInt8(ascii: ".")]) || segment.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) { return nil }
        }
        return decoded
    }

    private static func hex(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// A pattern without `*` is a prefix that ends at a segment boundary (`/a/b` allows `/a/b`
    /// and `/a/b/c`, not `/a/bc`); with `*`, the whole path must match and `*` stands for any
    /// run of characters (including `/`).
    static func matches(_ pattern: [UInt8], _ path: [UInt8]) -> Bool {
        guard pattern.contains(UInt8(ascii: "*")) else {
            guard path.starts(with: pattern) else { return false }
            return path.count == pattern.count || pattern.last == UInt8(ascii: "/") || path[pattern.count] == UInt8(ascii: "/")
        }
        // Iterative glob with single-star backtracking: linear in practice, no recursion.
        var p = 0, s = 0
        var star = -1, mark = 0
        while s < path.count {
            if p < pattern.count && pattern[p] == UInt8(ascii: "*") {
                star = p
                mark = s
                p += 1
            } else if p < pattern.count && pattern[p] == path[s] {
                p += 1
                s += 1
            } else if star >= 0 {
                p = star + 1
                mark += 1
                s = mark
            } else {
                return false
            }
        }
        while p < pattern.count && pattern[p] == UInt8(ascii: "*") { p += 1 }
        return p == pattern.count
    }
}
