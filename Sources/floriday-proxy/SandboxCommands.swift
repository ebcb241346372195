import ArgumentParser
import Config
import Dispatch
import EventLoop
import Foundation
import Logging
import Proxy
import Sandbox

extension FloridayProxy {
    struct SandboxCommand: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "sandbox", abstract: "Run a stand-in for Floriday's identity server and API.")
        @Option(help: "host:port to listen on.") var listen = "127.0.0.1:8443"
        @Flag(help: "Serve plain HTTP instead of HTTPS.") var plain = false
        @Option(help: "Where to write the sandbox's CA certificate (PEM), for the proxy's ca_file.") var caOut: String?
        @Option(help: "Seconds a token lives.") var tokenLifetime = 3600
        @Option(help: "Extra DNS name for the certificate (e.g. the Compose service name).") var hostname: [String] = []
        @Option(name: .customLong("rate-limit"), help: "Enforce Floriday's published rate limits per API key and endpoint, rates multiplied by FACTOR (1: as published); 429 past them.")
        var rateLimit: Double?
        @Flag(help: "Print the operations the sandbox serves, with scope and rate limit, and exit.") var list = false
        @Flag(help: "Offer only http/1.1 by TLS ALPN (no HTTP/2).") var http1Only = false

        func run() throws {
            if list {
                printOperations()
                return
            }
            ignoreSIGPIPE()
            guard let address = parseListen(listen) else {
                FileHandle.standardError.write(Data("sandbox: --listen: expected host:port, got \(listen)\n".utf8))
                Foundation.exit(2)
            }
            if let rateLimit, !(rateLimit > 0 && rateLimit.isFinite) {
                FileHandle.standardError.write(Data("sandbox: --rate-limit: expected a factor greater than 0, got \(rateLimit)\n".utf8))
                Foundation.exit(2)
            }
            let state = SandboxState(tokenLifetime: tokenLifetime)
            let sandbox = try SandboxServer(state: state, address: address, tls: !plain, certificateHosts: ["localhost"] + hostname,
                                            rateLimit: rateLimit.map { SandboxRateLimit(scale: $0) }, http2: !http1Only)
            if let caOut, let pem = sandbox.certificateAuthorityPEM {
                try pem.write(toFile: caOut, atomically: true, encoding: .utf8)
            }
            print("sandbox listening on \(sandbox.baseURL)" + (sandbox.isTLS ? (http1Only ? " (http/1.1)" : " (h2, http/1.1)") : ""))
            print("  issuer_url: \(sandbox.issuerURL)")
            print("  api_url:    \(sandbox.baseURL)")
            print("  client_id: \(SandboxClient.default.clientID)  client_secret: \(SandboxClient.default.clientSecret)  api_key: sandbox-api-key")
            if let caOut { print("  ca_file:    \(caOut)") }
            if let rateLimit { print("  rate limits: Floriday's published ones, rates ×\(rateLimit)") }
            runUntilSignalled { done in sandbox.stop(); done() }
        }
    }

    /// One line per operation: method, path, scopes, rate limit (as the description states it).
    static func operationLines() -> [String] {
        var lines: [String] = []
        for description in APICatalog.bundled.descriptions {
            for operation in description.operations {
                let scopes = operation.scopes.isEmpty ? "-" : operation.scopes.joined(separator: ",")
                let rate = operation.rateLimit?.description ?? "-"
                lines.append("\(operation.method)\t/\(description.family)-\(description.version)\(operation.pathTemplate)\t\(scopes)\t\(rate)")
            }
        }
        return lines
    }

    struct Demo: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start the sandbox and the proxy pointed at it, and print a curl line to try.")
        @Option(help: "host:port for the proxy.") var listen = "127.0.0.1:8080"

        func run() throws {
            ignoreSIGPIPE()
            let sandbox = try SandboxServer(address: SocketAddress(ip: "127.0.0.1", port: 0)!, tls: true)
            let caPath = NSTemporaryDirectory() + "floriday-proxy-demo-ca-\(getpid()).pem"
            try sandbox.certificateAuthorityPEM!.write(toFile: caPath, atomically: true, encoding: .utf8)
            guard let listenAddress = parseListen(listen) else {
                FileHandle.standardError.write(Data("demo: --listen: expected host:port, got \(listen)\n".utf8))
                Foundation.exit(2)
            }
            var config = ProxyConfig(clientID: SandboxClient.default.clientID, clientSecret: SandboxClient.default.clientSecret, apiKey: "sandbox-api-key")
            config.listen = HostPort(host: listenAddress.ipString, port: listenAddress.port)
            config.apiURL = try EndpointURL(sandbox.baseURL, key: "api_url")
            config.issuerURL = try EndpointURL(sandbox.issuerURL, key: "issuer_url")
            config.caFile = caPath
            // Every scope the sandbox's operations name, so each of them can be tried.
            config.scopes = SandboxClient.floridayScopes
            let logger = makeLogger(config.log)
            let proxy: ProxyServer
            do {
                proxy = try ProxyServer(config: config, logger: logger)
            } catch {
                FileHandle.standardError.write(Data("\(error)\n".utf8))
                Foundation.exit(2)
            }
            proxy.start()
            print("""
            floriday-proxy demo
              sandbox (IDM + API): \(sandbox.baseURL)
              proxy:               http://\(proxy.localAddress)

            Try it (no credentials needed: the proxy adds them):
              curl -s http://\(proxy.localAddress)/suppliers-api-2024v2/auth/key
              curl -s http://\(proxy.localAddress)/customers-api-2024v2/identities
              curl -s 'http://\(proxy.localAddress)/suppliers-api-2024v2/trade-items?limit=2'
              curl -s 'http://\(proxy.localAddress)/suppliers-api-2026v1/trade-items/sync/0?limitResult=2'

            Ctrl-C stops both.
            """)
            fflush(nil)
            runUntilSignalled { done in
                proxy.shutdown(grace: .seconds(2)) {
                    try? FileManager.default.removeItem(atPath: caPath)
                    done()
                }
            }
        }
    }
}

extension FloridayProxy.SandboxCommand {
    func printOperations() {
        print("method\tpath\tscopes\trate limit")
        for line in FloridayProxy.operationLines() { print(line) }
    }
}
