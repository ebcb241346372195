import Admin
import EventLoop
import Foundation
import Proxy
import Testing

/// `docker/grafana/floriday-proxy.json` and `docker/prometheus/alerts.yml`: every metric they
/// query is one a running proxy exports, the rules are valid, and the alerts fire when they
/// should (promtool's rule unit tests).
@Suite struct MonitoringFilesTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let dashboard = repository.appendingPathComponent("docker/grafana/floriday-proxy.json")
    static let alerts = repository.appendingPathComponent("docker/prometheus/alerts.yml")
    static let alertTests = repository.appendingPathComponent("docker/prometheus/alerts.test.yml")
    static let promtool: String? = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// `floriday_proxy_…` names in a text.
    static func metricNames(in text: String) -> Set<String> {
        let regex = try! NSRegularExpression(pattern: "floriday_proxy_[a-z0-9_]+")
        let range = NSRange(text.startIndex..., in: text)
        return Set(regex.matches(in: text, range: range).compactMap { Range($0.range, in: text).map { String(text[$0]) } })
    }

    /// Every query of the dashboard: panel targets and template variables.
    static func dashboardQueries() throws -> [String] {
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: dashboard))
        var queries: [String] = []
        func walk(_ value: Any) {
            if let dictionary = value as? [String: Any] {
                for (key, child) in dictionary {
                    if ["expr", "query", "definition"].contains(key), let text = child as? String { queries.append(text) }
                    walk(child)
                }
            } else if let array = value as? [Any] {
                array.forEach(walk)
            }
        }
        walk(object)
        return queries
    }

    @Test func dashboardImportsAnywhere() throws {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: Self.dashboard)) as? [String: Any])
        let variables = try #require((object["templating"] as? [String: Any])?["list"] as? [[String: Any]])
        let datasource = try #require(variables.first { $0["type"] as? String == "datasource" })
        #expect(datasource["query"] as? String == "prometheus")
        let name = try #require(datasource["name"] as? String)
        // Every panel (and query variable) takes its data source from the variable, none is pinned.
        let panels = try #require(object["panels"] as? [[String: Any]])
        for panel in panels where panel["type"] as? String != "row" {
            let source = panel["datasource"] as? [String: Any]
            #expect(source?["uid"] as? String == "${\(name)}", "panel \(panel["title"] ?? "?")")
            for target in panel["targets"] as? [[String: Any]] ?? [] {
                #expect((target["datasource"] as? [String: Any])?["uid"] as? String == "${\(name)}")
            }
        }
        let titles = panels.compactMap { $0["title"] as? String }
        for expected in ["Request rate by status class", "Request duration by status class (p50, p95, p99)", "Upstream duration (p50, p95, p99)",
                         "Token seconds to expiry", "Token fetches by outcome", "Retries after 401 by outcome", "Proxy errors by type",
                         "Connections", "Upstream pool: TLS handshakes and bytes"] {
            #expect(titles.contains(expected))
        }
    }

    /// Scrapes a proxy that has served requests, replayed one after a 401, refused one, and
    /// fetched tokens: then every name the dashboard and the rules use must be in the scrape.
    @Test func everyMetricUsedIsExported() throws {
        let holder = PrometheusRegistryHolder()
        let h = try Harness(metrics: holder.metrics)
        let admin = try AdminServer(proxy: h.proxy, registry: holder.registry, address: SocketAddress(ip: "127.0.0.1", port: 0)!)
        admin.start()
        defer { admin.stop() }
        let client = try h.client()
        #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x").status == 200)
        h.state.revokeAllTokens()
        #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x").status == 200)
        #expect(try client.request("TRACE", "/x").status == 405)

        let used = Self.metricNames(in: try Self.dashboardQueries().joined(separator: "\n"))
            .union(Self.metricNames(in: try String(contentsOf: Self.alerts, encoding: .utf8)))
        #expect(used.count >= 15)
        let scraper = try TestClient(port: admin.localAddress.port)
        var exported: Set<String> = []
        // The last request is accounted for just after its response: scrape until it shows.
        _ = eventually {
            let text = (try? scraper.request("GET", "/metrics").bodyString) ?? ""
            exported = Set(text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { line in
                String(line.prefix { $0 != "{" && $0 != " " })
            })
            return used.isSubset(of: exported)
        }
        for name in used.sorted() {
            #expect(exported.contains(name), "\(name) is used by the dashboard or the alert rules but not exported")
        }
    }

    @Test(.enabled(if: promtool != nil, "promtool is not installed (Debian: apt-get install prometheus)"))
    func alertRulesAreValidAndFireWhenTheyShould() throws {
        let check = try Self.run(Self.promtool!, ["check", "rules", Self.alerts.path])
        #expect(check.status == 0, "\(check.output)")
        #expect(check.output.contains("SUCCESS: 5 rules found"))
        let test = try Self.run(Self.promtool!, ["test", "rules", Self.alertTests.path])
        #expect(test.status == 0, "\(test.output)")
    }

    /// Grafana's variables replaced by what they stand for, each panel query must be PromQL
    /// that Prometheus parses: promtool checks them as recording rules.
    @Test(.enabled(if: promtool != nil, "promtool is not installed (Debian: apt-get install prometheus)"))
    func dashboardQueriesAreValidPromQL() throws {
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.dashboard)) as? [String: Any]
        let panels = object?["panels"] as? [[String: Any]] ?? []
        let expressions = panels.flatMap { ($0["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String } }
        #expect(expressions.count >= 15)
        var rules = "groups:\n  - name: dashboard\n    rules:\n"
        for (index, expression) in expressions.enumerated() {
            let promQL = expression.replacingOccurrences(of: "$__rate_interval", with: "5m")
                .replacingOccurrences(of: "$job", with: ".*").replacingOccurrences(of: "$instance", with: ".*")
            #expect(!promQL.contains("$"), "an unknown variable in \(expression)")
            // A YAML single-quoted scalar: only the quote itself is escaped (doubled).
            let quoted = "'" + promQL.replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "'", with: "''") + "'"
            rules += "      - record: dashboard_query_\(index)\n        expr: \(quoted)\n"
        }
        let file = NSTemporaryDirectory() + "floriday-proxy-dashboard-\(UUID().uuidString).yml"
        try rules.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let check = try Self.run(Self.promtool!, ["check", "rules", file])
        #expect(check.status == 0, "\(check.output)")
    }

    @Test func everyAlertHasARunbookInTheREADME() throws {
        let rules = try String(contentsOf: Self.alerts, encoding: .utf8)
        let readme = try String(contentsOf: Self.repository.appendingPathComponent("README.md"), encoding: .utf8)
        let alerts = rules.split(separator: "\n").compactMap { line -> String? in
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            return trimmed.hasPrefix("- alert: ") ? String(trimmed.dropFirst("- alert: ".count)) : nil
        }
        #expect(alerts.count == 5)
        for alert in alerts {
            #expect(rules.contains("runbook_url: \"README.md#\(alert.lowercased())\""), "\(alert) has no runbook_url")
            // GitHub's anchor for a heading "#### FloridayProxyX" is "#floridayproxyx".
            let hasSection = readme.contains("#### \(alert)\n")
            #expect(hasSection, "README has no troubleshooting section for \(alert)")
        }
    }

    static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
