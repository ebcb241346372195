import Foundation

/// A real `redis-server` (Debian's) on a loopback port, in a temporary directory, for tests
/// of the shared rate budget. Nothing is persisted. `stop()` kills it (as a crash would),
/// `start()` brings it back on the same port.
public final class RedisServer: @unchecked Sendable {
    public let port: Int
    public let password: String?
    /// PEM files of the server's certificate and key, and of the CA that signed it: the server
    /// then speaks only TLS.
    public let tls: (certificate: String, key: String, ca: String)?
    private let directory: URL
    private var process: Process?

    public static let executable = "/usr/bin/redis-server"
    public static var isInstalled: Bool { FileManager.default.isExecutableFile(atPath: executable) }

    public init(password: String? = nil, tls: (certificate: String, key: String, ca: String)? = nil) throws {
        self.port = Self.freePort()
        self.password = password
        self.tls = tls
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("floriday-proxy-redis-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try start()
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }

    public var url: String { "\(tls == nil ? "redis" : "rediss")://\(password.map { ":\($0)@" } ?? "")127.0.0.1:\(port)/0" }

    /// Starts the server and waits until it accepts connections.
    public func start() throws {
        precondition(process == nil, "redis-server is already running")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executable)
        var arguments = tls.map { ["--port", "0", "--tls-port", String(port), "--tls-cert-file", $0.certificate,
                                   "--tls-key-file", $0.key, "--tls-ca-cert-file", $0.ca, "--tls-auth-clients", "no"] }
            ?? ["--port", String(port)]
        arguments += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                         "--dir", directory.path, "--daemonize", "no", "--loglevel", "warning"]
        if let password { arguments += ["--requirepass", password] }
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        guard eventually(timeout: 20, { canConnect(port: port) }) else {
            stop()
            throw RedisServerError.didNotStart(port)
        }
    }

    /// Kills the server (SIGKILL: no goodbye to its clients) and waits for it to be gone.
    public func stop() {
        guard let process else { return }
        self.process = nil
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing is answered.
    public func pause() { if let process { kill(process.processIdentifier, SIGSTOP) } }
    public func resume() { if let process { kill(process.processIdentifier, SIGCONT) } }

    /// A port on loopback that was free a moment ago.
    public static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = 0
        inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr)
        _ = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: sin.sin_port))
    }
}

public enum RedisServerError: Error {
    case didNotStart(Int)
}
