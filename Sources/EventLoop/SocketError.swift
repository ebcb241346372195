import CLinux
/// A failed system call, with the errno that explains it.
public struct SocketError: Error, Sendable, CustomStringConvertible, Equatable {
    public var operation: String
    public var errno: Int32

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    public var description: String {
        "\(operation): \(String(cString: strerror(errno)))"
    }
}

/// Why a byte stream ended abnormally.
public enum StreamError: Error, Sendable, CustomStringConvertible, Equatable {
    /// A system call failed (ECONNRESET, EPIPE, ...).
    case socket(SocketError)
    /// The TLS layer failed (bad record, failed verification, ...).
    case tls(String, verification: Bool)
    /// The peer closed before a complete exchange.
    case closedByPeer
    /// We aborted the stream ourselves.
    case aborted

    public var description: String {
        switch self {
        case .socket(let error): return error.description
        case .tls(let message, _): return "TLS: \(message)"
        case .closedByPeer: return "connection closed by peer"
        case .aborted: return "connection aborted"
        }
    }
}
