/// An absolute `http` or `https` URL split into what a connection needs.
/// Small on purpose: no userinfo, no fragment; the path (with query) is kept as written.
public struct AbsoluteURL: Sendable, Equatable, CustomStringConvertible {
    public var scheme: String
    public var host: String
    public var port: Int
    /// Path and query, "/" when empty.
    public var pathAndQuery: String

    public init?(_ text: String) {
        let lower = text.lowercased()
        let rest: Substring
        if lower.hasPrefix("https://") {
            scheme = "https"; rest = text.dropFirst(8)
        } else if lower.hasPrefix("http://") {
            scheme = "http"; rest = text.dropFirst(7)
        } else {
            return nil
        }
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        var path = String(rest[authorityEnd...])
        if let hash = path.firstIndex(of: "#") { path = String(path[..<hash]) }
        if path.isEmpty || path.first == "?" { path = "/" + path }
        guard !authority.isEmpty, !authority.contains("@") else { return nil }
        var hostPart = Substring(authority)
        var portPart: Substring?
        if authority.first == "[" {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            hostPart = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if after.first == ":" { portPart = after.dropFirst() } else if !after.isEmpty { return nil }
        } else if let colon = authority.lastIndex(of: ":") {
            hostPart = authority[..<colon]
            portPart = authority[authority.index(after: colon)...]
        }
        guard !hostPart.isEmpty else { return nil }
        host = hostPart.lowercased()
        if let portPart {
            guard let value = Int(portPart), (1...65535).contains(value) else { return nil }
            port = value
        } else {
            port = scheme == "https" ? 443 : 80
        }
        pathAndQuery = path
    }

    public var isTLS: Bool { scheme == "https" }

    /// host[:port] as for a Host header: the port only when not the scheme's default.
    public var authority: String {
        let bracketed = host.contains(":") ? "[\(host)]" : host
        return port == (isTLS ? 443 : 80) ? bracketed : "\(bracketed):\(port)"
    }

    public var description: String { "\(scheme)://\(authority)\(pathAndQuery)" }

    /// The same URL with `suffix` appended to its path (a trailing "/" is not doubled).
    public func appendingPath(_ suffix: String) -> AbsoluteURL {
        var copy = self
        var base = pathAndQuery
        if base.hasSuffix("/") { base.removeLast() }
        copy.pathAndQuery = base + suffix
        return copy
    }
}
