import TestSupport
import Testing
import TLS

@Suite struct HandshakeTests {
    @Test(arguments: ["localhost", "api.example.test", "127.0.0.1", "::1", "[::1]"])
    func succeedsWithCASignedLeaf(serverName: String) throws {
        let (client, server) = try connectedPair(serverName: serverName)
        #expect(client.isClient)
        #expect(!server.isClient)
        #expect(client.negotiatedALPN == "http/1.1")
        #expect(server.negotiatedALPN == "http/1.1")
        #expect(try client.handshake() == .complete)   // stays complete
    }

    @Test func negotiatesH2WhenBothOfferIt() throws {
        let client = try TLSContext.client(extraCAPEM: Fixtures.ca.certificatePEM, alpn: ["h2", "http/1.1"])
        let server = try Fixtures.serverContext(Fixtures.leaf, alpn: ["h2", "http/1.1"])
        let (c, s) = try connectedPair(client: client, server: server)
        #expect(c.negotiatedALPN == "h2")
        #expect(s.negotiatedALPN == "h2")
    }

    @Test func serverPreferenceAndNoOverlap() throws {
        let server = try Fixtures.serverContext(Fixtures.leaf, alpn: ["http/1.1", "h2"])
        let both = try TLSContext.client(extraCAPEM: Fixtures.ca.certificatePEM, alpn: ["h2", "http/1.1"])
        #expect(try connectedPair(client: both, server: server).client.negotiatedALPN == "http/1.1")

        // No common protocol: the handshake proceeds without ALPN.
        let h2Only = try TLSContext.client(extraCAPEM: Fixtures.ca.certificatePEM, alpn: ["h2"])
        #expect(try connectedPair(client: h2Only, server: Fixtures.server).client.negotiatedALPN == nil)

        let none = try TLSContext.client(extraCAPEM: Fixtures.ca.certificatePEM, alpn: [])
        #expect(try connectedPair(client: none, server: Fixtures.server).client.negotiatedALPN == nil)
    }

    @Test func extraCAFileIsTrusted() throws {
        let path = try CertificateFactory.writeTemporaryFile(Fixtures.ca.certificatePEM)
        defer { _ = unlinkFile(path) }
        let client = try TLSContext.client(extraCAFile: path)
        let pair = try connectedPair(client: client)
        #expect(pair.client.isHandshakeComplete && pair.server.isHandshakeComplete)
        // The same server is refused by a client without the file: the file made the difference.
        let error = tlsError { _ = try connectedPair(client: try TLSContext.client()) }
        #expect(error?.isVerificationFailure == true)
    }

    @Test func serverSendsIntermediateChain() throws {
        // The chain PEM may carry more certificates after the leaf; they go out in the
        // server's first flight, which grows by (at least about) the extra certificate's size.
        let withChain = try Fixtures.serverContext(Fixtures.leaf, chainExtra: Fixtures.ca.certificatePEM)
        let pair = try connectedPair(server: withChain)
        #expect(pair.client.isHandshakeComplete)
        let extraCertificateBytes = derLength(ofPEM: Fixtures.ca.certificatePEM)
        #expect(extraCertificateBytes > 200)
        let growth = try serverFirstFlightBytes(withChain) - serverFirstFlightBytes(Fixtures.server)
        // Signatures in the flight differ by a few bytes from one handshake to the next.
        #expect(growth >= extraCertificateBytes - 16, "first flight grew by \(growth) bytes; the extra certificate has \(extraCertificateBytes)")
    }
}

@Suite struct VerificationTests {
    @Test func unknownCA() throws {
        let client = try TLSContext.client()   // system trust store only
        let error = tlsError { _ = try connectedPair(client: client) }
        #expect(error?.isVerificationFailure == true)
        #expect(error?.message == "certificate verify failed: unable to get local issuer certificate (server name \"localhost\")")
    }

    @Test func selfSignedCAInChain() throws {
        let client = try TLSContext.client(extraCAPEM: Fixtures.otherCA.certificatePEM)
        let server = try Fixtures.serverContext(Fixtures.leaf, chainExtra: Fixtures.ca.certificatePEM)
        let error = tlsError { _ = try connectedPair(client: client, server: server) }
        #expect(error?.isVerificationFailure == true)
        #expect(error?.message.contains("self-signed certificate in certificate chain") == true)
    }

