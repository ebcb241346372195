import EventLoop
import HTTP1
import TLS

/// Listens on an address and serves HTTP/1.1 (optionally over TLS) with one handler; a
/// cleartext listener also serves HTTP/2 to clients that start with its preface (h2c).
public final class HTTPServer: @unchecked Sendable {
    public let group: EventLoopGroup
    public var localAddress: SocketAddress { listener.address }
    private var listener: Listener!
    private let connections = Locked<[ObjectIdentifier: HTTP1ServerConnection]>([:])

    /// `handler` is shared by every connection and called on their loops.
    public init(
        address: SocketAddress, group: EventLoopGroup, settings: HTTPServerSettings = HTTPServerSettings(),
        maxConnections: Int = 4096, tls: TLSContext? = nil, handler: HTTPServerHandler
    ) throws(SocketError) {
        self.group = group
        let connections = self.connections
        // Weak: the listener holds this closure.
        weak var listenerRef: Listener?
        listener = try Listener(bindTo: address, group: group, maxConnections: maxConnections) { socket in
            let stream: ByteStream
            if let tls {
                guard let tlsStream = try? TLSStream(accepting: socket, context: tls) else {
                    socket.abort()
                    listenerRef?.connectionClosed()
                    return
                }
                stream = tlsStream
            } else {
                stream = socket
            }
            var key: ObjectIdentifier?
            // Cleartext connections may open with the HTTP/2 preface (prior knowledge, RFC 9113
            // §3.3). Over TLS a client that ALPN gave h2 opens with the preface too (RFC 9113
            // §3.2), so the same sniffing serves it when the context offers h2.
            let connection = HTTP1ServerConnection(stream: stream, handler: handler, settings: settings,
                                                   sniffHTTP2: (tls == nil || tls!.offersHTTP2) && settings.acceptsHTTP2) {
                if let key { _ = connections.withLock { $0.removeValue(forKey: key) } }
                listenerRef?.connectionClosed()
            }
            key = ObjectIdentifier(connection)
            connections.withLock { $0[key!] = connection }
            connection.start()
        }
        listenerRef = listener
    }

    public func start() { listener.start() }

    public var activeConnections: Int { listener.activeConnections }

    /// Stops accepting new connections.
    public func stopAccepting() { listener.close() }

    /// Closes idle keep-alive connections now and the busy ones after their current response.
    public func closeConnectionsWhenIdle() {
        let all = connections.withLock { Array($0.values) }
        for connection in all {
            connection.loop.execute { connection.closeWhenIdle() }
        }
    }
}
