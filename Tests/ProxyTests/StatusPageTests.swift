import Admin
import Config
import EventLoop
import Foundation
import Proxy
import Sandbox
import Testing

/// The status page and `/status.json` on the admin listener, against the real proxy and
/// sandbox after real traffic; and the page in a real browser (headless Chromium).
@Suite struct StatusPageTests {
    /// A proxy that has served some requests, replayed one after a 401, refused a TRACE, and
    /// then got a 401 and could not get a fresh token (the IDM refuses the client): what an
    /// operator opens the page for.
    final class Scene: @unchecked Sendable {
        let harness: Harness
        let admin: AdminServer
        let holder = PrometheusRegistryHolder()
        let traceID = "trace-request-id-0001"

        init() throws {
            harness = try Harness(metrics: holder.metrics)
            admin = try AdminServer(proxy: harness.proxy, registry: holder.registry, address: SocketAddress(ip: "127.0.0.1", port: 0)!)
            admin.start()
            let client = try harness.client()
            for _ in 0..<5 { #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/trade-items?secret-query=1").status == 200) }
            harness.state.revokeAllTokens()   // the next request gets 401, a fresh token and a replay
            #expect(try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x").status == 200)
            #expect(try client.request("TRACE", "/suppliers-api-2026v1/_sandbox/echo/trace-me?q=private", headers: [("X-Request-Id", traceID)]).status == 405)
            harness.state.idmFailure = .invalidClient
            harness.state.revokeAllTokens()
            let refused = try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/sales-orders")
            #expect(refused.status == 503)
        }

        func get(_ target: String) throws -> TestClient.Response {
            try TestClient(port: admin.localAddress.port).request("GET", target)
        }

        deinit { admin.stop() }
    }

    @Test func statusJSONCarriesThePageData() throws {
        let scene = try Scene()
        var json: [String: Any] = [:]
        // Requests are accounted for just after their response is written: poll for the last one.
        #expect(eventually {
            json = (try? scene.get("/status.json").json) ?? [:]
            return ((json["errors"] as? [[String: Any]])?.count ?? 0) >= 2
        })
        #expect(json["version"] as? String == ProxyVersion.current)
        #expect(json["environment"] as? String == "staging")
        #expect(json["listen"] as? String == "127.0.0.1:\(scene.harness.port)")
        #expect((json["uptimeSeconds"] as? Int).map { $0 >= 0 } == true)

        let token = try #require(json["token"] as? [String: Any])
        #expect(token["valid"] as? Bool == false)
        // The page's own readiness check may have tried once more after the back-off.
        let failures = try #require(token["failures"] as? Int)
        #expect(failures >= 1)
        let lastFetch = try #require(token["lastFetch"] as? [String: Any])
        #expect(lastFetch["outcome"] as? String == "invalid_client")
        #expect((lastFetch["reason"] as? String)?.contains("invalid_client") == true)
        let error = try #require(token["error"] as? [String: Any])
        #expect(error["kind"] as? String == "invalid_client")
        #expect((token["recentFailures"] as? [Any])?.count == min(failures, TokenFetchHistory.capacity))
        #expect(token["lastSuccessAt"] is String)

        let upstream = try #require(json["upstream"] as? [String: Any])
        #expect((upstream["url"] as? String)?.hasPrefix("https://") == true)
        #expect(upstream["protocol"] as? String == "HTTP/2 over TLS")   // the sandbox offers h2 by ALPN
        #expect((upstream["handshakes"] as? Int ?? 0) >= 1)
        // 5, then a 401 and its replay, then a 401 whose replay found no token.
        #expect(upstream["requests"] as? Int == 8)
        #expect((upstream["reuseRatio"] as? Double).map { $0 > 0 && $0 <= 1 } == true)

        let requests = try #require(json["requests"] as? [String: Any])
        let minute = try #require(requests["lastMinute"] as? [String: Int])
        #expect(minute == ["1xx": 0, "2xx": 6, "3xx": 0, "4xx": 1, "5xx": 1])
        #expect(requests["lastHour"] as? [String: Int] == minute)
        let perSecond = try #require(requests["perSecond"] as? [String: Any])
        #expect(perSecond["seconds"] as? Int == 300)
        #expect((perSecond["2xx"] as? [Int])?.reduce(0, +) == 6)
        #expect((perSecond["2xx"] as? [Int])?.count == 300)

