import EventLoop
import Foundation
import Redis
import TestSupport
import TLS
import Testing

/// rediss://: a real redis-server speaking only TLS, with a certificate from a test CA.
@Suite(.serialized) struct RedisTLSTests {
    static let ca = try! CertificateFactory.makeCertificateAuthority(commonName: "floriday-proxy Redis test CA")
    let group = EventLoopGroup(loopCount: 1)

    struct Files {
        let certificate: String, key: String, ca: String
        func remove() { for path in [certificate, key, ca] { try? FileManager.default.removeItem(atPath: path) } }
    }

    func files(names: [String] = ["localhost"], ips: [String] = ["127.0.0.1"]) throws -> Files {
        let leaf = try CertificateFactory.makeLeaf(signedBy: Self.ca, dnsNames: names, ipAddresses: ips)
        return Files(certificate: try CertificateFactory.writeTemporaryFile(leaf.certificatePEM),
                     key: try CertificateFactory.writeTemporaryFile(leaf.privateKeyPEM),
                     ca: try CertificateFactory.writeTemporaryFile(Self.ca.certificatePEM))
    }

    func client(_ server: RedisServer, host: String, trust: Bool) throws -> RedisClient {
        let loop = group.loops[0]
        let endpoint = try RedisEndpoint(url: "rediss://:\(server.password ?? "")@\(host):\(server.port)/0")
        let context = try TLSContext.client(extraCAPEM: trust ? Self.ca.certificatePEM : nil, alpn: [])
        return onLoop(loop) { RedisClient(endpoint: endpoint, loop: loop, timeout: .seconds(5), reconnectDelay: .zero, tls: context) }
    }

    @Test func commandsAndTheBucketScriptOverTLS() throws {
        let f = try files()
        defer { f.remove() }
        let server = try RedisServer(password: "tls-pass", tls: (f.certificate, f.key, f.ca))
        let client = try client(server, host: "localhost", trust: true)
        #expect(client.call("SET", "k", String(repeating: "x", count: 300_000)) == .success(.status("OK")))
        guard case .success(.bulk(let value)) = client.call("GET", "k") else {
            Issue.record("a large value must come back through the tunnel")
            return
        }
        #expect(value.count == 300_000)
        let buckets = onLoop(client.loop) { SharedTokenBuckets(client: client) }
        #expect(buckets.take("t", rate: 1, burst: 2, maxWait: .zero) == .success(.granted(wait: .zero)))
        // Killed and back: the tunnel is made again.
        server.stop()
        guard case .failure = client.call("PING") else {
            Issue.record("with the server gone, PING must fail")
            return
        }
        try server.start()
        #expect(eventually { client.call("PING") == .success(.status("PONG")) })
        onLoop(client.loop) { client.close() }
    }

    @Test func anUntrustedCertificateIsAConnectError() throws {
        let f = try files()
        defer { f.remove() }
        let server = try RedisServer(tls: (f.certificate, f.key, f.ca))
        let client = try client(server, host: "localhost", trust: false)
        guard case .failure(.connect(let why)) = client.call("PING") else {
            Issue.record("a server the client does not trust must be refused")
            return
        }
        #expect(why.contains("TLS"))
        onLoop(client.loop) { client.close() }
    }

    @Test func aPlainClientIsNotServedByATLSPort() throws {
        let f = try files()
        defer { f.remove() }
        let server = try RedisServer(tls: (f.certificate, f.key, f.ca))
        let loop = group.loops[0]
        let plain = try RedisClient.make("redis://127.0.0.1:\(server.port)/0", loop: loop, timeout: .seconds(2))
        guard case .failure = plain.call("PING") else {
            Issue.record("a plain client must not get an answer from a TLS port")
            return
        }
        onLoop(loop) { plain.close() }
    }
}
