import Admin
import ArgumentParser
import Config
import Dispatch
import EventLoop
import Foundation
import Logging
import Proxy
import Upstream

extension FloridayProxy {
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Serve (the default). SIGHUP reloads the configuration; SIGINT/SIGTERM stop gracefully.")
        @OptionGroup var options: ConfigOption

        func run() throws {
            ignoreSIGPIPE()
            let config = options.load()
            let logger = makeLogger(config.log)
            let (metrics, registry) = AdminServer.makeMetrics()
            let proxy: ProxyServer
            var admin: AdminServer?
            do {
                proxy = try ProxyServer(config: config, logger: logger, metrics: metrics)
                if let adminListen = config.adminListen {
                    do {
                        admin = try AdminServer(proxy: proxy, registry: registry, address: ProxyServer.resolveListen(host: adminListen.host, port: adminListen.port))
                    } catch {
                        throw ProxyStartError(key: "admin_listen", message: "cannot listen on \(adminListen): \(error)")
                    }
                }
            } catch {
                fail("\(error)")
            }
            // The status page's line per organisation: requests waiting for their turn, 429s.
            admin?.organizations = { [proxy] in
                proxy.organizationStatus().map { OrganizationStatus(name: $0.name, waiting: $0.waiting, tooManyRequests: $0.tooManyRequests) }
            }
            proxy.start()
            admin?.start()
            var metadata: Logger.Metadata = [
                "listen": "\(proxy.localAddress)", "environment": "\(config.environment.rawValue)",
                "upstream": "\(config.apiURL)", "issuer": "\(config.issuerURL)",
            ]
            if let admin { metadata["admin"] = "\(admin.localAddress)" }
            logger.notice("started", metadata: metadata)
            if !proxy.localAddress.isLoopback && proxy.isOpenToAnyClient {
                logger.warning("listening beyond loopback without allow_clients or inbound_auth: anyone who can reach \(proxy.localAddress) can act as your organisation")
            }
            let reload = onSIGHUP {
                do {
                    let restartNeeded = try proxy.reload(options.loadOrThrow())
                    if !restartNeeded.isEmpty {
                        logger.warning("config.reload.partial", metadata: ["needs_restart": "\(restartNeeded.joined(separator: ","))"])
                    }
                } catch {
                    logger.error("config.reload.failed", metadata: ["error": "\(error)", "kept": "previous configuration"])
                }
            }
            withExtendedLifetime(reload) {
                runUntilSignalled { done in
                    logger.notice("stopping", metadata: ["grace_s": "\(Int(config.shutdownGrace.seconds))"])
                    admin?.stop()
                    proxy.shutdown(grace: proxy.config.shutdownGrace) {
                        logger.notice("stopped")
                        done()
                    }
                }
            }
        }
    }

    struct CheckConfig: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "check-config", abstract: "Print the effective configuration (secrets as ***) or the error.")
        @OptionGroup var options: ConfigOption

        func run() throws {
            print(options.load().renderedYAML(), terminator: "")
        }
    }

    struct Healthcheck: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Exit 0 when the admin endpoint answers 200 (for container health checks; no curl needed).")
        @Option(help: "The URL to check.") var url = "http://127.0.0.1:9901/healthz"
        @Option(help: "Seconds to wait.") var timeout = 3

        func run() throws {
            guard let target = AbsoluteURL(url), !target.isTLS else { fail("healthcheck: --url: expected an http:// URL, got \(url)") }
            let result = OneShot.fetch(url: target, method: "GET", headers: [], tls: nil, timeout: .seconds(timeout))
            switch result {
            case .success(let response) where response.head.status == 200:
                print("ok")
            case .success(let response):
                fail("unhealthy: HTTP \(response.head.status)", status: 1)
            case .failure(let error):
                fail("unhealthy: \(error)", status: 1)
            }
        }
    }
}
