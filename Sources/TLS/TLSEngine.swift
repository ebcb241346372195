import COpenSSL
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The result of `handshake()` and `readPlaintext(into:maxBytes:)`. Failures throw `TLSError`.
public enum TLSProgress: Equatable, Sendable {
    /// Handshake: done. Read: `maxBytes` was reached; more plaintext may be waiting.
    case complete
    /// Nothing more can happen until more ciphertext is fed in.
    case wantRead
    /// Read: the peer sent close_notify, an orderly end of its data.
    case closed
}

/// One TLS connection over in-memory buffers (a record BIO, see COpenSSL's shim): OpenSSL
/// never touches a socket. The caller feeds bytes received from the network with
/// `feedCiphertext`, calls `handshake()` / `readPlaintext` / `writePlaintext`, and after
/// *every* one of those calls sends the pending ciphertext (`sendPendingCiphertext`, or
/// `drainCiphertext` into an array): a read can produce output too (alerts, key updates).
///
/// Not thread-safe: use an engine from one thread or serial queue at a time. It is marked
/// `@unchecked Sendable` so that it may be handed from one queue to another.
public final class TLSEngine: @unchecked Sendable {
    public let context: TLSContext
    public var isClient: Bool { context.isClient }
    /// The name given at init (SNI and verification), if any.
    public let serverName: String?

    private let ssl: OpaquePointer
    /// Both directions: network → OpenSSL and OpenSSL → network.
    private let bio: OpaquePointer
    private let buffers: UnsafeMutablePointer<shim_record_buffers>
    private var handshakeDone = false
    /// An error found while plaintext had already been appended, reported by the next call.
    private var pendingError: TLSError?

    /// Client: `serverName` is required: a DNS name (sent as SNI and matched against the
    /// certificate) or an IP literal (matched against IP subjectAltNames, no SNI; IPv6 may be
    /// bracketed). Server: `serverName` is ignored; pass nil.
    public init(context: TLSContext, serverName: String?) throws {
        ERR_clear_error()
        guard let ssl = SSL_new(context.handle) else {
            throw TLSError.fromErrorQueue("creating a TLS connection")
        }
        do {
            try Self.attachRecordBIO(ssl, releaseWhenEmpty: !context.isClient)
            if context.isClient {
                try Self.configureClient(ssl, serverName: serverName)
            } else {
                SSL_set_accept_state(ssl)
            }
        } catch {
            SSL_free(ssl)
            throw error
        }
        self.context = context
        self.serverName = serverName
        self.ssl = ssl
        self.bio = SSL_get_rbio(ssl)
        self.buffers = shim_record_bio_buffers(bio)
    }

    deinit {
        SSL_free(ssl)   // frees both BIOs too
    }

    /// Made once for the process (never changed after: shared by every thread).
    private nonisolated(unsafe) static let recordBIOMethod: OpaquePointer? = shim_record_bio_method_new()

    /// One record BIO for both directions. A server side (thousands of idle connections, in
    /// the sandbox) frees its buffers whenever they empty; a client side (the proxy's upstream
    /// pool, busy whenever the proxy is) keeps them.
    private static func attachRecordBIO(_ ssl: OpaquePointer, releaseWhenEmpty: Bool) throws {
        guard let method = recordBIOMethod, let bio = BIO_new(method) else {
            throw TLSError.fromErrorQueue("creating the TLS record buffers")
        }
        shim_record_bio_buffers(bio).pointee.release_when_empty = releaseWhenEmpty ? 1 : 0
        SSL_set_bio(ssl, bio, bio)   // one reference, owned by the SSL from here on
    }