    @Test func hostnameMismatch() throws {
        let server = try Fixtures.serverContext(Fixtures.wrongNameLeaf)
        let error = tlsError { _ = try connectedPair(server: server) }
        #expect(error?.isVerificationFailure == true)
        #expect(error?.message.contains("hostname mismatch") == true)
        #expect(error?.message.contains("localhost") == true)
    }

    @Test func partialWildcardAndIPMismatch() throws {
        // "*.example.test" must not match the bare domain or a deeper name.
        for name in ["example.test", "a.b.example.test"] {
            let error = tlsError { _ = try connectedPair(serverName: name) }
            #expect(error?.message.contains("hostname mismatch") == true, "\(name)")
        }
        let error = tlsError { _ = try connectedPair(serverName: "127.0.0.2") }
        #expect(error?.isVerificationFailure == true)
        #expect(error?.message.contains("IP address mismatch") == true)
    }

    @Test func expiredCertificate() throws {
        let server = try Fixtures.serverContext(Fixtures.expiredLeaf)
        let error = tlsError { _ = try connectedPair(server: server) }
        #expect(error?.isVerificationFailure == true)
        #expect(error?.message.contains("certificate has expired") == true)
    }

    @Test func serverSeesTheClientsAlert() throws {
        let client = try TLSEngine(context: TLSContext.client(), serverName: "localhost")
        let server = try TLSEngine(context: Fixtures.server, serverName: nil)
        _ = try client.handshake()
        transfer(from: client, to: server)
        _ = try server.handshake()
        transfer(from: server, to: client)
        #expect(throws: TLSError.self) { try client.handshake() }
        transfer(from: client, to: server)
        let error = tlsError { _ = try server.handshake() }
        #expect(error?.isVerificationFailure == false)
        #expect(error?.message.contains("unknown ca") == true)
    }
}

@Suite struct DataTests {
    @Test func bothWays() throws {
        let (client, server) = try connectedPair()
        try send(Array("GET / HTTP/1.1\r\n\r\n".utf8), from: client, to: server)
        let request = try readAvailable(server)
        #expect(request.bytes == Array("GET / HTTP/1.1\r\n\r\n".utf8))
        #expect(request.progress == .wantRead)
        transfer(from: server, to: client)

        try send(Array("HTTP/1.1 200 OK\r\n\r\n".utf8), from: server, to: client)
        let response = try readAvailable(client)
        #expect(response.bytes == Array("HTTP/1.1 200 OK\r\n\r\n".utf8))
        #expect(response.progress == .wantRead)
    }

    @Test func oneMebibyteInPiecesEachWay() throws {
        let (client, server) = try connectedPair()
        let payload = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 11) }
        for (source, destination) in [(client, server), (server, client)] {
            var received: [UInt8] = []
            var offset = 0
            while offset < payload.count {
                let end = min(offset + 50_000, payload.count)   // not a multiple of the record size
                try payload[offset..<end].withUnsafeBytes { try source.writePlaintext($0) }
                transfer(from: source, to: destination)
                let (bytes, progress) = try readAvailable(destination, maxBytes: 8_000)
                #expect(progress == .wantRead)
                received += bytes
                offset = end
            }
            #expect(received.count == payload.count)
            #expect(received == payload)
        }
    }

    @Test func maxBytesIsRespected() throws {
        let (client, server) = try connectedPair()
        try send([UInt8](repeating: 7, count: 40_000), from: client, to: server)
        var buffer: [UInt8] = [1, 2, 3]   // appended to, not replaced
        let first = try server.readPlaintext(into: &buffer, maxBytes: 1_000)
        #expect(first.count == 1_000)
        #expect(first.progress == .complete)
        #expect(buffer.count == 1_003)
        #expect(buffer.prefix(3) == [1, 2, 3])
        let rest = try readAvailable(server)
        #expect(rest.bytes.count == 39_000)
        #expect(try server.readPlaintext(into: &buffer, maxBytes: 1_000) == (0, .wantRead))
    }

    @Test func closeNotifyIsSeenAsClosed() throws {
        let (client, server) = try connectedPair()
        try client.writePlaintext(UnsafeRawBufferPointer(start: nil, count: 0))   // no-op
        try Array("last words".utf8).withUnsafeBytes { try client.writePlaintext($0) }
        client.shutdown()
        #expect(client.hasPendingCiphertext)
        transfer(from: client, to: server)
        #expect(!client.hasPendingCiphertext)
        let (bytes, progress) = try readAvailable(server)
        #expect(bytes == Array("last words".utf8))
        #expect(progress == .closed)
        var buffer: [UInt8] = []
        #expect(try server.readPlaintext(into: &buffer, maxBytes: 100) == (0, .closed))

        // Half-close: the server can still answer, and then close too.
        try send(Array("bye".utf8), from: server, to: client)
        server.shutdown()
        transfer(from: server, to: client)
        let reply = try readAvailable(client)
        #expect(reply.bytes == Array("bye".utf8))
        #expect(reply.progress == .closed)
    }

    @Test func writeBeforeHandshakeThrows() throws {
        let client = try TLSEngine(context: Fixtures.trustingClient, serverName: "localhost")
        #expect(throws: TLSError.self) {
            try Array("x".utf8).withUnsafeBytes { try client.writePlaintext($0) }
        }
        client.shutdown()   // harmless before the handshake
    }
}

