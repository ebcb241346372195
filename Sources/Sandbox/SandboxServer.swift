import EventLoop
import HTTP1
import HTTPServer
import JSON
import TLS

/// The sandbox on the network: the routes of `SandboxState` served over HTTP/1.1, with TLS
/// from a certificate authority generated at start-up (or plain HTTP).
///
/// Besides the routes of `SandboxState`, two API routes stream, so large bodies can be
/// tested without the sandbox holding them:
/// - `GET {api}/_sandbox/bytes?size=N` answers N bytes of a fixed pattern (`byte i = i % 251`),
///   with `Content-Length` unless `&chunked=1`;
/// - any API request whose body exceeds `bufferedBodyLimit` is counted, not kept, and echoed
///   as `{"method", "target", "bodyBytes", "fnv1a64"}`;
/// - `GET {api}/_sandbox/delay?ms=N` answers after N milliseconds (for timeout tests);
/// - `GET {api}/_sandbox/drop` closes the connection without an answer.
public final class SandboxServer: @unchecked Sendable {
    public let state: SandboxState
    /// The certificate authority that signed the server certificate (PEM), when TLS is on.
    public let certificateAuthorityPEM: String?
    public let group: EventLoopGroup
    private var server: HTTPServer!
    private let handler: SandboxHTTPHandler

    public var port: Int { server.localAddress.port }
    public var host: String { server.localAddress.ipString }
    public var isTLS: Bool { certificateAuthorityPEM != nil }

    /// The sandbox's base URL, e.g. `https://127.0.0.1:8443`.
    public var baseURL: String {
        let host = server.localAddress.family == AF_INET6 ? "[\(self.host)]" : self.host
        return "\(isTLS ? "https" : "http")://\(host):\(port)"
    }

    /// The issuer URL to configure a client with.
    public var issuerURL: String { baseURL + state.issuerPath }

    /// - Parameters:
    ///   - address: where to listen (port 0: any free port).
    ///   - tls: serve HTTPS with a fresh CA and a certificate for `localhost`, 127.0.0.1 and ::1.
    ///   - rateLimit: Floriday's rate limits, enforced before anything else (`SandboxRateLimit`); nil: none.
    ///   - http2: over TLS, offer h2 by ALPN besides http/1.1 (false: http/1.1 only).
    public init(state: SandboxState = SandboxState(), address: SocketAddress, tls: Bool, group: EventLoopGroup? = nil,
                certificateHosts: [String] = ["localhost"], rateLimit: SandboxRateLimit? = nil, http2: Bool = true) throws {
        self.state = state
        self.group = group ?? EventLoopGroup(loopCount: 1)
        var tlsContext: TLSContext?
        if tls {
            let ca = try CertificateFactory.makeCertificateAuthority(commonName: "floriday-proxy sandbox CA")
            let leaf = try CertificateFactory.makeLeaf(signedBy: ca, dnsNames: certificateHosts, ipAddresses: ["127.0.0.1", "::1"])
            tlsContext = try TLSContext.server(certificateChainPEM: leaf.certificatePEM, privateKeyPEM: leaf.privateKeyPEM,
                                               alpn: http2 ? ["h2", "http/1.1"] : ["http/1.1"])
            certificateAuthorityPEM = ca.certificatePEM
        } else {
            certificateAuthorityPEM = nil
        }
        handler = SandboxHTTPHandler(state: state)
        handler.rateLimit = rateLimit
        var settings = HTTPServerSettings()
        settings.limits.maxBodyBytes = nil
        server = try HTTPServer(address: address, group: self.group, settings: settings, tls: tlsContext, handler: handler)
        handler.baseURL = baseURL
        server.start()
    }

    public func stop() {
        server.stopAccepting()
        server.closeConnectionsWhenIdle()
    }
}

final class SandboxHTTPHandler: HTTPServerHandler, @unchecked Sendable {
    let state: SandboxState
    var baseURL = ""
    var rateLimit: SandboxRateLimit?
    static let bufferedBodyLimit = 1 << 20

    init(state: SandboxState) {
        self.state = state
    }

    func errorResponse(status: Int, code: String, detail: String) -> (HTTPHeaders, [UInt8]) {
        var headers = HTTPHeaders()
        headers.add("Content-Type", "application/problem+json; charset=utf-8")
        return (headers, Array("{\"title\":\"\(code)\",\"status\":\(status)}".utf8))
    }