    private static func configureClient(_ ssl: OpaquePointer, serverName: String?) throws {
        guard var name = serverName, !name.isEmpty else {
            throw TLSError("a TLS client connection needs a server name")
        }
        if name.hasPrefix("["), name.hasSuffix("]") {
            name = String(name.dropFirst().dropLast())
        }
        SSL_set_connect_state(ssl)
        ERR_clear_error()
        if isIPLiteral(name) {
            // RFC 6066 forbids IP literals in SNI; verify against IP subjectAltNames instead.
            guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1 else {
                throw TLSError.fromErrorQueue("setting the expected IP address \(name)")
            }
        } else {
            guard shim_SSL_set_tlsext_host_name(ssl, name) == 1 else {
                throw TLSError.fromErrorQueue("setting the server name \(name)")
            }
            // "*.example.com" matches, "w*.example.com" does not (as browsers do).
            SSL_set_hostflags(ssl, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
            guard SSL_set1_host(ssl, name) == 1 else {
                throw TLSError.fromErrorQueue("setting the expected host name \(name)")
            }
        }
    }

    static func isIPLiteral(_ name: String) -> Bool {
        var address = (UInt64(0), UInt64(0))   // room for an in6_addr
        return withUnsafeMutableBytes(of: &address) { buffer in
            inet_pton(AF_INET, name, buffer.baseAddress) == 1
                || inet_pton(AF_INET6, name, buffer.baseAddress) == 1
        }
    }

    // MARK: Ciphertext in and out

    /// Bytes received from the peer. They are copied into the engine's input buffer; nothing
    /// is processed until the next `handshake()` or `readPlaintext`.
    public func feedCiphertext(_ bytes: UnsafeRawBufferPointer) {
        guard let pointer = bytes.baseAddress, bytes.count > 0 else { return }
        if shim_record_bio_feed(bio, pointer, bytes.count) == 0 {
            pendingError = pendingError ?? TLSError("out of memory buffering TLS input")
        }
    }

    public var hasPendingCiphertext: Bool {
        buffers.pointee.out_length > 0
    }

    /// Hands the pending ciphertext to `send` in place (no copy), then drops it. `send` must
    /// not call back into the engine.
    public func sendPendingCiphertext(_ send: (UnsafeRawBufferPointer) -> Void) {
        let count = buffers.pointee.out_length
        guard count > 0 else { return }
        send(UnsafeRawBufferPointer(start: buffers.pointee.out, count: count))
        shim_record_bio_consume_output(bio, count)
    }

    /// Appends all pending ciphertext to `buffer` and drops it from the engine.
    public func drainCiphertext(into buffer: inout [UInt8]) {
        sendPendingCiphertext { buffer.append(contentsOf: $0) }
    }

    // MARK: Handshake

    /// Advances the handshake with the ciphertext fed so far. Returns `.complete` once done
    /// (and on every later call), `.wantRead` when it needs more bytes from the peer. Throws
    /// on failure; drain ciphertext afterwards anyway, so the peer receives the alert.
    public func handshake() throws -> TLSProgress {
        if let error = pendingError { throw error }
        if handshakeDone { return .complete }
        clearStaleErrors()
        let result = SSL_do_handshake(ssl)
        if result == 1 {
            handshakeDone = true
            return .complete
        }
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .wantRead
        case SSL_ERROR_ZERO_RETURN:
            ERR_clear_error()
            throw TLSError("TLS handshake failed: the peer closed the connection")
        default:
            throw handshakeError()
        }
    }

    public var isHandshakeComplete: Bool { handshakeDone }

