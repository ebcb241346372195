import Foundation
import TestSupport
import TLS

/// `nghttpd` (Debian package nghttp2-server) on a loopback port over TLS, with a certificate
/// from its own test CA: an HTTP/2 server the project did not write, serving files from a
/// temporary document root. Run with `-v`, it logs every frame and every header field it
/// receives; `log` parses that: the connections it accepted and the fields of each stream.
final class Nghttpd: @unchecked Sendable {
    static let executable = ["/usr/sbin/nghttpd", "/usr/bin/nghttpd", "/usr/local/bin/nghttpd"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static var isInstalled: Bool { executable != nil }

    let port: Int
    let ca: PEMCertificateAndKey
    let directory: URL
    var documentRoot: URL { directory.appendingPathComponent("htdocs") }
    private let logFile: URL
    private let process = Process()

    /// `files`: path (below the document root) → contents. `arguments`: more of nghttpd's options.
    init(files: [String: [UInt8]], arguments: [String] = []) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("floriday-proxy-nghttpd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for (path, contents) in files {
            let file = directory.appendingPathComponent("htdocs").appendingPathComponent(path)
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(contents).write(to: file)
        }
        ca = try CertificateFactory.makeCertificateAuthority(commonName: "nghttpd test CA")
        let leaf = try CertificateFactory.makeLeaf(signedBy: ca, dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"])
        let keyFile = directory.appendingPathComponent("key.pem")
        let certificateFile = directory.appendingPathComponent("cert.pem")
        try leaf.privateKeyPEM.write(to: keyFile, atomically: true, encoding: .utf8)
        try leaf.certificatePEM.write(to: certificateFile, atomically: true, encoding: .utf8)
        logFile = directory.appendingPathComponent("nghttpd.log")
        FileManager.default.createFile(atPath: logFile.path, contents: nil)
        port = RedisServer.freePort()
        process.executableURL = URL(fileURLWithPath: Self.executable!)
        process.arguments = ["-v", "-a", "127.0.0.1", "-d", documentRoot.path] + arguments + [String(port), keyFile.path, certificateFile.path]
        // A file, not a pipe: the verbose log of a hundred streams would fill a pipe and stop it.
        let output = try FileHandle(forWritingTo: logFile)
        process.standardOutput = output
        process.standardError = output
        try process.run()
        guard eventually(timeout: 20, { canConnect(port: port) }) else {
            stop()
            throw TestClient.Failure(description: "nghttpd did not start on port \(port)")
        }
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }

    /// SIGKILL: nghttpd may ignore SIGTERM and SIGINT (an ignored SIGINT is inherited by a
    /// background process), and its log is read before it stops.
    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    var logText: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }

    /// What the verbose log says nghttpd received.
    struct Log {
        /// One request stream: the connection (nghttpd's session id) and its header fields in
        /// the order received (names as sent, lower case in HTTP/2).
        struct Stream {
            var session: Int
            var id: Int
            var fields: [(name: String, value: String)] = []
            func values(_ name: String) -> [String] { fields.filter { $0.name == name }.map(\.value) }
            var path: String? { values(":path").first }
        }

        /// Sessions (connections that sent the HTTP/2 preface and SETTINGS) nghttpd served.
        var sessions: Set<Int> = []
        var streams: [Stream] = []
    }

    /// Parses lines such as `[id=1] [  0.604] recv (stream_id=13, sensitive) authorization: Bearer x`.
    var log: Log {
        var result = Log()
        var index: [String: Int] = [:]
        for line in logText.split(separator: "\n") {
            guard line.hasPrefix("[id="), let close = line.firstIndex(of: "]"),
                  let session = Int(line[line.index(line.startIndex, offsetBy: 4)..<close]) else { continue }
            // The readiness check's bare TCP connection gets an id too, but sends no SETTINGS.
            if line.contains("] recv SETTINGS frame") { result.sessions.insert(session) }
            guard let recv = line.range(of: "] recv (stream_id=") else { continue }
            let rest = line[recv.upperBound...]
            guard let end = rest.firstIndex(where: { $0 == "," || $0 == ")" }), let stream = Int(rest[..<end]),
                  let fieldStart = rest.range(of: ") ")?.upperBound else { continue }
            let field = rest[fieldStart...]
            // The name may start with ':' (a pseudo-header field): split at the first ": " after it.
            guard let separator = field.dropFirst().range(of: ": ") else { continue }
            let key = "\(session)/\(stream)"
            let position = index[key] ?? {
                result.streams.append(Log.Stream(session: session, id: stream))
                index[key] = result.streams.count - 1
                return result.streams.count - 1
            }()
            result.streams[position].fields.append((String(field[..<separator.lowerBound]), String(field[separator.upperBound...])))
        }
        return result
    }
}
