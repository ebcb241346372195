import Config
import EventLoop
import Foundation
import Logging
import Proxy
import Sandbox
import TestSupport
import Testing

/// The real thing on loopback: the sandbox (IDM + API over TLS with a fresh CA) and the proxy
/// in front of it, both on ephemeral ports.
final class Harness: @unchecked Sendable {
    let sandbox: SandboxServer
    let proxy: ProxyServer
    let logs: LogCapture
    let caFile: String
    var state: SandboxState { sandbox.state }
    var port: Int { proxy.localAddress.port }

    /// `clock`: the proxy's loops (their timers and the token provider) run on it; a test moves
    /// it, together with the sandbox's clock, to let time pass without waiting.
    /// `sandboxRateLimit`: the sandbox enforces these limits, as Floriday does.
    init(tokenLifetime: Int = 3600, clock: ManualClock? = nil, metrics: ProxyMetrics = ProxyMetrics(),
         sandboxRateLimit: SandboxRateLimit? = nil, configure: (inout ProxyConfig) -> Void = { _ in }) throws {
        ignoreSIGPIPE()
        let state = SandboxState(tokenLifetime: tokenLifetime)
        sandbox = try SandboxServer(state: state, address: SocketAddress(ip: "127.0.0.1", port: 0)!, tls: true, rateLimit: sandboxRateLimit)
        caFile = NSTemporaryDirectory() + "floriday-proxy-test-ca-\(UUID().uuidString).pem"
        try sandbox.certificateAuthorityPEM!.write(toFile: caFile, atomically: true, encoding: .utf8)
        var config = Harness.config(for: sandbox, caFile: caFile)
        configure(&config)
        logs = LogCapture()
        let logs = self.logs
        let logger = Logger(label: "test") { _ in logs.handler() }
        let group = clock.map { EventLoopGroup(loopCount: 2, clock: $0) } ?? EventLoopGroup(loopCount: 2)
        proxy = try ProxyServer(config: config, logger: logger, group: group, metrics: metrics)
        proxy.start()
    }

    static func config(for sandbox: SandboxServer, caFile: String) -> ProxyConfig {
        var config = ProxyConfig(clientID: SandboxClient.default.clientID, clientSecret: SandboxClient.default.clientSecret, apiKey: "sandbox-api-key")
        config.listen = HostPort(host: "127.0.0.1", port: 0)
        config.apiURL = try! EndpointURL(sandbox.baseURL, key: "api_url")
        config.issuerURL = try! EndpointURL(sandbox.issuerURL, key: "issuer_url")
        config.caFile = caFile
        config.timeouts.request = .seconds(5)
        // Shaping would hold back the many requests some tests send; its own tests turn it on.
        config.rateLimit.enabled = false
        return config
    }

    func client(timeout: Double = 10) throws -> TestClient { try TestClient(port: port, timeout: timeout) }

    deinit {
        sandbox.stop()
        try? FileManager.default.removeItem(atPath: caFile)
        proxy.shutdown(grace: .zero) {}
    }
}

/// Collects log lines (message plus metadata) so tests can assert what was, and was not, logged.
final class LogCapture: @unchecked Sendable {
    private let lines = Locked<[String]>([])

    var all: [String] { lines.withLock { $0 } }
    var text: String { all.joined(separator: "\n") }

    func handler() -> LogHandler { CaptureHandler(capture: self) }

    fileprivate func append(_ line: String) { lines.withLock { $0.append(line) } }

    private struct CaptureHandler: LogHandler {
        let capture: LogCapture
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            var line = "\(event.level) \(event.message)"
            for (key, value) in (event.metadata ?? [:]).sorted(by: { $0.key < $1.key }) { line += " \(key)=\(value)" }
            capture.append(line)
        }
    }
}

/// `TestSupport.eventually` for every file of this target, imported or not.
func eventually(timeout: Double = 20, _ condition: () throws -> Bool) rethrows -> Bool {
    try TestSupport.eventually(timeout: timeout, condition)
}
