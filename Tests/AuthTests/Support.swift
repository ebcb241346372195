@testable import Auth
import Dispatch
import EventLoop
import Foundation
import HTTP1
import HTTPServer
import Logging
import Sandbox
import TestSupport
import TLS
@testable import Upstream

/// The sandbox's identity server over TLS on loopback, and token providers pointed at it whose
/// clock the test moves. The network is real; time is not.
final class IDM: @unchecked Sendable {
    let sandbox: SandboxServer
    let group = EventLoopGroup(loopCount: 1)
    let clock = ManualClock()
    let tls: TLSContext
    let logs = LogLines()
    var state: SandboxState { sandbox.state }
    var loop: EventLoop { group.loops[0] }

    init(clients: [SandboxClient] = [.default], tokenLifetime: Int = 3600, tls useTLS: Bool = true) throws {
        ignoreSIGPIPE()
        let state = SandboxState(clients: clients, tokenLifetime: tokenLifetime)
        sandbox = try SandboxServer(state: state, address: SocketAddress(ip: "127.0.0.1", port: 0)!, tls: useTLS)
        if let ca = sandbox.certificateAuthorityPEM {
            tls = try TLSContext.client(extraCAPEM: ca, alpn: ["http/1.1"])
        } else {
            tls = try TLSContext.client(alpn: ["http/1.1"])
        }
    }

    deinit { sandbox.stop() }

    func settings(client: SandboxClient = .default, configure: (inout TokenSettings) -> Void = { _ in }) -> TokenSettings {
        var settings = TokenSettings(
            issuerURL: AbsoluteURL(sandbox.issuerURL)!, tokenURL: nil,
            clientID: client.clientID, clientSecret: client.clientSecret, scopes: [])
        configure(&settings)
        return settings
    }

    func provider(_ settings: TokenSettings, jitter: SeededGenerator = SeededGenerator(seed: 1)) -> TokenProvider {
        let logs = self.logs
        let logger = Logger(label: "auth-test") { _ in logs.handler() }
        return TokenProvider(settings: settings, loop: loop, tlsContext: tls, logger: logger, clock: clock, jitter: jitter)
    }

    /// Moves the provider's clock and the sandbox's together.
    func advance(by seconds: Int) {
        clock.advance(by: .seconds(seconds))
        state.advanceClock(by: TimeInterval(seconds))
    }
}

/// Asks `provider` for a token as the proxy does (from a loop) and waits for the answer.
func token(from provider: TokenProvider, on loop: EventLoop) -> Result<AccessToken, TokenError> {
    let done = DispatchSemaphore(value: 0)
    let result = Locked<Result<AccessToken, TokenError>?>(nil)
    loop.execute {
        provider.token(on: loop) { outcome in
            result.withLock { $0 = outcome }
            done.signal()
        }
    }
    precondition(done.wait(timeout: .now() + 60) == .success, "no token outcome within 60 s")
    return result.withLock { $0! }
}

extension Result {
    var success: Success? { if case .success(let value) = self { return value } else { return nil } }
    var failure: Failure? { if case .failure(let error) = self { return error } else { return nil } }
}

/// Log lines (message and metadata), to check that no secret is ever logged.
final class LogLines: @unchecked Sendable {
    private let lines = Locked<[String]>([])
    var text: String { lines.withLock { $0.joined(separator: "\n") } }

    func handler() -> LogHandler { Handler(sink: self) }

    private struct Handler: LogHandler {
        let sink: LogLines
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            var line = "\(event.level) \(event.message)"
            for (key, value) in event.metadata ?? [:] { line += " \(key)=\(value)" }
            sink.lines.withLock { $0.append(line) }
        }
    }
}

/// A stand-in authorization server's metadata document only (RFC 8414), pointing at whatever
/// token endpoint the test sets: for an endpoint that moves.
final class MetadataServer: HTTPServerHandler, @unchecked Sendable {
    let tokenEndpoint = Locked("")
    let requests = Locked(0)
    private var server: HTTPServer!
    let group = EventLoopGroup(loopCount: 1)

    init() throws {
        server = try HTTPServer(address: SocketAddress(ip: "127.0.0.1", port: 0)!, group: group, handler: self)
        server.start()
    }

    var issuerURL: String { "http://127.0.0.1:\(server.localAddress.port)/oauth2/moving" }

    func stop() {
        server.stopAccepting()
        server.closeConnectionsWhenIdle()
    }

    func handle(_ exchange: ServerExchange) {
        requests.withLock { $0 += 1 }
        let document = #"{"issuer":"\#(issuerURL)","token_endpoint":"\#(tokenEndpoint.withLock { $0 })"}"#
        exchange.respond(status: 200, headers: HTTPHeaders([("Content-Type", "application/json")]), body: Array(document.utf8))
    }

    func errorResponse(status: Int, code: String, detail: String) -> (HTTPHeaders, [UInt8]) {
        (HTTPHeaders(), Array(code.utf8))
    }
}