    func handle(_ exchange: ServerExchange) {
        let request = exchange.request
        let target = request.targetString
        let headers = request.headers.fields.map { (name: $0.nameString, value: $0.valueString) }
        let head = SandboxRequest(method: request.method, target: target, headers: headers)
        let isAPI = head.path.hasPrefix("/suppliers-api-") || head.path.hasPrefix("/customers-api-")
        if isAPI, let refusal = rateLimit?.check(head) { return send(refusal, on: exchange) }

        if isAPI, let route = streamingRoute(head.path) {
            if let refusal = state.checkAPIRequest(head, needScope: nil) {
                send(refusal, on: exchange)
                return
            }
            serveStreaming(route, request: head, exchange: exchange)
            return
        }

        var body: [UInt8] = []
        var streamingSink: BodySink?
        exchange.onBody = { [unowned exchange] bytes in
            if let sink = streamingSink {
                sink.consume(bytes)
                return
            }
            if isAPI && body.count + bytes.count > Self.bufferedBodyLimit {
                let sink = BodySink()
                body.withUnsafeBytes { sink.consume($0) }
                sink.consume(bytes)
                body = []
                streamingSink = sink
                _ = exchange
                return
            }
            body.append(contentsOf: bytes)
        }
        exchange.onEnd = { [unowned self, unowned exchange] in
            if let sink = streamingSink {
                if let refusal = self.state.checkAPIRequest(head, needScope: nil) {
                    self.send(refusal, on: exchange)
                    return
                }
                let json = JSONValue.object([
                    ("method", .string(head.method)), ("target", .string(head.target)),
                    ("bodyBytes", .int(sink.count)), ("fnv1a64", .string(String(sink.hash, radix: 16))),
                ])
                var responseHeaders = HTTPHeaders()
                responseHeaders.add("Content-Type", "application/json; charset=utf-8")
                exchange.respond(status: 200, headers: responseHeaders, body: json.bytes)
                return
            }
            var full = head
            full.body = body
            // The metadata names URLs the caller can reach: built from the Host it used, so a
            // sandbox listening on 0.0.0.0 does not advertise an unreachable 0.0.0.0.
            let base = head.header("host").map { (self.baseURL.hasPrefix("https") ? "https://" : "http://") + $0 } ?? self.baseURL
            self.send(self.state.handle(full, baseURL: base), on: exchange)
        }
        if exchange.requestComplete { exchange.onEnd?() }
    }

    private enum StreamingRoute { case bytes, delay, drop }

    private func streamingRoute(_ path: String) -> StreamingRoute? {
        if path.hasSuffix("/_sandbox/bytes") { return .bytes }
        if path.hasSuffix("/_sandbox/delay") { return .delay }
        if path.hasSuffix("/_sandbox/drop") { return .drop }
        return nil
    }

    private func serveStreaming(_ route: StreamingRoute, request: SandboxRequest, exchange: ServerExchange) {
        let query = parseQuery(request.query ?? "")
        switch route {
        case .drop:
            exchange.abort()
        case .delay:
            let milliseconds = Int(query["ms"] ?? "") ?? 1000
            exchange.loop.schedule(after: .milliseconds(milliseconds)) {
                exchange.respond(status: 200, headers: HTTPHeaders([("Content-Type", "application/json")]), body: JSONValue.object([("delayedMs", .int(milliseconds))]).bytes)
            }
        case .bytes:
            let size = Int(query["size"] ?? "") ?? 0
            var head = HTTPResponseHead(status: 200)
            head.headers.add("Content-Type", "application/octet-stream")
            if query["chunked"] != "1" { head.headers.add("Content-Length", String(size)) }
            exchange.writeHead(head)
            let writer = PatternWriter(exchange: exchange, total: size)
            exchange.onWritable = { writer.pump() }
            writer.pump()
        }
    }

    private func send(_ response: SandboxResponse, on exchange: ServerExchange) {
        var headers = HTTPHeaders()
        for (name, value) in response.headers { headers.add(name, value) }
        exchange.respond(status: response.status, headers: headers, body: response.body)
    }

    private func parseQuery(_ query: String) -> [String: String] {
        var result: [String: String] = [:]
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            result[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        return result
    }
}

/// Streams `total` pattern bytes, respecting the client's pace.
private final class PatternWriter {
    let exchange: ServerExchange
    let total: Int
    var sent = 0
    static let block: [UInt8] = (0..<(251 * 256)).map { UInt8($0 % 251) }

    init(exchange: ServerExchange, total: Int) {
        self.exchange = exchange
        self.total = total
    }

    func pump() {
        while sent < total && exchange.pendingWriteBytes < 512 * 1024 && !exchange.isAborted {
            // Blocks are a multiple of 251 long, so the pattern continues across them.
            let count = min(Self.block.count, total - sent)
            Self.block.withUnsafeBytes { exchange.writeBody(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            sent += count
        }
        if sent >= total && !exchange.responseComplete {
            exchange.end()
        }
    }
}

/// Counts a body and hashes it (FNV-1a, 64 bit) without keeping it.
final class BodySink {
    var count = 0
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325

    func consume(_ bytes: UnsafeRawBufferPointer) {
        count += bytes.count
        var h = hash
        for byte in bytes {
            h ^= UInt64(byte)
            h = h &* 0x0000_0100_0000_01b3
        }
        hash = h
    }
}
