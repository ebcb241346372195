/// Where a Redis server is: `redis://[[user]:password@]host[:port][/database]`.
///
/// `rediss://` is Redis over TLS (see `TLSTunnel` for how, with a hiredis that has no TLS).
public struct RedisEndpoint: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var database: Int
    public var user: String?
    public var password: String?
    public var tls: Bool

    public init(host: String, port: Int = 6379, database: Int = 0, user: String? = nil, password: String? = nil, tls: Bool = false) {
        self.host = host
        self.port = port
        self.database = database
        self.user = user
        self.password = password
        self.tls = tls
    }

    /// Parses a `redis://` URL; the error says what is wrong with it (never repeating a password).
    public init(url: String) throws(RedisEndpointError) {
        let bytes = Array(url.utf8)
        var rest: ArraySlice<UInt8>
        if bytes.starts(with: Array("redis://".utf8)) {
            tls = false
            rest = bytes[8...]
        } else if bytes.starts(with: Array("rediss://".utf8)) {
            tls = true
            rest = bytes[9...]
        } else {
            throw RedisEndpointError("must start with redis://")
        }
        // userinfo: everything up to the last '@' (a password may contain '@').
        user = nil
        password = nil
        if let at = rest.lastIndex(of: UInt8(ascii: "@")) {
            let info = rest[rest.startIndex..<at]
            if let colon = info.firstIndex(of: UInt8(ascii: ":")) {
                let name = String(decoding: info[info.startIndex..<colon], as: UTF8.self)
                user = name.isEmpty ? nil : name
                password = try Self.percentDecoded(info[(colon + 1)...])
            } else {
                // redis://secret@host is how several clients spell a password without a user.
                password = try Self.percentDecoded(info)
            }
            rest = rest[(at + 1)...]
        }
        var path: ArraySlice<UInt8> = []
        if let slash = rest.firstIndex(of: UInt8(ascii: "/")) {
            path = rest[(slash + 1)...]
            rest = rest[rest.startIndex..<slash]
        }
        var hostPart = rest
        var portPart: ArraySlice<UInt8>?
        if hostPart.first == UInt8(ascii: "[") {
            guard let close = hostPart.firstIndex(of: UInt8(ascii: "]")) else { throw RedisEndpointError("unclosed [ in the host") }
            let after = hostPart[(close + 1)...]
            hostPart = hostPart[(hostPart.startIndex + 1)..<close]
            if let colon = after.first {
                guard colon == UInt8(ascii: ":") else { throw RedisEndpointError("unexpected text after the host") }
                portPart = after.dropFirst()
            }
        } else if let colon = hostPart.firstIndex(of: UInt8(ascii: ":")) {
            portPart = hostPart[(colon + 1)...]
            hostPart = hostPart[hostPart.startIndex..<colon]
        }
        guard !hostPart.isEmpty else { throw RedisEndpointError("no host") }
        host = String(decoding: hostPart, as: UTF8.self)
        port = 6379
        if let portPart {
            guard let value = Self.number(portPart), (1...65535).contains(value) else { throw RedisEndpointError("port must be 1-65535") }
            port = value
        }
        database = 0
        if !path.isEmpty {
            guard let value = Self.number(path), value <= 15_999 else { throw RedisEndpointError("the path must be a database number, e.g. /0") }
            database = value
        }
    }

    private static func number(_ digits: ArraySlice<UInt8>) -> Int? {
        guard !digits.isEmpty, digits.count <= 5, digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
        return digits.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
    }

    private static func percentDecoded(_ bytes: ArraySlice<UInt8>) throws(RedisEndpointError) -> String {
        var out: [UInt8] = []
        var i = bytes.startIndex
        while i < bytes.endIndex {
            if bytes[i] == UInt8(ascii: "%") {
                guard i + 2 < bytes.endIndex, let high = hex(bytes[i + 1]), let low = hex(bytes[i + 2]) else {
                    throw RedisEndpointError("bad %-escape in the password")
                }
                out.append(high << 4 | low)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func hex(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// The URL without its password, for logs and status pages.
    public var description: String {
        let hostText = host.contains(":") ? "[\(host)]" : host
        let auth = password == nil ? "" : "\(user ?? ""):***@"
        return "\(tls ? "rediss" : "redis")://\(auth)\(hostText):\(port)/\(database)"
    }
}

public struct RedisEndpointError: Error, Equatable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
