import Auth
import Config
import Dispatch
import EventLoop
import Foundation
import HTTP1
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
    let claims: [String: Any]

    init?(token: String) {
        let parts = token.split(separator: ".")
        guard parts.count == 3 else { return nil }
        var base64 = parts[1].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        guard let data = Data(base64Encoded: base64),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
        claims = json
    }

    func string(_ key: String) -> String? {
        switch claims[key] {
        case let text as String: return text
        case let list as [Any]: return list.map { "\($0)" }.joined(separator: " ")
        case let number as NSNumber: return number.stringValue
        default: return nil
        }
    }

    func date(_ key: String) -> String? {
        guard let seconds = (claims[key] as? NSNumber)?.doubleValue else { return nil }
        return ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: seconds))
    }
}
