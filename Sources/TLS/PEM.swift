import COpenSSL

/// Reading and writing PEM through memory BIOs. Every OpenSSL object returned is owned by the
/// caller (free it with X509_free / EVP_PKEY_free).
enum PEM {
    /// All certificates in `pem`, in order. Throws when there is none or one is malformed.
    static func readCertificates(_ pem: String, what: String) throws -> [OpaquePointer] {
        try withMemoryBIO(pem) { bio in
            var certificates: [OpaquePointer] = []
            while true {
                ERR_clear_error()
                guard let certificate = PEM_read_bio_X509(bio, nil, nil, nil) else { break }
                certificates.append(certificate)
            }
            // The loop always ends on an error; only "no more PEM blocks" means success.
            let last = ERR_peek_last_error()
            let endOfInput = ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE
            if certificates.isEmpty || !endOfInput {
                certificates.forEach { X509_free($0) }
                if certificates.isEmpty && endOfInput {
                    ERR_clear_error()
                    throw TLSError("\(what): no PEM certificate found")
                }
                throw TLSError.fromErrorQueue("reading \(what)")
            }
            ERR_clear_error()
            return certificates
        }
    }

    static func readPrivateKey(_ pem: String, what: String) throws -> OpaquePointer {
        try withMemoryBIO(pem) { bio in
            ERR_clear_error()
            guard let key = PEM_read_bio_PrivateKey(bio, nil, nil, nil) else {
                throw TLSError.fromErrorQueue("reading \(what)")
            }
            return key
        }
    }

    static func write(certificate: OpaquePointer) throws -> String {
        try writeToString { PEM_write_bio_X509($0, certificate) }
    }

    /// Unencrypted PKCS#8 ("BEGIN PRIVATE KEY").
    static func write(privateKey: OpaquePointer) throws -> String {
        try writeToString { PEM_write_bio_PrivateKey($0, privateKey, nil, nil, 0, nil, nil) }
    }

    private static func writeToString(_ body: (OpaquePointer) -> Int32) throws -> String {
        ERR_clear_error()
        guard let bio = BIO_new(BIO_s_mem()) else { throw TLSError.fromErrorQueue("writing PEM") }
        defer { BIO_free(bio) }
        guard body(bio) == 1 else { throw TLSError.fromErrorQueue("writing PEM") }
        var data: UnsafeMutablePointer<CChar>?
        let length = shim_BIO_get_mem_data(bio, &data)
        guard let data, length > 0 else { throw TLSError("writing PEM produced no output") }
        return String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self)
    }

    /// A read-only BIO over the string's bytes, valid for the duration of `body`.
    private static func withMemoryBIO<T>(_ text: String, _ body: (OpaquePointer) throws -> T) throws -> T {
        var text = text
        return try text.withUTF8 { bytes in
            ERR_clear_error()
            guard let bio = BIO_new_mem_buf(bytes.baseAddress, Int32(bytes.count)) else {
                throw TLSError.fromErrorQueue("reading PEM")
            }
            defer { BIO_free(bio) }
            return try body(bio)
        }
    }
}
