import Config
import EventLoop
import Foundation
import HTTP1
import HTTPServer
import Logging
import Proxy
import Sandbox
import TestSupport

/// A blocking HTTP/1.1 client on a raw socket; every read is bounded by a timeout.
final class Client {
    let fd: Int32
    private var pending: [UInt8] = []

    struct Failure: Error, CustomStringConvertible { var description: String }

    init(port: Int, timeout: Int = 20) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let connected = SocketAddress(ip: "127.0.0.1", port: port)!.withSockaddrForTests { connect(fd, $0, $1) }
        guard connected == 0 else {
            close(fd)
            throw Failure(description: "connect to \(port) failed: \(String(cString: strerror(errno)))")
        }
    }

    deinit { close(fd) }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw Failure(description: "send failed: \(String(cString: strerror(errno)))") }
            offset += n
        }
    }

    /// One response: status and body.
    func readResponse() throws -> (status: Int, body: String, headers: HTTPHeaders) {
        let parser = HTTP1ResponseParser()
        var head: HTTPResponseHead?
        var body: [UInt8] = []
        var done = false
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !done {
            var chunk = pending
            pending = []
            if chunk.isEmpty {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n == 0 { throw Failure(description: "closed before a complete response") }
                if n < 0 { throw Failure(description: "read failed: \(String(cString: strerror(errno)))") }
                chunk = Array(buffer[0..<n])
            }
            let consumed = try chunk.withUnsafeBytes { raw in
                try parser.parse(raw) { event in
                    switch event {
                    case .head(let h): if h.status >= 200 { head = h }
                    case .body(let bytes): body.append(contentsOf: bytes)
                    case .trailers: break
                    case .end: if head != nil { done = true; return .pause }
                    }
                    return .proceed
                }
            }
            if consumed < chunk.count { pending = Array(chunk[consumed...]) }
        }
        return (head!.status, String(decoding: body, as: UTF8.self), head!.headers)
    }

    func get(_ target: String) throws -> (status: Int, body: String, headers: HTTPHeaders) {
        try send("GET \(target) HTTP/1.1\r\nHost: test\r\n\r\n")
        return try readResponse()
    }

    /// True when the server closed the connection (EOF or reset) without sending anything more.
    func isClosedQuietly() -> Bool {
        var byte: UInt8 = 0
        let n = read(fd, &byte, 1)
        return n == 0 || (n < 0 && errno == ECONNRESET)
    }

    /// Bytes readable now, without waiting.
    var bytesWaiting: Int {
        var count: Int32 = 0
        _ = ioctl(fd, UInt(FIONREAD), &count)
        return Int(count)
    }
}

extension SocketAddress {
    func withSockaddrForTests<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, ipString, &sin.sin_addr)
        return withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    }
}

/// The proxy in front of the sandbox (IDM and API over TLS with a fresh CA), on loopback;
/// its loops run on `clock` when one is given.
final class ProxyOnSandbox: @unchecked Sendable {
    let sandbox: SandboxServer
    let proxy: ProxyServer
    private let caFile: String
    var state: SandboxState { sandbox.state }
    var port: Int { proxy.localAddress.port }

    init(clock: ManualClock? = nil, configure: (inout ProxyConfig) -> Void = { _ in }) throws {
        ignoreSIGPIPE()
        sandbox = try SandboxServer(address: SocketAddress(ip: "127.0.0.1", port: 0)!, tls: true)
        caFile = NSTemporaryDirectory() + "floriday-proxy-server-test-ca-\(UUID().uuidString).pem"
        try sandbox.certificateAuthorityPEM!.write(toFile: caFile, atomically: true, encoding: .utf8)
        var config = ProxyConfig(clientID: SandboxClient.default.clientID, clientSecret: SandboxClient.default.clientSecret, apiKey: "sandbox-api-key")
        config.listen = HostPort(host: "127.0.0.1", port: 0)
        config.apiURL = try EndpointURL(sandbox.baseURL, key: "api_url")
        config.issuerURL = try EndpointURL(sandbox.issuerURL, key: "issuer_url")
        config.caFile = caFile
        config.rateLimit.enabled = false
        configure(&config)
        let group = clock.map { EventLoopGroup(loopCount: 2, clock: $0) } ?? EventLoopGroup(loopCount: 2)
        proxy = try ProxyServer(config: config, logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }, group: group)
        proxy.start()
    }

    deinit {
        sandbox.stop()
        try? FileManager.default.removeItem(atPath: caFile)
        proxy.shutdown(grace: .zero) {}
    }
}