        let retries = try #require(json["retriesAfter401"] as? [String: Int])
        #expect(retries == ["total": 2, "succeeded": 1, "failed": 1])

        let errors = try #require(json["errors"] as? [[String: Any]])
        #expect(errors.count == 2)
        #expect(errors[0]["type"] as? String == "token-unavailable")   // newest first
        #expect(errors[0]["status"] as? Int == 503)
        #expect(errors[1]["type"] as? String == "method-not-allowed")
        #expect(errors[1]["method"] as? String == "TRACE")
        #expect(errors[1]["path"] as? String == "/suppliers-api-2026v1/_sandbox/echo/trace-me")   // no query
        #expect(errors[1]["requestId"] as? String == scene.traceID)
        #expect(json["organizations"] == nil)

        // Never a secret: not the token, the client secret or the API key.
        let text = try scene.get("/status.json").bodyString
        for secret in [SandboxClient.default.clientSecret, "sandbox-api-key", "secret-query", "private"] {
            #expect(!text.contains(secret), "status.json contains \(secret)")
        }
    }

    @Test func pageIsSelfContained() throws {
        let scene = try Scene()
        _ = eventually { ((try? scene.get("/status.json").json["errors"]) as? [Any])?.count == 2 }
        let page = try scene.get("/")
        #expect(page.status == 200)
        #expect(page.header("content-type") == "text/html; charset=utf-8")
        #expect(page.header("content-security-policy")?.contains("default-src 'none'") == true)
        let html = page.bodyString
        #expect(html.contains("<meta name=\"viewport\""))
        // Nothing loaded from elsewhere: no src or href leaving this listener.
        #expect(!html.contains("src="))
        #expect(!html.contains("http://") && !html.contains("//cdn"))
        #expect(!html.contains("https://") || html.contains("id=\"upstream-url\">https://"))
        #expect(html.contains("id=\"token-state\">no valid token"))
        #expect(html.contains("<svg id=\"requests-chart\""))
        for secret in [SandboxClient.default.clientSecret, "sandbox-api-key", "secret-query"] {
            #expect(!html.contains(secret))
        }
        let fragment = try scene.get("/?part=main")
        #expect(fragment.status == 200)
        #expect(fragment.bodyString.contains("id=\"token-state\""))
        #expect(!fragment.bodyString.contains("<html"))
        #expect(try TestClient(port: scene.admin.localAddress.port).request("POST", "/", body: []).status == 405)
    }

    @Test func organisationsAppearOnlyWhenSupplied() throws {
        let scene = try Scene()
        #expect(!(try scene.get("/").bodyString.contains("id=\"organizations\"")))
        scene.admin.organizations = { [OrganizationStatus(name: "Kwekerij <De Bloem>", waiting: 3, tooManyRequests: 2)] }
        let html = try scene.get("/").bodyString
        #expect(html.contains("id=\"organizations\""))
        #expect(html.contains("Kwekerij &lt;De Bloem&gt;"))
        let organizations = try #require(try scene.get("/status.json").json["organizations"] as? [[String: Any]])
        #expect(organizations.first?["waiting"] as? Int == 3)
        #expect(organizations.first?["tooManyRequests"] as? Int == 2)
    }

    @Test func readinessIsExportedAfterACheck() throws {
        let holder = PrometheusRegistryHolder()
        let h = try Harness(metrics: holder.metrics)
        let admin = try AdminServer(proxy: h.proxy, registry: holder.registry, address: SocketAddress(ip: "127.0.0.1", port: 0)!)
        admin.start()
        defer { admin.stop() }
        let scraper = try TestClient(port: admin.localAddress.port)
        // A scrape never waits for the IDM: it starts a check and reports the latest finished.
        #expect(eventually(timeout: 30) {
            (try? scraper.request("GET", "/metrics").bodyString.contains("\nfloriday_proxy_ready 1")) == true
        })
        let status = try scraper.request("GET", "/status.json")
        let ready = status.json["ready"] as? [String: Any]
        #expect(ready?["ready"] as? Bool == true, "\(status.bodyString.prefix(300))")
    }

    // MARK: In a browser

    static let chromium: String? = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// Headless Chromium loads the page and runs its script (virtual time lets the 5 s refresh
    /// happen at once); the DOM it ends with is what a person would see.
    @Test(.enabled(if: chromium != nil, "Chromium is not installed (Debian: apt-get install chromium)"))
    func pageRendersInABrowser() throws {
        let scene = try Scene()
        _ = eventually { ((try? scene.get("/status.json").json["errors"]) as? [Any])?.count == 2 }
        let url = "http://127.0.0.1:\(scene.admin.localAddress.port)/"
        let dom = try Self.runChromium(["--dump-dom", "--virtual-time-budget=12000", url])

        // The script ran and swapped in fresh content from /?part=main at least once.
        #expect(dom.contains("data-refreshed=\""), "the page's script did not refresh it")
        // The token state and the IDM's reason.
        #expect(dom.contains("id=\"token-state\">no valid token: fetches fail"))
        #expect(dom.contains("class=\"token-failure\""))
        #expect(dom.contains("invalid_client"))
        // The error rows: newest first, with type, method, path without query and request id.
        let rows = dom.components(separatedBy: "<tr class=\"error\">").dropFirst()
        #expect(rows.count == 2)
        #expect(rows.first?.contains("token-unavailable") == true)
        #expect(rows.last?.contains("method-not-allowed") == true)
        #expect(rows.last?.contains("/suppliers-api-2026v1/_sandbox/echo/trace-me<") == true)
        #expect(rows.last?.contains(scene.traceID) == true)
        // The chart: a 2xx path with a column per second that had requests.
        let chartStart = try #require(dom.range(of: "<svg id=\"requests-chart\""))
        let chartEnd = try #require(dom.range(of: "</svg>", range: chartStart.upperBound..<dom.endIndex))
        let chart = dom[chartStart.lowerBound..<chartEnd.upperBound]
        #expect(chart.contains("<path class=\"c2xx\" d=\"M"))
        #expect(chart.contains("<path class=\"c4xx\" d=\"M"))
        #expect(chart.contains("<path class=\"c5xx\" d=\"M"))

        // And it draws: a screenshot that is a PNG of the requested size.
        let png = NSTemporaryDirectory() + "floriday-proxy-status-\(UUID().uuidString).png"
        defer { try? FileManager.default.removeItem(atPath: png) }
        _ = try Self.runChromium(["--screenshot=\(png)", "--window-size=800,1000", "--hide-scrollbars", url])
        let image = try Data(contentsOf: URL(fileURLWithPath: png))
        #expect(image.starts(with: [0x89, 0x50, 0x4E, 0x47]))
        #expect(image.count > 10_000)
    }

    /// Runs headless Chromium with a profile of its own; standard output is returned.
    static func runChromium(_ arguments: [String]) throws -> String {
        let profile = NSTemporaryDirectory() + "floriday-proxy-chromium-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: profile) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: chromium!)
        // --no-sandbox: CI runs the tests as root, where Chromium's sandbox refuses to start.
        process.arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                             "--user-data-dir=\(profile)"] + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        // A browser that hangs must not hang the suite: a generous ceiling, then it is stopped.
        let watchdog = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 120, execute: watchdog)
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        watchdog.cancel()
        return String(decoding: data, as: UTF8.self)
    }
}

/// The ring of per-second counts behind the chart, driven with explicit seconds.
@Suite struct RequestHistoryTests {
    @Test func countsBySecondAndClass() {
        let history = RequestHistory()
        history.record(status: 200, second: 10)
        history.record(status: 204, second: 10)
        history.record(status: 503, second: 12)
        history.record(status: 0, second: 12)      // no response: not counted
        let window = history.window(seconds: 5, endingAt: 12)
        #expect(window.perSecond[1] == [0, 0, 2, 0, 0])
        #expect(window.perSecond[4] == [0, 0, 0, 0, 1])
        #expect(window.total(statusClass: 2) == 2)
        #expect(window.total(second: 2) == 2)
    }

    @Test func aSlotFromAnEarlierLapReadsAsZero() {
        let history = RequestHistory()
        history.record(status: 200, second: 5)
        history.record(status: 200, second: 5 + Int64(RequestHistory.capacity))   // same slot, an hour later
        let window = history.window(seconds: RequestHistory.capacity, endingAt: 5 + Int64(RequestHistory.capacity))
        #expect(window.total(statusClass: 2) == 1)
        #expect(history.window(seconds: 10, endingAt: 10).total(statusClass: 2) == 0)   // the old second was overwritten
    }
}
