import EventLoop
import Foundation
import HTTP1
import HTTP2
import TestSupport
import TLS

/// An HTTP/2 API stand-in over TLS (ALPN h2 only) whose faults a test scripts: GOAWAY after
/// some streams, refused streams, a reset mid-response, PINGs left unanswered, a lowered
/// SETTINGS_MAX_CONCURRENT_STREAMS, responses held until released. It answers every request it
/// processes with JSON naming the path, the connection and the credentials it saw, and counts
/// what it processed, so a test can tell a request that was lost or doubled.
final class ScriptedHTTP2Upstream: @unchecked Sendable {
    struct Script: Sendable {
        /// After this many request heads on a connection: GOAWAY naming the last of them; the
        /// streams after it are left unprocessed (RFC 9113 §6.8). Only on the first connection.
        var goAwayAfter: Int?
        /// The first this many streams (over all connections) are refused (REFUSED_STREAM).
        var refuseFirst = 0
        /// Whether PINGs are answered.
        var answerPings = true
        /// SETTINGS_MAX_CONCURRENT_STREAMS at the start.
        var maxConcurrentStreams: UInt32 = 100
        /// Announced after the first request head of a connection.
        var lowerMaxConcurrentStreamsTo: UInt32?
        /// Responses wait for `release()`.
        var holdResponses = false
    }

    struct Processed: Sendable {
        var path: String
        var connection: Int
        var stream: Int32
        var authorization: String?
        var apiKey: String?
        var bodyBytes: Int
    }

    let ca: PEMCertificateAndKey
    let group = EventLoopGroup(loopCount: 1)
    private var listener: Listener!
    private let script: Script
    private let state = Locked(State())
    private var connections: [ObjectIdentifier: Connection] = [:]   // on the loop

    struct State {
        var connections = 0
        var processed: [Processed] = []
        var refused = 0
        var pingsReceived = 0
        var closedConnections = 0
        var maxOpenStreamsSeen = 0
        var held: [() -> Void] = []
    }

    var port: Int { listener.address.port }
    var connectionCount: Int { state.withLock { $0.connections } }
    var processed: [Processed] { state.withLock { $0.processed } }
    var refusedCount: Int { state.withLock { $0.refused } }
    var maxOpenStreamsSeen: Int { state.withLock { $0.maxOpenStreamsSeen } }
    var heldCount: Int { state.withLock { $0.held.count } }
    /// PINGs received (over all connections), answered or not as scripted.
    var pingsReceived: Int { state.withLock { $0.pingsReceived } }
    /// Connections that ended (closed by either side).
    var closedConnections: Int { state.withLock { $0.closedConnections } }

