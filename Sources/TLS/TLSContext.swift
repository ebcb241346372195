import COpenSSL

/// Shared TLS configuration: an `SSL_CTX`. OpenSSL makes an `SSL_CTX` safe to share across
/// threads once configured, and nothing here mutates it after the factory returns, hence
/// `@unchecked Sendable`. Make one per configuration and reuse it for every connection:
/// creating a client context loads the system trust store, which is slow.
public final class TLSContext: @unchecked Sendable {
    let handle: OpaquePointer
    public let isClient: Bool
    /// Server only: `h2` is among the protocols ALPN may choose.
    public var offersHTTP2: Bool { alpnSelection?.offersHTTP2 ?? false }
    /// Server only: the protocols the ALPN callback chooses from. The callback receives it as
    /// an unretained pointer, so it must live as long as `handle`; engines retain the context.
    private let alpnSelection: ALPNSelection?

    private init(handle: OpaquePointer, isClient: Bool, alpnSelection: ALPNSelection?) {
        self.handle = handle
        self.isClient = isClient
        self.alpnSelection = alpnSelection
    }

    deinit {
        SSL_CTX_free(handle)
    }

    /// A client context that verifies servers against the system trust store (which honours
    /// `SSL_CERT_FILE` / `SSL_CERT_DIR`), plus optionally extra CA certificates from a PEM
    /// file and/or a PEM string. `alpn` is offered in order of preference; empty: no ALPN.
    public static func client(
        extraCAFile: String? = nil, extraCAPEM: String? = nil, alpn: [String] = ["http/1.1"]
    ) throws -> TLSContext {
        let context = try make(method: TLS_client_method(), isClient: true, alpnSelection: nil)
        let ctx = context.handle

        ERR_clear_error()
        guard SSL_CTX_set_default_verify_paths(ctx) == 1 else {
            throw TLSError.fromErrorQueue("loading the system trust store")
        }
        if let extraCAFile {
            ERR_clear_error()
            guard SSL_CTX_load_verify_locations(ctx, extraCAFile, nil) == 1 else {
                throw TLSError.fromErrorQueue("loading CA file \(extraCAFile)")
            }
        }
        if let extraCAPEM {
            let certificates = try PEM.readCertificates(extraCAPEM, what: "extra CA PEM")
            defer { certificates.forEach { X509_free($0) } }
            let store = SSL_CTX_get_cert_store(ctx)
            for certificate in certificates {
                ERR_clear_error()
                // The store takes its own reference.
                guard X509_STORE_add_cert(store, certificate) == 1 else {
                    throw TLSError.fromErrorQueue("adding extra CA certificate")
                }
            }
        }
        // Without a verify callback, a failed verification aborts the handshake.
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)

