#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `host[:port]` as written in a URL or a listen address. IPv6 hosts are bracketed in
/// the text and unbracketed in `host`.
struct Authority {
    var host: String
    var port: Int?

    /// Parses `host`, `host:port`, `[v6]` or `[v6]:port`; the error is a problem text.
    static func parse(_ text: Substring) -> Result<Authority, AuthorityProblem> {
        var hostText: Substring
        var portText: Substring?
        if text.first == "[" {
            guard let close = text.firstIndex(of: "]") else { return .failure(.unclosedBracket) }
            hostText = text[text.index(after: text.startIndex)..<close]
            let after = text[text.index(after: close)...]
            if !after.isEmpty {
                guard after.first == ":" else { return .failure(.badHost) }
                portText = after.dropFirst()
            }
            guard isIPv6Address(String(hostText)) else { return .failure(.badIPv6) }
        } else {
            let colons = text.filter { $0 == ":" }.count
            if colons > 1 { return .failure(.unbracketedIPv6) }
            if let colon = text.firstIndex(of: ":") {
                hostText = text[..<colon]
                portText = text[text.index(after: colon)...]
            } else {
                hostText = text
            }
            guard !hostText.isEmpty else { return .failure(.missingHost) }
            guard isHostName(hostText) else { return .failure(.badHost) }
        }
        var port: Int?
        if let portText {
            guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy(\.isASCIIDigit),
                  let value = Int(portText)
            else { return .failure(.badPort(String(portText))) }
            guard (1...65535).contains(value) else { return .failure(.portOutOfRange(value)) }
            port = value
        }
        return .success(Authority(host: String(hostText).lowercased(), port: port))
    }

    /// The host as written before a `:port`: IPv6 addresses in brackets.
    static func bracketed(_ host: String) -> String {
        host.contains(":") ? "[\(host)]" : host
    }
}

enum AuthorityProblem: Error {
    case unclosedBracket, badIPv6, unbracketedIPv6, missingHost, badHost
    case badPort(String), portOutOfRange(Int)

    var text: String {
        switch self {
        case .unclosedBracket: "has an IPv6 address without its closing \"]\""
        case .badIPv6: "has an invalid IPv6 address"
        case .unbracketedIPv6: "has an IPv6 address without brackets (write [::1]:8080)"
        case .missingHost: "has no host"
        case .badHost: "has an invalid host name"
        case .badPort(let port): "has an invalid port \"\(port)\""
        case .portOutOfRange(let port): "has port \(port), outside 1-65535"
        }
    }
}

/// Letters, digits, `-`, `_` and `.`: DNS names and IPv4 addresses.
func isHostName(_ text: Substring) -> Bool {
    !text.isEmpty && text.unicodeScalars.allSatisfy { scalar in
        scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar)
            || scalar == "-" || scalar == "_" || scalar == ".")
    }
}

func isIPv6Address(_ text: String) -> Bool {
    guard text.contains(":") else { return false }
    var address = in6_addr()
    return inet_pton(AF_INET6, text, &address) == 1
}
