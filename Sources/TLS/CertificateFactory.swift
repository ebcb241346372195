import COpenSSL
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A certificate and its private key, both PEM.
public struct PEMCertificateAndKey: Sendable {
    public var certificatePEM: String
    /// Unencrypted PKCS#8.
    public var privateKeyPEM: String

    public init(certificatePEM: String, privateKeyPEM: String) {
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
    }
}

/// Makes throwaway certificates at run time, for the built-in sandbox and for tests: a
/// self-signed CA and leaves signed by it. EC P-256 keys, SHA-256 signatures, random 127-bit
/// serials, valid from an hour ago (to tolerate clock skew) for `validDays`.
public enum CertificateFactory {
    public static func makeCertificateAuthority(
        commonName: String, validDays: Int = 3650
    ) throws -> PEMCertificateAndKey {
        let key = try generateKey()
        defer { EVP_PKEY_free(key) }
        let certificate = try newCertificate(
            commonName: commonName, publicKey: key,
            notBeforeOffset: -3600, notAfterOffset: validDays * 86_400)
        defer { X509_free(certificate) }
        // Self-signed: the issuer is the subject.
        X509_set_issuer_name(certificate, X509_get_subject_name(certificate))
        try addExtensions(to: certificate, issuer: certificate, [
            (NID_basic_constraints, "critical,CA:TRUE"),
            (NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature"),
            (NID_subject_key_identifier, "hash"),
        ])
        try sign(certificate, with: key)
        return PEMCertificateAndKey(
            certificatePEM: try PEM.write(certificate: certificate),
            privateKeyPEM: try PEM.write(privateKey: key))
    }

    /// A server (and client) certificate for `dnsNames` and `ipAddresses` (IPv4 or IPv6),
    /// signed by `ca`. At least one name is required; the first becomes the common name.
    /// `expired`: valid for `validDays` days that ended yesterday (for tests).
    public static func makeLeaf(
        signedBy ca: PEMCertificateAndKey, dnsNames: [String], ipAddresses: [String],
        validDays: Int = 30, expired: Bool = false
    ) throws -> PEMCertificateAndKey {
        guard let commonName = dnsNames.first ?? ipAddresses.first else {
            throw TLSError("a leaf certificate needs at least one DNS name or IP address")
        }
        // The subjectAltName value is a comma-separated "DNS:x,IP:y" list.
        for name in dnsNames + ipAddresses where name.isEmpty || name.contains(",") {
            throw TLSError("invalid certificate name \"\(name)\"")
        }
        let subjectAltName = (dnsNames.map { "DNS:\($0)" } + ipAddresses.map { "IP:\($0)" })
            .joined(separator: ",")

        let caCertificates = try PEM.readCertificates(ca.certificatePEM, what: "CA certificate PEM")
        defer { caCertificates.forEach { X509_free($0) } }
        let caCertificate = caCertificates[0]
        let caKey = try PEM.readPrivateKey(ca.privateKeyPEM, what: "CA private key PEM")
        defer { EVP_PKEY_free(caKey) }

        let key = try generateKey()
        defer { EVP_PKEY_free(key) }
        let day = 86_400
        let certificate = try newCertificate(
            commonName: commonName, publicKey: key,
            notBeforeOffset: expired ? -(validDays + 1) * day : -3600,
            notAfterOffset: expired ? -day : validDays * day)
        defer { X509_free(certificate) }
        X509_set_issuer_name(certificate, X509_get_subject_name(caCertificate))
        try addExtensions(to: certificate, issuer: caCertificate, [
            (NID_basic_constraints, "critical,CA:FALSE"),
            (NID_key_usage, "critical,digitalSignature"),
            (NID_ext_key_usage, "serverAuth,clientAuth"),
            (NID_subject_key_identifier, "hash"),
            (NID_authority_key_identifier, "keyid:always"),
            (NID_subject_alt_name, subjectAltName),
        ])
        try sign(certificate, with: caKey)
        return PEMCertificateAndKey(
            certificatePEM: try PEM.write(certificate: certificate),
            privateKeyPEM: try PEM.write(privateKey: key))
    }

    /// Writes `contents` (typically a PEM) to a new file readable only by this user in the
    /// temporary directory and returns its path. The caller deletes it.
    public static func writeTemporaryFile(_ contents: String, suffix: String = ".pem") throws -> String {
        var directory = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        if directory.isEmpty { directory = "/tmp" }
        if directory.hasSuffix("/") { directory.removeLast() }
        var template = Array("\(directory)/floriday-proxy-XXXXXX\(suffix)".utf8CString)
        let fd = mkstemps(&template, Int32(suffix.utf8.count))
        guard fd >= 0 else {
            throw TLSError("cannot create a temporary file in \(directory): errno \(errno)")
        }
        defer { close(fd) }
        let path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var remaining = Array(contents.utf8)[...]
        while !remaining.isEmpty {
            let written = remaining.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else {
                unlink(path)
                throw TLSError("cannot write \(path): errno \(errno)")
            }
            remaining = remaining.dropFirst(written)
        }
        return path
    }

    // MARK: Internals

    private static func generateKey() throws -> OpaquePointer {
        ERR_clear_error()
        guard let key = shim_EVP_EC_gen("P-256") else {
            throw TLSError.fromErrorQueue("generating an EC P-256 key")
        }
        return key
    }

    /// A v3 certificate with subject CN, public key, random serial and validity set;
    /// offsets are seconds from now.
    private static func newCertificate(
        commonName: String, publicKey: OpaquePointer, notBeforeOffset: Int, notAfterOffset: Int
    ) throws -> OpaquePointer {
        ERR_clear_error()
        guard let certificate = X509_new() else { throw TLSError.fromErrorQueue("creating a certificate") }
        do {
            guard X509_set_version(certificate, Int(X509_VERSION_3)) == 1 else {
                throw TLSError.fromErrorQueue("setting the certificate version")
            }
            guard let serial = BN_new() else { throw TLSError.fromErrorQueue("allocating a serial") }
            defer { BN_free(serial) }
            // 127 random bits with the top one set: positive, and always 16 bytes long.
            guard BN_rand(serial, 127, 0, 0) == 1,
                  BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(certificate)) != nil else {
                throw TLSError.fromErrorQueue("setting a random serial")
            }
            guard X509_gmtime_adj(X509_getm_notBefore(certificate), notBeforeOffset) != nil,
                  X509_gmtime_adj(X509_getm_notAfter(certificate), notAfterOffset) != nil else {
                throw TLSError.fromErrorQueue("setting the validity period")
            }
            guard X509_NAME_add_entry_by_txt(
                X509_get_subject_name(certificate), "CN", shim_MBSTRING_ASC, commonName, -1, -1, 0) == 1 else {
                throw TLSError.fromErrorQueue("setting the common name \"\(commonName)\"")
            }
            guard X509_set_pubkey(certificate, publicKey) == 1 else {
                throw TLSError.fromErrorQueue("setting the public key")
            }
            return certificate
        } catch {
            X509_free(certificate)
            throw error
        }
    }

    /// Extensions in OpenSSL's config syntax; subject and issuer must have their public keys
    /// set (for the key identifiers).
    private static func addExtensions(
        to certificate: OpaquePointer, issuer: OpaquePointer, _ extensions: [(Int32, String)]
    ) throws {
        var v3 = X509V3_CTX()
        shim_X509V3_set_ctx_nodb(&v3)
        X509V3_set_ctx(&v3, issuer, certificate, nil, nil, 0)
        for (nid, value) in extensions {
            ERR_clear_error()
            guard let ext = X509V3_EXT_nconf_nid(nil, &v3, nid, value) else {
                throw TLSError.fromErrorQueue("making extension \(String(cString: OBJ_nid2sn(nid))) = \(value)")
            }
            defer { X509_EXTENSION_free(ext) }
            guard X509_add_ext(certificate, ext, -1) == 1 else {
                throw TLSError.fromErrorQueue("adding a certificate extension")
            }
        }
    }

    private static func sign(_ certificate: OpaquePointer, with key: OpaquePointer) throws {
        ERR_clear_error()
        guard X509_sign(certificate, key, EVP_sha256()) > 0 else {
            throw TLSError.fromErrorQueue("signing the certificate")
        }
    }
}