        if !alpn.isEmpty {
            let wire = try encodeALPN(alpn)
            // Unlike almost every other OpenSSL function, this one returns 0 on success.
            guard SSL_CTX_set_alpn_protos(ctx, wire, UInt32(wire.count)) == 0 else {
                throw TLSError.fromErrorQueue("setting ALPN protocols")
            }
        }
        return context
    }

    /// A server context presenting `certificateChainPEM` (leaf first, then any intermediates)
    /// with `privateKeyPEM`. When the client offers ALPN, the first protocol of `alpn` that
    /// the client also offers is chosen; with no overlap the handshake continues without ALPN.
    public static func server(
        certificateChainPEM: String, privateKeyPEM: String, alpn: [String] = ["http/1.1"]
    ) throws -> TLSContext {
        let selection = alpn.isEmpty ? nil : ALPNSelection(wire: try encodeALPN(alpn))
        let context = try make(method: TLS_server_method(), isClient: false, alpnSelection: selection)
        let ctx = context.handle

        let chain = try PEM.readCertificates(certificateChainPEM, what: "certificate chain PEM")
        var extraCertificates = chain.dropFirst()
        defer {
            X509_free(chain[0])
            extraCertificates.forEach { X509_free($0) }
        }
        ERR_clear_error()
        guard SSL_CTX_use_certificate(ctx, chain[0]) == 1 else {
            throw TLSError.fromErrorQueue("using the server certificate")
        }
        while let certificate = extraCertificates.first {
            ERR_clear_error()
            // Takes ownership on success only.
            guard shim_SSL_CTX_add_extra_chain_cert(ctx, certificate) == 1 else {
                throw TLSError.fromErrorQueue("adding a chain certificate")
            }
            extraCertificates.removeFirst()
        }

        let key = try PEM.readPrivateKey(privateKeyPEM, what: "private key PEM")
        defer { EVP_PKEY_free(key) }
        ERR_clear_error()
        guard SSL_CTX_use_PrivateKey(ctx, key) == 1 else {
            throw TLSError.fromErrorQueue("using the private key")
        }
        guard SSL_CTX_check_private_key(ctx) == 1 else {
            throw TLSError.fromErrorQueue("checking the private key against the certificate")
        }

        if let selection {
            SSL_CTX_set_alpn_select_cb(ctx, selectALPN, Unmanaged.passUnretained(selection).toOpaque())
        }
        return context
    }

    /// Settings common to both sides.
    private static func make(
        method: OpaquePointer?, isClient: Bool, alpnSelection: ALPNSelection?
    ) throws -> TLSContext {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(method) else {
            throw TLSError.fromErrorQueue("creating a TLS context")
        }
        // Owned (and freed on a later throw) by the context from here on.
        let context = TLSContext(handle: ctx, isClient: isClient, alpnSelection: alpnSelection)
        guard shim_SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 else {
            throw TLSError.fromErrorQueue("setting the minimum TLS version")
        }
        // Renegotiation is a DoS and complexity source nobody needs for HTTP/1.1 or h2;
        // compression enables CRIME (and is compiled out of most builds anyway).
        SSL_CTX_set_options(ctx, shim_SSL_OP_NO_RENEGOTIATION | shim_SSL_OP_NO_COMPRESSION)
        // A server side (the sandbox, tests) may hold thousands of idle keep-alive connections:
        // it frees the ~34 KB of record buffers while a connection is idle, as nginx does. A
        // client side is the proxy's upstream pool, a few dozen connections that are busy
        // whenever the proxy is: there the release would cost four 16 KB malloc/free pairs per
        // proxied request (a read and a write buffer each way), so the buffers stay.
        if !isClient { _ = shim_SSL_CTX_set_mode(ctx, shim_SSL_MODE_RELEASE_BUFFERS) }
        return context
    }

    /// ALPN protocol names in wire format: each prefixed by its one-byte length.
    static func encodeALPN(_ protocols: [String]) throws -> [UInt8] {
        var wire: [UInt8] = []
        for name in protocols {
            let bytes = Array(name.utf8)
            guard (1...255).contains(bytes.count) else {
                throw TLSError("invalid ALPN protocol name \"\(name)\"")
            }
            wire.append(UInt8(bytes.count))
            wire.append(contentsOf: bytes)
        }
        return wire
    }
}

/// The server's ALPN list in wire format, in memory that never moves: OpenSSL keeps the
/// pointer the select callback returns into it.
final class ALPNSelection {
    let wire: UnsafeMutableBufferPointer<UInt8>
    let offersHTTP2: Bool

    init(wire bytes: [UInt8]) {
        var index = 0
        var h2 = false
        while index < bytes.count {
            let length = Int(bytes[index])
            if bytes[(index + 1)..<min(bytes.count, index + 1 + length)].elementsEqual("h2".utf8) { h2 = true }
            index += 1 + length
        }
        offersHTTP2 = h2
        wire = .allocate(capacity: bytes.count)
        _ = wire.initialize(from: bytes)
    }

    deinit {
        wire.deallocate()
    }
}

/// `SSL_CTX_alpn_select_cb_func`. A global function because a C callback cannot capture
/// context; `arg` is the context's `ALPNSelection`.
private func selectALPN(
    ssl: OpaquePointer?,
    out: UnsafeMutablePointer<UnsafePointer<UInt8>?>?,
    outLength: UnsafeMutablePointer<UInt8>?,
    clientList: UnsafePointer<UInt8>?,
    clientListLength: UInt32,
    arg: UnsafeMutableRawPointer?
) -> Int32 {
    guard let arg, let out, let outLength, let clientList else { return SSL_TLSEXT_ERR_NOACK }
    let selection = Unmanaged<ALPNSelection>.fromOpaque(arg).takeUnretainedValue()
    // SSL_select_next_proto is declared with non-const pointers but only reads the lists;
    // with the server list first, the server's preference order wins.
    var chosen: UnsafeMutablePointer<UInt8>?
    var chosenLength: UInt8 = 0
    let result = SSL_select_next_proto(
        &chosen, &chosenLength,
        selection.wire.baseAddress, UInt32(selection.wire.count),
        clientList, clientListLength)
    guard result == OPENSSL_NPN_NEGOTIATED, let chosen else { return SSL_TLSEXT_ERR_NOACK }
    out.pointee = UnsafePointer(chosen)
    outLength.pointee = chosenLength
    return SSL_TLSEXT_ERR_OK
}