@Suite struct GarbageTests {
    @Test func garbageHandshakeThrows() throws {
        let server = try TLSEngine(context: Fixtures.server, serverName: nil)
        Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8).withUnsafeBytes { server.feedCiphertext($0) }
        let error = tlsError { _ = try server.handshake() }
        #expect(error?.isVerificationFailure == false)
        #expect(error?.message.hasPrefix("TLS handshake failed: ") == true)
    }

    @Test func randomBytesNeverCrash() throws {
        var generator = SeededGenerator(printingSeedFor: "randomBytesNeverCrash")
        for length in [1, 5, 6, 100, 517, 5_000, 20_000] {
            for _ in 0..<5 {
                let server = try TLSEngine(context: Fixtures.server, serverName: nil)
                var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
                if length > 3 { bytes[0] = 0x16; bytes[1] = 0x03; bytes[2] = 0x01 }   // look like a handshake record
                bytes.withUnsafeBytes { server.feedCiphertext($0) }
                do {
                    #expect(try server.handshake() == .wantRead)   // possible: a record still incomplete
                } catch {
                    #expect(error is TLSError)
                }
                var out: [UInt8] = []
                server.drainCiphertext(into: &out)
            }
        }
    }

    @Test func corruptedRecordAfterHandshakeThrows() throws {
        let (client, server) = try connectedPair()
        try Array("hello".utf8).withUnsafeBytes { try client.writePlaintext($0) }
        var record: [UInt8] = []
        client.drainCiphertext(into: &record)
        record[record.count - 1] ^= 0xFF   // break the AEAD tag
        record.withUnsafeBytes { server.feedCiphertext($0) }
        let error = tlsError { _ = try readAvailable(server) }
        #expect(error?.message.hasPrefix("TLS read failed: ") == true)
    }
}

@Suite struct ConfigurationErrorTests {
    @Test func badInputsThrow() throws {
        let missingFile = tlsError { _ = try TLSContext.client(extraCAFile: "/nonexistent/ca.pem") }
        #expect(missingFile?.message == "loading CA file /nonexistent/ca.pem failed: No such file or directory")
        #expect(throws: TLSError.self) { try TLSContext.client(extraCAPEM: "not a pem") }
        #expect(throws: TLSError.self) { try TLSContext.client(alpn: [""]) }
        #expect(throws: TLSError.self) {
            try TLSContext.server(certificateChainPEM: "", privateKeyPEM: Fixtures.leaf.privateKeyPEM)
        }
        #expect(throws: TLSError.self) {
            // Key of another certificate.
            try TLSContext.server(
                certificateChainPEM: Fixtures.leaf.certificatePEM, privateKeyPEM: Fixtures.ca.privateKeyPEM)
        }
        #expect(throws: TLSError.self) { try TLSEngine(context: Fixtures.trustingClient, serverName: nil) }
        #expect(throws: TLSError.self) {
            try CertificateFactory.makeLeaf(signedBy: Fixtures.ca, dnsNames: [], ipAddresses: [])
        }
        #expect(throws: TLSError.self) {
            try CertificateFactory.makeLeaf(signedBy: Fixtures.ca, dnsNames: ["a,b"], ipAddresses: [])
        }
    }

    @Test func generatedPEMs() throws {
        #expect(Fixtures.ca.certificatePEM.hasPrefix("-----BEGIN CERTIFICATE-----\n"))
        #expect(Fixtures.leaf.privateKeyPEM.hasPrefix("-----BEGIN PRIVATE KEY-----\n"))
        #expect(Fixtures.leaf.certificatePEM != Fixtures.wrongNameLeaf.certificatePEM)
    }
}