    init(script: Script) throws {
        self.script = script
        ca = try CertificateFactory.makeCertificateAuthority(commonName: "scripted h2 upstream CA")
        let leaf = try CertificateFactory.makeLeaf(signedBy: ca, dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"])
        let tls = try TLSContext.server(certificateChainPEM: leaf.certificatePEM, privateKeyPEM: leaf.privateKeyPEM, alpn: ["h2"])
        weak var weakSelf: ScriptedHTTP2Upstream?
        listener = try Listener(bindTo: SocketAddress(ip: "127.0.0.1", port: 0)!, group: group) { socket in
            guard let self = weakSelf, let stream = try? TLSStream(accepting: socket, context: tls) else { socket.abort(); return }
            let index = self.state.withLock { $0.connections += 1; return $0.connections }
            let connection = Connection(owner: self, stream: stream, index: index)
            self.connections[ObjectIdentifier(connection)] = connection
            connection.start()
        }
        weakSelf = self
        listener.start()
    }

    /// Answers the held responses.
    func release() {
        let held = state.withLock { state -> [() -> Void] in
            defer { state.held = [] }
            return state.held
        }
        group.loops[0].execute { held.forEach { $0() } }
    }

    func stop() {
        listener.close()
        let loop = group.loops[0]
        loop.execute { [self] in
            for connection in connections.values { connection.stream.abort() }
        }
    }

    fileprivate func closed(_ connection: Connection) {
        state.withLock { $0.closedConnections += 1 }
        connections.removeValue(forKey: ObjectIdentifier(connection))
        listener.connectionClosed()
    }

    /// One server connection: an nghttp2 server session over the TLS stream.
    fileprivate final class Connection: ByteStreamDelegate, HTTP2SessionDelegate {
        unowned let owner: ScriptedHTTP2Upstream
        let stream: TLSStream
        let index: Int
        var session: HTTP2Session!
        var heads = 0
        var goneAway = false
        var lastAccepted: Int32 = 0
        var requests: [Int32: (head: HTTPRequestHead, body: Int)] = [:]
        var output: [UInt8] = []

        init(owner: ScriptedHTTP2Upstream, stream: TLSStream, index: Int) {
            self.owner = owner
            self.stream = stream
            self.index = index
            var settings = HTTP2Settings()
            settings.maxConcurrentStreams = owner.script.maxConcurrentStreams
            settings.autoPingAck = owner.script.answerPings
            session = HTTP2Session(role: .server, settings: settings, delegate: self)
        }

        func start() {
            stream.delegate = self
            stream.start()
        }

        func flush() {
            output.removeAll(keepingCapacity: true)
            try? session.send(into: &output, limit: 1 << 30)
            if !output.isEmpty { stream.write(output) }
        }

        func streamDidRead(_ bytes: UnsafeRawBufferPointer) {
            do { try session.receive(bytes) } catch { stream.abort(); return }
            flush()
        }
        func streamDidDrain() { flush() }
        func streamDidClose(_ error: StreamError?) { owner.closed(self) }

        func http2RequestHead(stream id: Int32, head: HTTPRequestHead, endStream: Bool) {
            let script = owner.script
            heads += 1
            let open = session.openStreams
            owner.state.withLock { $0.maxOpenStreamsSeen = max($0.maxOpenStreamsSeen, open) }
            if goneAway { return }   // above the GOAWAY's last stream: never processed
            let refuse = owner.state.withLock { state -> Bool in
                guard state.refused < script.refuseFirst else { return false }
                state.refused += 1
                return true
            }
            if refuse {
                session.reset(stream: id, errorCode: HTTP2ErrorCode.refusedStream)
                return
            }
            lastAccepted = id
            requests[id] = (head, 0)
            if heads == 1, let lowered = script.lowerMaxConcurrentStreamsTo { session.announceMaxConcurrentStreams(lowered) }
            if let limit = script.goAwayAfter, index == 1, heads == limit {
                goneAway = true
                session.goAway(lastStreamID: id)
            }
            if endStream { answer(id) }
        }

        func http2PingReceived() {
            owner.state.withLock { $0.pingsReceived += 1 }
        }

        func http2Data(stream id: Int32, bytes: UnsafeRawBufferPointer) {
            requests[id]?.body += bytes.count
            session.consume(stream: id, count: bytes.count)
        }

        func http2StreamEnded(stream id: Int32) {
            if requests[id] != nil { answer(id) }
        }

        func http2StreamClosed(stream id: Int32, errorCode: UInt32) {
            requests.removeValue(forKey: id)
        }

        private func answer(_ id: Int32) {
            guard let (head, body) = requests[id] else { return }
            let path = String(decoding: head.target, as: UTF8.self)
            let record = Processed(path: path, connection: index, stream: id, authorization: head.headers.firstString("authorization"),
                                   apiKey: head.headers.firstString("x-api-key"), bodyBytes: body)
            let respond = { [self] in
                owner.state.withLock { $0.processed.append(record) }
                if path.hasSuffix("/reset") {
                    // A head and part of a body, then RST_STREAM: the response is broken.
                    session.submitResponse(stream: id, status: 200, headers: HTTPHeaders([("content-type", "application/octet-stream")]), hasBody: true)
                    [UInt8](repeating: 0x61, count: 10_000).withUnsafeBytes { session.enqueueData(stream: id, $0) }
                    flush()
                    session.reset(stream: id, errorCode: HTTP2ErrorCode.internalError)
                    flush()
                    return
                }
                let json = "{\"path\":\"\(path)\",\"connection\":\(index),\"stream\":\(id),\"bodyBytes\":\(body)}"
                let bytes = Array(json.utf8)
                session.submitResponse(stream: id, status: 200, headers: HTTPHeaders([
                    ("content-type", "application/json"), ("content-length", "\(bytes.count)"),
                ]), hasBody: true)
                bytes.withUnsafeBytes { session.enqueueData(stream: id, $0) }
                session.endData(stream: id)
                flush()
            }
            if owner.script.holdResponses {
                owner.state.withLock { $0.held.append(respond) }
            } else {
                respond()
            }
        }
    }
}
