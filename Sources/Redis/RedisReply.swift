import CHiredis

/// One reply from Redis (RESP2), copied out of hiredis's reply object.
public enum RedisReply: Equatable, Sendable {
    case status(String)
    case error(String)
    case integer(Int64)
    case bulk([UInt8])
    case array([RedisReply])
    case null

    init(_ reply: UnsafePointer<redisReply>) {
        let r = reply.pointee
        switch r.type {
        case REDIS_REPLY_STATUS: self = .status(Self.text(r))
        case REDIS_REPLY_ERROR: self = .error(Self.text(r))
        case REDIS_REPLY_INTEGER: self = .integer(Int64(r.integer))
        case REDIS_REPLY_STRING:
            self = .bulk(r.str.map { Array(UnsafeRawBufferPointer(start: $0, count: r.len)) } ?? [])
        case REDIS_REPLY_ARRAY:
            var elements: [RedisReply] = []
            elements.reserveCapacity(r.elements)
            for i in 0..<r.elements {
                if let element = r.element[i] { elements.append(RedisReply(element)) } else { elements.append(.null) }
            }
            self = .array(elements)
        default:
            self = .null
        }
    }

    private static func text(_ r: redisReply) -> String {
        guard let str = r.str else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: str, count: r.len), as: UTF8.self)
    }

    /// A bulk or status reply as text.
    public var string: String? {
        switch self {
        case .bulk(let bytes): return String(decoding: bytes, as: UTF8.self)
        case .status(let text): return text
        default: return nil
        }
    }
}

/// Why a command got no reply. `server` is an error reply (`-ERR …`) that the caller asked to
/// see as a failure; every other case means the connection did not deliver.
public enum RedisError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Could not resolve, connect or authenticate.
    case connect(String)
    /// The connection ended before the reply came.
    case connectionLost(String)
    /// No reply within the client's timeout; the connection is dropped.
    case timeout
    /// Redis answered with an error.
    case server(String)
    /// The client was closed.
    case closed

    /// An error reply that is about the server, not the command: it refuses writes (a read-only
    /// replica after a failover, too few replicas, a failed snapshot), is out of memory, still
    /// loading its data, or busy with a script. Every request would meet it.
    public var isServerWide: Bool {
        guard case .server(let message) = self else { return false }
        let code = message.prefix { $0 != " " }
        return ["READONLY", "OOM", "NOREPLICAS", "MISCONF", "LOADING", "BUSY", "MASTERDOWN"].contains(code)
    }

    public var description: String {
        switch self {
        case .connect(let why): return "cannot connect to Redis: \(why)"
        case .connectionLost(let why): return "connection to Redis lost: \(why)"
        case .timeout: return "Redis did not answer in time"
        case .server(let message): return "Redis: \(message)"
        case .closed: return "Redis client closed"
        }
    }
}