    /// The protocol ALPN settled on ("http/1.1", "h2"), nil if none.
    public var negotiatedALPN: String? {
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    private func handshakeError() -> TLSError {
        let verifyResult = SSL_get_verify_result(ssl)
        guard isClient, verifyResult != X509_V_OK else {
            return TLSError.fromErrorQueue("TLS handshake")
        }
        ERR_clear_error()
        let reason = String(cString: X509_verify_cert_error_string(verifyResult))
        return TLSError(
            "certificate verify failed: \(reason) (server name \"\(serverName ?? "")\")",
            isVerificationFailure: true)
    }

    // MARK: Application data

    /// Decrypts up to `maxBytes` (> 0) of plaintext and appends it to `buffer`, writing into
    /// the array's spare capacity (no intermediate copy). Returns how many bytes were appended
    /// and why it stopped:
    /// - `.wantRead`: all plaintext available so far was read (`count` may be 0 or more);
    ///   feed more ciphertext before calling again.
    /// - `.complete`: `maxBytes` was reached; more may be waiting, call again.
    /// - `.closed`: the peer sent close_notify after the `count` bytes returned. Later calls
    ///   return `(0, .closed)`.
    /// Throws on a protocol error, or on an error found after earlier data was returned.
    public func readPlaintext(into buffer: inout [UInt8], maxBytes: Int) throws -> (count: Int, progress: TLSProgress) {
        if let error = pendingError { throw error }
        var total = 0
        while total < maxBytes {
            // One TLS record holds at most 16 KiB of plaintext; SSL_read returns at most one.
            let chunk = min(maxBytes - total, 16 * 1024)
            var status: Int32 = 1
            clearStaleErrors()
            let read = appendUninitialized(to: &buffer, count: chunk) { space in
                var readBytes = 0
                status = SSL_read_ex(ssl, space.baseAddress, space.count, &readBytes)
                return status == 1 ? readBytes : 0
            }
            if status == 1 {
                total += read
                continue
            }
            switch SSL_get_error(ssl, status) {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
                return (total, .wantRead)
            case SSL_ERROR_ZERO_RETURN:
                return (total, .closed)
            default:
                let error = TLSError.fromErrorQueue("TLS read")
                guard total > 0 else { throw error }
                pendingError = error
                return (total, .wantRead)
            }
        }
        return (total, .complete)
    }

    /// Plaintext bytes in one TLS record (RFC 8446 §5.1, RFC 5246 §6.2.1).
    static let maxRecordPlaintext = 16384
    /// What a record adds to its plaintext at most: the 5-byte header and OpenSSL's bound on
    /// what encryption adds (SSL3_RT_MAX_ENCRYPTED_OVERHEAD: an explicit IV, a MAC or tag,
    /// padding). TLS 1.3 with AES-GCM adds 22.
    static let maxRecordOverhead = 5 + 256 + 64

    /// Encrypts all of `bytes` into TLS records (the output buffer grows as needed, so this
    /// never waits). Only valid once the handshake is complete. Drain afterwards: the ciphertext
    /// stays buffered until then, so large plaintexts are best written in pieces.
    public func writePlaintext(_ bytes: UnsafeRawBufferPointer) throws {
        if let error = pendingError { throw error }
        guard var pointer = bytes.baseAddress, bytes.count > 0 else { return }
        guard handshakeDone else { throw TLSError("TLS write before the handshake completed") }
        // Room for all of the ciphertext at once (a failure here only means growing later).
        let records = (bytes.count + Self.maxRecordPlaintext - 1) / Self.maxRecordPlaintext
        _ = shim_record_bio_reserve_output(bio, bytes.count + records * Self.maxRecordOverhead)
        var remaining = bytes.count
        while remaining > 0 {
            clearStaleErrors()
            var written = 0
            guard SSL_write_ex(ssl, pointer, remaining, &written) == 1 else {
                throw TLSError.fromErrorQueue("TLS write")
            }
            pointer += written
            remaining -= written
        }
    }

    /// Queues close_notify (drain to send it). No more plaintext may be written afterwards;
    /// the peer's remaining data can still be read.
    public func shutdown() {
        ERR_clear_error()
        if handshakeDone { _ = SSL_shutdown(ssl) }
        ERR_clear_error()
    }
}

/// Appends up to `count` bytes produced by `body` straight into `buffer`'s spare capacity.
/// `body` receives uninitialized memory of exactly `count` bytes and returns how many it
/// filled; only those become part of the array.
@inline(__always)
func appendUninitialized(
    to buffer: inout [UInt8], count: Int, _ body: (UnsafeMutableRawBufferPointer) -> Int
) -> Int {
    if #available(macOS 26, iOS 26, tvOS 26, watchOS 26, visionOS 26, *) {
        var filled = 0
        buffer.append(addingCapacity: count) { span in
            span.withUnsafeMutableBufferPointer { space, initialized in
                let start = initialized
                let region = space[start..<min(start + count, space.count)]
                filled = body(UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: region)))
                initialized = start + filled
            }
        }
        return filled
    } else {
        // Older Apple runtimes lack OutputSpan: zero-fill, fill, trim.
        let start = buffer.count
        buffer.append(contentsOf: repeatElement(0, count: count))
        let filled = buffer.withUnsafeMutableBytes { bytes in
            body(UnsafeMutableRawBufferPointer(rebasing: bytes[start...]))
        }
        buffer.removeLast(count - filled)
        return filled
    }
}

/// `SSL_get_error` reads the thread's OpenSSL error queue, which must hold nothing from an
/// earlier call. Peeking costs a fraction of `ERR_clear_error` (which wipes all 16 slots every
/// time, about 1.5% of the instructions per proxied request when called before every read and
/// write); the queue is empty almost always.
@inline(__always)
func clearStaleErrors() {
    if ERR_peek_error() != 0 { ERR_clear_error() }
}
