import EventLoop
import Foundation
import HTTP1

/// A blocking HTTP/1.1 client on a raw socket, for tests: every call is bounded by a timeout,
/// so a proxy bug shows as a failure, never as a hung test run.
final class TestClient {
    let fd: Int32
    private var pending: [UInt8] = []
    private var parser = HTTP1ResponseParser()

    struct Response {
        var status: Int
        var headers: HTTPHeaders
        var body: [UInt8]
        /// The trailer section of a chunked response.
        var trailers = HTTPHeaders()
        var bodyString: String { String(decoding: body, as: UTF8.self) }
        func header(_ name: String) -> String? { headers.firstString(name) }
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:] }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        /// The connection ended (EOF or reset) before a byte of the response arrived: the
        /// server cannot have answered (a keep-alive connection closed as the request went out).
        var beforeAnyResponseByte = false
        /// errno of a failed read or send.
        var errorCode: Int32 = 0
    }

    init(port: Int, timeout: Double = 10) throws {
        fd = try Self.rawConnect(port: port, timeout: timeout)
    }

    /// A blocking socket connected to 127.0.0.1:`port`, with send and receive timeouts.
    static func rawConnect(port: Int, timeout: Double = 5) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket failed") }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr)
        let result = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            close(fd)
            throw Failure(description: "connect to 127.0.0.1:\(port) failed: \(String(cString: strerror(errno)))")
        }
        return fd
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else {
                let code = errno
                throw Failure(description: "send failed: \(String(cString: strerror(code)))", beforeAnyResponseByte: true, errorCode: code)
            }
            offset += n
        }
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Reads one raw chunk; nil on EOF; throws on timeout or reset.
    func readSome() throws -> [UInt8]? {
        if !pending.isEmpty { defer { pending = [] }; return pending }
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n == 0 { return nil }
        if n < 0 {
            let code = errno
            throw Failure(description: "read failed: \(String(cString: strerror(code)))", errorCode: code)
        }
        return Array(buffer[0..<n])
    }

    /// Everything until the server closes.
    func readToEOF() throws -> [UInt8] {
        var all: [UInt8] = []
        while let chunk = try readSome() { all += chunk }
        return all
    }

    /// True when the server closed the connection (EOF, or a reset).
    func isClosedByPeer() -> Bool {
        do { return try readSome() == nil } catch { return errno == ECONNRESET }
    }

    /// Reads one response. `onBody` sees the body in pieces; without it the body is collected.
    func readResponse(method: String = "GET", onBody: ((UnsafeRawBufferPointer) -> Void)? = nil) throws -> Response {
        parser.requestMethod = method
        var head: HTTPResponseHead?
        var body: [UInt8] = []
        var trailers = HTTPHeaders()
        var done = false
        var received = !pending.isEmpty
        while !done {
            let read: [UInt8]?
            do {
                read = try readSome()
            } catch var failure as Failure {
                failure.beforeAnyResponseByte = !received && failure.errorCode == ECONNRESET
                throw failure
            }
            guard let chunk = read else {
                var endedAtEOF = false
                _ = try parser.finish { event in
                    if case .end = event { endedAtEOF = true }
                    return .proceed
                }
                if endedAtEOF, let head { return Response(status: head.status, headers: head.headers, body: body) }
                throw Failure(description: "connection closed before a complete response", beforeAnyResponseByte: !received)
            }
            received = true
            let consumed = try chunk.withUnsafeBytes { raw in
                try parser.parse(raw) { event in
                    switch event {
                    case .head(let h):
                        if h.status >= 200 { head = h }
                    case .body(let bytes):
                        if let onBody { onBody(bytes) } else { body.append(contentsOf: bytes) }
                    case .trailers(let fields):
                        if head != nil { trailers = fields }
                    case .end:
                        if head != nil { done = true; return .pause }
                    }
                    return .proceed
                }
            }
            if consumed < chunk.count { pending = Array(chunk[consumed...]) }
        }
        return Response(status: head!.status, headers: head!.headers, body: body, trailers: trailers)
    }

    func request(_ method: String, _ target: String, headers: [(String, String)] = [], body: [UInt8]? = nil,
                 host: String = "proxy.test") throws -> Response {
        var text = "\(method) \(target) HTTP/1.1\r\nHost: \(host)\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        if let body, !headers.contains(where: { $0.0.lowercased() == "transfer-encoding" }) {
            text += "Content-Length: \(body.count)\r\n"
        }
        text += "\r\n"
        try send(Array(text.utf8) + (body ?? []))
        return try readResponse(method: method)
    }
}

/// FNV-1a 64, the hash the sandbox reports for bodies it streams.
func fnv1a64<S: Sequence>(_ bytes: S, seed: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 where S.Element == UInt8 {
    var h = seed
    for byte in bytes {
        h ^= UInt64(byte)
        h = h &* 0x0000_0100_0000_01b3
    }
    return h
}
