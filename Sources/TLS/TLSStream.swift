import EventLoop

/// TLS over a socket: a `ByteStream` whose bytes are encrypted by a `TLSEngine` and carried by
/// an inner stream. The engine works on in-memory buffers; this type moves ciphertext between the
/// engine and the socket, so OpenSSL never touches a file descriptor.
public final class TLSStream: ByteStream, ByteStreamDelegate, @unchecked Sendable {
    public let loop: EventLoop
    public var delegate: ByteStreamDelegate?
    public var remoteAddress: SocketAddress? { inner.remoteAddress }
    public var isOpen: Bool { state == .handshaking || state == .open }
    public var pendingWriteBytes: Int { inner.pendingWriteBytes + pendingPlaintext.count }
    /// The protocol chosen by ALPN, once the handshake is complete.
    public var negotiatedALPN: String? { engine.negotiatedALPN }

    private let inner: ByteStream
    private let engine: TLSEngine
    private var state = State.handshaking
    private var plaintextIn: [UInt8] = []
    /// Plaintext written before the handshake finished.
    private var pendingPlaintext: [UInt8] = []
    private var closeAfterHandshake = false
    private var handshakeCompletion: ((StreamError?) -> Void)?
    private var started = false

    private enum State { case handshaking, open, closed }

    /// Client side: starts the handshake at once; `completion` runs on the loop when it ends.
    /// The stream delivers no reads until `start()`.
    public static func connect(
        over socket: ByteStream, context: TLSContext, serverName: String,
        completion: @escaping (Result<TLSStream, StreamError>) -> Void
    ) {
        let stream: TLSStream
        do {
            stream = try TLSStream(inner: socket, engine: TLSEngine(context: context, serverName: serverName))
        } catch {
            socket.abort()
            completion(.failure(.tls("\(error)", verification: false)))
            return
        }
        stream.handshakeCompletion = { error in
            if let error { completion(.failure(error)) } else { completion(.success(stream)) }
        }
        socket.delegate = stream
        socket.start()
        stream.advanceHandshake()
    }

    /// Server side: the handshake runs as the client's bytes arrive.
    public convenience init(accepting socket: ByteStream, context: TLSContext) throws {
        try self.init(inner: socket, engine: TLSEngine(context: context, serverName: nil))
        socket.delegate = self
    }

    private init(inner: ByteStream, engine: TLSEngine) {
        self.inner = inner
        self.loop = inner.loop
        self.engine = engine
    }

    // MARK: ByteStream

    public func start() {
        loop.assertInLoop()
        guard !started else { return }
        started = true
        inner.start()
        // Plaintext may already be buffered from the handshake's last flight.
        if state == .open { drainPlaintext() }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) {
        loop.assertInLoop()
        guard bytes.count > 0 else { return }
        switch state {
        case .handshaking:
            pendingPlaintext.append(contentsOf: bytes)
        case .open:
            do {
                try engine.writePlaintext(bytes)
                flushCiphertext()
            } catch {
                fail(error)
            }
        case .closed:
            return
        }
    }

    public func pauseReading() { inner.pauseReading() }
    public func resumeReading() { inner.resumeReading() }

    public func close() {
        loop.assertInLoop()
        switch state {
        case .handshaking:
            closeAfterHandshake = true
        case .open:
            state = .closed
            engine.shutdown()
            flushCiphertext()
            inner.close()
            notifyClosed(nil)
        case .closed:
            return
        }
    }

    public func abort() {
        loop.assertInLoop()
        guard state != .closed else { return }
        state = .closed
        inner.abort()
        handshakeCompletion = nil
        delegate = nil
    }

    // MARK: Inner stream events

    public func streamDidRead(_ bytes: UnsafeRawBufferPointer) {
        engine.feedCiphertext(bytes)
        if state == .handshaking {
            advanceHandshake()
        }
        if state == .open && (started || !engine.isClient) {
            drainPlaintext()
        }
    }

    public func streamDidDrain() {
        delegate?.streamDidDrain()
    }

    public func streamDidClose(_ error: StreamError?) {
        guard state != .closed else { return }
        let wasHandshaking = state == .handshaking
        state = .closed
        let streamError = error ?? (wasHandshaking ? .closedByPeer : nil)
        if wasHandshaking, let completion = handshakeCompletion {
            handshakeCompletion = nil
            completion(streamError ?? .closedByPeer)
        }
        notifyClosed(streamError)
    }

    // MARK: Internals

    private func advanceHandshake() {
        do {
            let progress = try engine.handshake()
            flushCiphertext()
            guard progress == .complete else { return }
            state = .open
            if !pendingPlaintext.isEmpty {
                let pending = pendingPlaintext
                pendingPlaintext = []
                pending.withUnsafeBytes { write($0) }
            }
            if let completion = handshakeCompletion {
                handshakeCompletion = nil
                completion(nil)
            }
            if closeAfterHandshake { close() }
        } catch {
            flushCiphertext()   // let the peer see our alert
            fail(error)
        }
    }

    private func drainPlaintext() {
        while state == .open {
            plaintextIn.removeAll(keepingCapacity: true)
            let result: (count: Int, progress: TLSProgress)
            do {
                result = try engine.readPlaintext(into: &plaintextIn, maxBytes: 64 * 1024)
            } catch {
                fail(error)
                return
            }
            flushCiphertext()   // reading may produce output (key updates, alerts)
            if result.count > 0 {
                plaintextIn.withUnsafeBytes { delegate?.streamDidRead($0) }
            }
            if result.progress == .closed {
                // close_notify from the peer: an orderly end of the stream.
                state = .closed
                inner.close()
                notifyClosed(nil)
                return
            }
            // `wantRead`: OpenSSL has used up the ciphertext it was given; asking again before
            // more arrives would only fail (one SSL_read per record, not two).
            if result.count == 0 || result.progress == .wantRead { return }
        }
    }

    private func flushCiphertext() {
        guard engine.hasPendingCiphertext else { return }
        // Sent in place: the socket copies only what it cannot send at once. A failing send
        // closes this stream (state `.closed`) before anything could write to the engine
        // again, so its buffer does not change while it is being sent.
        engine.sendPendingCiphertext { inner.write($0) }
    }

    private func fail(_ error: Error) {
        guard state != .closed else { return }
        state = .closed
        let streamError: StreamError
        if let tls = error as? TLSError {
            streamError = .tls(tls.message, verification: tls.isVerificationFailure)
        } else {
            streamError = .tls("\(error)", verification: false)
        }
        inner.close()
        if let completion = handshakeCompletion {
            handshakeCompletion = nil
            delegate = nil
            completion(streamError)
            return
        }
        notifyClosed(streamError)
    }

    private func notifyClosed(_ error: StreamError?) {
        let delegate = self.delegate
        self.delegate = nil
        delegate?.streamDidClose(error)
    }
}
