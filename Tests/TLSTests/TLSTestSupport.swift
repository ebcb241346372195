import Foundation
import TLS
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Certificates made once per test run: key generation and signing are cheap, but there is
/// no reason to repeat them in every test.
enum Fixtures {
    static let ca = try! CertificateFactory.makeCertificateAuthority(commonName: "Test CA")
    static let otherCA = try! CertificateFactory.makeCertificateAuthority(commonName: "Other CA")
    static let leaf = try! CertificateFactory.makeLeaf(
        signedBy: ca, dnsNames: ["localhost", "*.example.test"], ipAddresses: ["127.0.0.1", "::1"])
    static let wrongNameLeaf = try! CertificateFactory.makeLeaf(
        signedBy: ca, dnsNames: ["other.example"], ipAddresses: ["10.9.9.9"])
    static let expiredLeaf = try! CertificateFactory.makeLeaf(
        signedBy: ca, dnsNames: ["localhost"], ipAddresses: [], expired: true)

    static let trustingClient = try! TLSContext.client(extraCAPEM: ca.certificatePEM)
    static let server = try! serverContext(leaf)

    static func serverContext(
        _ identity: PEMCertificateAndKey, chainExtra: String = "", alpn: [String] = ["http/1.1"]
    ) throws -> TLSContext {
        try TLSContext.server(
            certificateChainPEM: identity.certificatePEM + chainExtra,
            privateKeyPEM: identity.privateKeyPEM, alpn: alpn)
    }
}

/// Moves all pending ciphertext from `source` to `destination`; true if there was any.
@discardableResult
func transfer(from source: TLSEngine, to destination: TLSEngine) -> Bool {
    var bytes: [UInt8] = []
    source.drainCiphertext(into: &bytes)
    bytes.withUnsafeBytes { destination.feedCiphertext($0) }
    return !bytes.isEmpty
}

/// The ciphertext a server sends in answer to a client's first message (ServerHello through
/// the server's Finished in TLS 1.3: its certificates included).
func serverFirstFlightBytes(_ serverContext: TLSContext) throws -> Int {
    let client = try TLSEngine(context: Fixtures.trustingClient, serverName: "localhost")
    let server = try TLSEngine(context: serverContext, serverName: nil)
    _ = try client.handshake()
    transfer(from: client, to: server)
    _ = try server.handshake()
    var flight: [UInt8] = []
    server.drainCiphertext(into: &flight)
    return flight.count
}

/// Bytes of the DER encoding inside a one-certificate PEM.
func derLength(ofPEM pem: String) -> Int {
    let body = pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
    return Data(base64Encoded: body)?.count ?? 0
}

/// Runs both handshakes to completion in memory. A failure on either side throws that side's
/// error; the failing side's alert is still delivered to the other.
func handshake(_ client: TLSEngine, _ server: TLSEngine) throws {
    for _ in 0..<10 {
        do {
            _ = try client.handshake()
        } catch {
            transfer(from: client, to: server)
            throw error
        }
        transfer(from: client, to: server)
        do {
            _ = try server.handshake()
        } catch {
            transfer(from: server, to: client)
            throw error
        }
        transfer(from: server, to: client)
        if client.isHandshakeComplete && server.isHandshakeComplete { return }
    }
    throw TLSError("handshake did not finish")
}

func connectedPair(
    client clientContext: TLSContext = Fixtures.trustingClient,
    server serverContext: TLSContext = Fixtures.server,
    serverName: String = "localhost"
) throws -> (client: TLSEngine, server: TLSEngine) {
    let client = try TLSEngine(context: clientContext, serverName: serverName)
    let server = try TLSEngine(context: serverContext, serverName: nil)
    try handshake(client, server)
    return (client, server)
}

/// Reads everything `engine` can decrypt so far.
func readAvailable(_ engine: TLSEngine, maxBytes: Int = 64 * 1024) throws -> (bytes: [UInt8], progress: TLSProgress) {
    var bytes: [UInt8] = []
    while true {
        let (_, progress) = try engine.readPlaintext(into: &bytes, maxBytes: maxBytes)
        if progress != .complete { return (bytes, progress) }
    }
}

func send(_ bytes: [UInt8], from source: TLSEngine, to destination: TLSEngine) throws {
    try bytes.withUnsafeBytes { try source.writePlaintext($0) }
    transfer(from: source, to: destination)
}

/// The error `body` throws, as a TLSError (other errors are wrapped); nil if none.
func tlsError(_ body: () throws -> Void) -> TLSError? {
    do {
        try body()
        return nil
    } catch let error as TLSError {
        return error
    } catch {
        return TLSError("unexpected error type: \(error)")
    }
}

@discardableResult
func unlinkFile(_ path: String) -> Bool {
    unlink(path) == 0
}
