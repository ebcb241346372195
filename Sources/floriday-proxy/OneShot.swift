import Auth
import Config
import Dispatch
import EventLoop
import Foundation
import HTTP1
import JSON
import Logging
import Proxy
import TLS
import Upstream

/// Blocking helpers for the one-shot commands (`verify`, `token`, `healthcheck`): the event
/// loop does the work, the command's main thread waits for the answer.
enum OneShot {
    static let group = EventLoopGroup(loopCount: 1)

    static func fetch(url: AbsoluteURL, method: String, headers: [(String, String)], tls: TLSContext?, timeout: Duration) -> Result<CollectedResponse, UpstreamError> {
        var timeouts = UpstreamTimeouts()
        timeouts.connect = timeout
        timeouts.response = timeout
        timeouts.bodyStall = timeout
        let loop = group.loops[0]
        let pool = UpstreamPool.standalone(endpoint: UpstreamEndpoint(host: url.host, port: url.port, tls: tls), loop: loop, maxConnections: 1, timeouts: timeouts)
        let result = Locked<Result<CollectedResponse, UpstreamError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        loop.execute {
            pool.fetch(method: method, target: url.pathAndQuery, headers: HTTPHeaders(headers)) { outcome in
                result.withLock { $0 = outcome }
                pool.shutdown()
                done.signal()
            }
        }
        done.wait()
        return result.withLock { $0! }
    }

    /// Fetches one token with the configuration's credentials (no cache, no retry).
    static func token(config: ProxyConfig, tls: TLSContext, logger: Logger) -> Result<AccessToken, TokenError> {
        let settings: TokenSettings
        do {
            settings = try ProxyServer.tokenSettings(config)
        } catch {
            return .failure(TokenError(kind: .malformedResponse, message: "\(error)"))
        }
        let provider = TokenProvider(settings: settings, loop: group.loops[0], tlsContext: tls, logger: logger)
        let result = Locked<Result<AccessToken, TokenError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        provider.token(on: group.loops[0]) { outcome in
            result.withLock { $0 = outcome }
            done.signal()
        }
        done.wait()
        return result.withLock { $0! }
    }

    static func clientTLS(_ config: ProxyConfig) -> TLSContext {
        do {
            return try TLSContext.client(extraCAFile: config.caFile, alpn: ["http/1.1"])
        } catch {
            fail("config: ca_file: cannot set up TLS: \(error)")
        }
    }
}

/// The claims of a JWT, decoded without verifying the signature (for display only).
struct JWTClaims {
    let claims: JSONValue

    init?(token: String) {
        let parts = token.split(separator: ".")
        guard parts.count == 3 else { return nil }
        var base64 = parts[1].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        guard let data = Data(base64Encoded: base64),
              let json = try? JSONParser.parse(Array(data)), case .object = json else { return nil }
        claims = json
    }

    func string(_ key: String) -> String? {
        guard let value = claims[key] else { return nil }
        return Self.text(value)
    }

    private static func text(_ value: JSONValue) -> String? {
        switch value {
        case .string(let text): text
        case .array(let items): items.map { text($0) ?? $0.serialized }.joined(separator: " ")
        case .int(let number): String(number)
        case .number(let text): text
        default: nil
        }
    }

    func date(_ key: String) -> String? {
        guard let seconds = claims[key]?.doubleValue else { return nil }
        return ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: seconds))
    }
}
