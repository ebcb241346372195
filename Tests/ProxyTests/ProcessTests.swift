import EventLoop
import Foundation
import Sandbox
import TestSupport
import Testing

/// The executable as users run it: exit codes, output, signals, and memory that stays flat
/// while 50 MiB bodies stream through.
@Suite(.serialized) struct ProcessTests {
    static var binary: String {
        if let override = ProcessInfo.processInfo.environment["FLORIDAY_PROXY_BIN"] { return override }
        let testBinary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        // .build/<triple>/debug/<package>PackageTests.xctest → .build/<triple>/debug/floriday-proxy
        var directory = testBinary.deletingLastPathComponent()
        if directory.lastPathComponent == "MacOS" { directory = directory.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent() }
        return directory.appendingPathComponent("floriday-proxy").path
    }

    struct Outcome { var status: Int32; var stdout: String; var stderr: String }

    /// `environment` plus the sanitizer options the tests run with, if any (`make asan`), so a
    /// sanitized child is checked the same way; its reports need the symbolizer to name
    /// functions (suppressions match names), which the child's own PATH may not reach.
    static func childEnvironment(_ environment: [String: String]) -> [String: String] {
        let parent = ProcessInfo.processInfo.environment
        var result = environment
        for key in ["ASAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS", "ASAN_SYMBOLIZER_PATH", "TSAN_SYMBOLIZER_PATH"] {
            if let value = parent[key] { result[key] = value }
        }
        if parent["ASAN_OPTIONS"] != nil || parent["LSAN_OPTIONS"] != nil || parent["TSAN_OPTIONS"] != nil,
           let symbolizer = (parent["PATH"] ?? "").split(separator: ":").map({ $0 + "/llvm-symbolizer" })
               .first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
            if result["ASAN_SYMBOLIZER_PATH"] == nil { result["ASAN_SYMBOLIZER_PATH"] = symbolizer }
            if result["TSAN_SYMBOLIZER_PATH"] == nil { result["TSAN_SYMBOLIZER_PATH"] = symbolizer }
        }
        return result
    }

    static func run(_ arguments: [String], environment: [String: String] = [:], timeout: Double = 30) throws -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        process.environment = childEnvironment(environment.merging(["PATH": "/usr/bin:/bin"]) { a, _ in a })
        let out = PipeDrain(), err = PipeDrain()
        process.standardOutput = out.pipe
        process.standardError = err.pipe
        try process.run()
        out.start()
        err.start()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return Outcome(status: process.terminationStatus, stdout: out.text, stderr: err.text)
    }

    static let credentials = ["FLORIDAY_CLIENT_ID": "id-123", "FLORIDAY_CLIENT_SECRET": "s3cr3t-value", "FLORIDAY_API_KEY": "k3y-value"]

    static func writeTemp(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "floriday-proxy-test-\(UUID().uuidString).yaml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func checkConfigPrintsTheEffectiveConfigurationWithoutSecrets() throws {
        let outcome = try Self.run(["check-config"], environment: Self.credentials)
        #expect(outcome.status == 0)
        #expect(outcome.stdout.contains("api_url: https://api.staging.floriday.io"))
        #expect(outcome.stdout.contains("client_id: id-123"))
        #expect(outcome.stdout.contains("***"))
        #expect(!outcome.stdout.contains("s3cr3t-value"))
        #expect(!outcome.stdout.contains("k3y-value"))
    }

    @Test func theDocumentedExampleFileLoads() throws {
        let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("proxy.yaml").path
        let outcome = try Self.run(["check-config", "--config", example], environment: Self.credentials)
        #expect(outcome.status == 0, "\(outcome.stderr)")
    }

    @Test(arguments: [
        ("timeouts: { conect: 5s }\n", "timeouts.conect"),
        ("retry_body_limit: lots\n", "retry_body_limit"),
        ("api_url: ftp://x\n", "api_url"),
        ("environment: live\napi_url: https://api.staging.floriday.io\n", "api_url"),
    ])
    func badConfigurationStopsWithOneLineNamingTheKey(yaml: String, key: String) throws {
        let path = try Self.writeTemp(yaml)
        defer { try? FileManager.default.removeItem(atPath: path) }
        for command in ["check-config", "run"] {
            let outcome = try Self.run([command, "--config", path], environment: Self.credentials)
            #expect(outcome.status == 2)
            let lines = outcome.stderr.split(separator: "\n")
            #expect(lines.count == 1, "\(outcome.stderr)")
            #expect(lines.first?.contains(key) == true, "\(outcome.stderr)")
            #expect(!outcome.stderr.contains("s3cr3t-value"))
        }
    }

    @Test func missingCredentialIsNamed() throws {
        let outcome = try Self.run(["run"], environment: ["FLORIDAY_CLIENT_ID": "x", "FLORIDAY_API_KEY": "y"])
        #expect(outcome.status == 2)
        #expect(outcome.stderr.contains("client_secret"))
    }

    /// Runs the proxy binary against an in-process sandbox; returns the process and its port.
    /// `readLogs: false` leaves standard error unread (a stuck log collector).
    static func startProxy(sandbox: SandboxServer, caFile: String, extra: String = "", environment: [String: String] = [:],
                           readLogs: Bool = true) throws -> (Process, Int, PipeDrain) {
        let port = FailureTests.freePort()
        // No admin listener unless asked for: its default port may be taken on a shared machine.
        let admin = extra.contains("admin_listen") ? "" : "admin_listen: off"
        let config = try writeTemp("""
            listen: 127.0.0.1:\(port)
            api_url: \(sandbox.baseURL)
            issuer_url: \(sandbox.issuerURL)
            ca_file: \(caFile)
            \(admin)
            \(extra)
            """)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["run", "--config", config]
        process.environment = childEnvironment(["FLORIDAY_CLIENT_ID": SandboxClient.default.clientID, "FLORIDAY_CLIENT_SECRET": SandboxClient.default.clientSecret, "FLORIDAY_API_KEY": "sandbox-api-key"])
            .merging(environment) { _, given in given }
        let err = PipeDrain()
        process.standardError = err.pipe
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        if readLogs { err.start() }
        #expect(eventually(timeout: 10) { (try? TestClient(port: port)) != nil })
        return (process, port, err)
    }

    /// Whether these tests (and so the binary, built alongside) run under AddressSanitizer.
    static var addressSanitized: Bool { dlsym(nil, "__asan_init") != nil }

    static func highWaterRSS(_ pid: Int32) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return -1 }
        return Int(line.split(separator: " ").dropFirst().first(where: { Int($0) != nil }) ?? "0")! * 1024
    }

    @Test func servesLogsAStartupLineAndStopsCleanlyOnSIGTERM() throws {
        let sandbox = try SandboxServer(address: SocketAddress(ip: "127.0.0.1", port: 0)!, tls: true)
        defer { sandbox.stop() }
        let caFile = try CertificateFile(sandbox.certificateAuthorityPEM!)
        let (process, port, err) = try Self.startProxy(sandbox: sandbox, caFile: caFile.path)
        let response = try TestClient(port: port).request("GET", "/suppliers-api-2024v2/auth/key")
        #expect(response.status == 200)
        process.terminate()   // SIGTERM
        process.waitUntilExit()
        let logs = err.text
        #expect(process.terminationStatus == 0, "\(logs)")
        #expect(logs.contains("started"))
        #expect(logs.contains("listen=127.0.0.1:\(port)"))
        #expect(logs.contains("environment=staging"))
        #expect(logs.contains("upstream=\(sandbox.baseURL)"))
        #expect(logs.contains("status=200"))
        #expect(!logs.contains(SandboxClient.default.clientSecret))
        #expect(!logs.contains("sandbox-api-key"))
    }

    /// SIGTERM while 16 clients keep their connections busy, through the HTTP/2 upstream
    /// (the sandbox offers h2) and through HTTP/1.1 connections: the process exits with status
    /// 0, every response that was started is complete and right, and every client hears the
    /// end: its last response says `Connection: close`, or its connection closes before a
    /// byte of an answer (a request that crossed the close; RFC 9112 §9.3.1 lets it be
    /// retried), and the API processed exactly the requests that were answered. Nothing hangs,
    /// nothing is cut short.
    @Test(arguments: ["auto", "never"])
    func sigtermUnderLoadExitsCleanlyAndCutsNoResponseShort(upstreamHTTP2: String) throws {
        let sandbox = try SandboxServer(address: SocketAddress(ip: "127.0.0.1", port: 0)!, tls: true)
        defer { sandbox.stop() }
        let caFile = try CertificateFile(sandbox.certificateAuthorityPEM!)
        let (process, port, err) = try Self.startProxy(sandbox: sandbox, caFile: caFile.path,
                                                       extra: "upstream_http2: \(upstreamHTTP2)\nrate_limit: { enabled: false }\nshutdown_grace: 10s")
        defer { if process.isRunning { process.terminate(); process.waitUntilExit() } }

        struct Tally { var answered = 0; var closedWithConnectionClose = 0; var unanswered = 0; var defects: [String] = [] }
        let tally = Locked(Tally())
        let clientsDone = DispatchGroup()
        let body = [UInt8](repeating: UInt8(ascii: "x"), count: 4096)
        for clientIndex in 0..<16 {
            clientsDone.enter()
            Thread.detachNewThread {
                defer { clientsDone.leave() }
                guard let client = try? TestClient(port: port, timeout: 20) else {
                    tally.withLock { $0.defects.append("client \(clientIndex) could not connect") }
                    return
                }
                for requestIndex in 0... {
                    let method = requestIndex % 2 == 0 ? "GET" : "POST"
                    do {
                        let response = try client.request(method, "/suppliers-api-2024v2/_sandbox/echo/load/\(clientIndex)/\(requestIndex)",
                                                          body: method == "POST" ? body : nil)
                        let json = response.json
                        let right = response.status == 200
                            && json["target"] as? String == "/suppliers-api-2024v2/_sandbox/echo/load/\(clientIndex)/\(requestIndex)"
                            && json["bodyBytes"] as? Int == (method == "POST" ? body.count : 0)
                        if !right { tally.withLock { $0.defects.append("\(method) \(clientIndex)/\(requestIndex): \(response.status) \(response.bodyString.prefix(200))") } }
                        tally.withLock { $0.answered += 1 }
                        if response.header("connection")?.lowercased() == "close" {
                            // Recorded in the tally: an expectation on this thread would be no test's.
                            let closed = client.isClosedByPeer()
                            tally.withLock {
                                $0.closedWithConnectionClose += 1
                                if !closed { $0.defects.append("client \(clientIndex): still open after Connection: close") }
                            }
                            return
                        }
                    } catch let failure as TestClient.Failure where failure.beforeAnyResponseByte {
                        tally.withLock { $0.unanswered += 1 }
                        return
                    } catch {
                        tally.withLock { $0.defects.append("\(method) \(clientIndex)/\(requestIndex): \(error)") }
                        return
                    }
                }
            }
        }
        // Under way: a few hundred requests answered, then the signal.
        #expect(eventually(timeout: 60) { tally.withLock { $0.answered } >= 300 })
        process.terminate()   // SIGTERM
        #expect(clientsDone.wait(timeout: .now() + 30) == .success, "a client was still waiting 30 s after SIGTERM")
        let deadline = Date().addingTimeInterval(30)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        #expect(!process.isRunning, "still running 30 s after SIGTERM")
        process.waitUntilExit()
        let outcome = tally.withLock { $0 }
        #expect(process.terminationStatus == 0, "exit status \(process.terminationStatus): \(err.text.suffix(2000))")
        #expect(outcome.defects.isEmpty, "\(outcome.defects.prefix(5))")
        #expect(outcome.closedWithConnectionClose + outcome.unanswered == 16, "\(outcome)")
        #expect(outcome.answered >= 300)
        // Every request the API processed was answered: none was forwarded and then dropped.
        #expect(sandbox.state.apiRequests == outcome.answered, "API processed \(sandbox.state.apiRequests), clients got \(outcome.answered)")
    }

    /// Several organisations in the executable as shipped: each request goes out with its
    /// organisation's key, and the admin listener's status page, status.json and /metrics name
    /// every organisation (the wiring `run` does between proxy and admin), never a key.
    @Test func organisationsReachTheUpstreamAndTheStatusPage() throws {
        let sandbox = try SandboxServer(address: SocketAddress(ip: "127.0.0.1", port: 0)!, tls: true)
        defer { sandbox.stop() }
        let growerKey = "grower-a-key-7f3e", traderKey = "trader-b-key-91c2"
        sandbox.state.apiKeys = [growerKey, traderKey]
        let caFile = try CertificateFile(sandbox.certificateAuthorityPEM!)
        let adminPort = FailureTests.freePort()
        let (process, port, err) = try Self.startProxy(sandbox: sandbox, caFile: caFile.path, extra: """
            admin_listen: 127.0.0.1:\(adminPort)
            organizations: { grower-a: { api_key: "${GROWER_A_KEY}" }, trader-b: { api_key: "${TRADER_B_KEY}" } }
            """, environment: ["GROWER_A_KEY": growerKey, "TRADER_B_KEY": traderKey, "FLORIDAY_API_KEY": ""])
        defer { if process.isRunning { process.terminate(); process.waitUntilExit() } }

        let client = try TestClient(port: port)
        let byPrefix = try client.request("GET", "/org/grower-a/suppliers-api-2024v2/_sandbox/echo/prefix")
        #expect(byPrefix.status == 200, "\(byPrefix.bodyString)")
        #expect(byPrefix.json["target"] as? String == "/suppliers-api-2024v2/_sandbox/echo/prefix")
        #expect((byPrefix.json["headers"] as? [String: Any])?["x-api-key"] as? String == growerKey)
        let byHeader = try client.request("GET", "/suppliers-api-2024v2/_sandbox/echo/header", headers: [("X-Floriday-Organization", "trader-b")])
        #expect(byHeader.status == 200, "\(byHeader.bodyString)")
        let echoed = byHeader.json["headers"] as? [String: Any]
        #expect(echoed?["x-api-key"] as? String == traderKey)
        #expect(echoed?["x-floriday-organization"] == nil, "the header is removed before forwarding")
        let unnamed = try client.request("GET", "/suppliers-api-2024v2/_sandbox/echo/none")
        #expect(unnamed.status == 400)
        #expect(unnamed.json["type"] as? String == "urn:floriday-proxy:problem:organization-required")

        let admin = try TestClient(port: adminPort)
        let status = try admin.request("GET", "/status.json")
        #expect(status.status == 200)
        let organizations = (status.json["organizations"] as? [[String: Any]])?.compactMap { $0["name"] as? String } ?? []
        #expect(Set(organizations) == ["grower-a", "trader-b"], "\(status.bodyString.prefix(400))")
        let page = try admin.request("GET", "/")
        #expect(page.status == 200)
        #expect(page.bodyString.contains("id=\"organizations\""))
        #expect(page.bodyString.contains("grower-a") && page.bodyString.contains("trader-b"))
        let metrics = try admin.request("GET", "/metrics")
        #expect(metrics.bodyString.contains("organization=\"grower-a\""))
        #expect(metrics.bodyString.contains("organization=\"trader-b\""))
        for output in [status.bodyString, page.bodyString, metrics.bodyString] {
            #expect(!output.contains(growerKey) && !output.contains(traderKey))
        }
        process.terminate()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(!err.text.contains(growerKey) && !err.text.contains(traderKey))
    }

    @Test func jsonLogsAreOneObjectPerLine() throws {
        let sandbox = try SandboxServer(address: SocketAddress(ip: "127.0.0.1", port: 0)!, tls: true)
        defer { sandbox.stop() }
        let caFile = try CertificateFile(sandbox.certificateAuthorityPEM!)
        let (process, port, err) = try Self.startProxy(sandbox: sandbox, caFile: caFile.path, extra: "log: { format: json, query: true }")
        #expect(try TestClient(port: port).request("GET", "/suppliers-api-2024v2/_sandbox/echo/x?page=2").status == 200)
        process.terminate()
        process.waitUntilExit()
        let lines = err.text.split(separator: "\n")
        let objects = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(objects.count == lines.count && !lines.isEmpty)
        let access = objects.first { $0["msg"] as? String == "access" }
        #expect(access?["path"] as? String == "/suppliers-api-2024v2/_sandbox/echo/x?page=2")   // log.query: true
        #expect(access?["status"] as? String == "200")
        #expect(access?["request_id"] is String)
        #expect(objects.contains { $0["msg"] as? String == "token.fetched" && $0["lifetime_s"] as? String == "3600" })
        #expect(objects.allSatisfy { ($0["time"] as? String)?.hasSuffix("Z") == true && $0["level"] is String })
    }

    /// Standard error goes to a pipe that nobody reads (a stuck log collector): the proxy keeps
    /// answering, drops what does not fit its log buffer, and says how much once the reader
    /// is back.
    @Test func aStuckLogReaderNeverStopsTheProxy() throws {
        let sandbox = try SandboxServer(address: SocketAddress(ip: "127.0.0.1", port: 0)!, tls: true)
        defer { sandbox.stop() }
        let caFile = try CertificateFile(sandbox.certificateAuthorityPEM!)
        // No rate shaping: 1,500 requests to one unlisted endpoint would otherwise be paced at
        // its default of 3.4 a second after the burst, and this test is about the log.
        let (process, port, err) = try Self.startProxy(sandbox: sandbox, caFile: caFile.path, extra: "log: { level: info }\nrate_limit: { enabled: false }",
                                                       readLogs: false)
        defer { if process.isRunning { process.terminate(); process.waitUntilExit() } }
        // Access lines of about 1.2 KiB: a pipe holds some 50, the proxy's buffer some 850 more.
        let client = try TestClient(port: port, timeout: 10)
        let padding = String(repeating: "p", count: 1000)
        var answered = 0
        for index in 0..<1500 {
            let response = try client.request("GET", "/suppliers-api-2024v2/_sandbox/echo/\(padding)/\(index)")
            if response.status == 200 { answered += 1 }
        }
        #expect(answered == 1500)
        // The reader comes back: what was kept (about 1.1 MB) arrives, then the count of what
        // was not. The deadline is only for a proxy that never says it: on a machine busy
        // enough to take 100 ms a request, moving the kept lines took more than 10 s.
        let reader = err.pipe.fileHandleForReading
        var logs = ""
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        let deadline = Date().addingTimeInterval(120)
        while !logs.contains("log.dropped") && Date() < deadline {
            var pfd = pollfd(fd: reader.fileDescriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 100) > 0 else { continue }
            let count = chunk.withUnsafeMutableBytes { read(reader.fileDescriptor, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            logs += String(decoding: chunk[0..<count], as: UTF8.self)
        }
        let dropped = logs.split(separator: "\n").first { $0.contains("log.dropped") }
        #expect(dropped != nil, "no log.dropped line in \(logs.utf8.count) bytes of logs")
        let count = dropped.flatMap { $0.split(separator: " ").first { $0.hasPrefix("lines=") } }.flatMap { Int($0.dropFirst(6)) } ?? 0
        #expect(count > 0 && count < 1500, "\(dropped ?? "")")
        #expect(logs.contains("status=200"))
    }

    @Test func memoryStaysFlatWhileFiftyMebibytesStreamBothWays() throws {
        let sandbox = try SandboxServer(address: SocketAddress(ip: "127.0.0.1", port: 0)!, tls: true)
        defer { sandbox.stop() }
        let caFile = try CertificateFile(sandbox.certificateAuthorityPEM!)
        // AddressSanitizer holds freed memory back (its quarantine, 256 MiB) to catch use after
        // free, so the peak would measure the quarantine: the sanitized child runs without one.
        var environment: [String: String] = [:]
        if Self.addressSanitized {
            let options = ProcessInfo.processInfo.environment["ASAN_OPTIONS"].map { $0 + ":" } ?? ""
            environment["ASAN_OPTIONS"] = options + "quarantine_size_mb=0"
        }
        let (process, port, _) = try Self.startProxy(sandbox: sandbox, caFile: caFile.path, extra: "limits: { max_body_bytes: 64MiB }\nlog: { level: warning }",
                                                     environment: environment)
        defer { process.terminate(); process.waitUntilExit() }
        let client = try TestClient(port: port, timeout: 60)
        #expect(try client.request("GET", "/suppliers-api-2024v2/_sandbox/echo/x").status == 200)
        let before = Self.highWaterRSS(process.processIdentifier)
        let size = 50 << 20
        var received = 0
        try client.send("GET /suppliers-api-2024v2/_sandbox/bytes?size=\(size) HTTP/1.1\r\nHost: p\r\n\r\n")
        let download = try client.readResponse { received += $0.count }
        #expect(download.status == 200)
        #expect(received == size)
        let block = [UInt8](repeating: 0x5A, count: 256 * 1024)
        try client.send("POST /suppliers-api-2024v2/_sandbox/echo/upload HTTP/1.1\r\nHost: p\r\nContent-Length: \(size)\r\n\r\n")
        for _ in 0..<(size / block.count) { try client.send(block) }
        let upload = try client.readResponse()
        #expect(upload.json["bodyBytes"] as? Int == size)
        let after = Self.highWaterRSS(process.processIdentifier)
        // Streaming, not buffering: 100 MiB went through; the peak grew by far less than one body.
        #expect(before > 0 && after - before < 16 << 20, "VmHWM \(before / 1024) KiB -> \(after / 1024) KiB")
    }
}

extension ProcessTests {
    static func sandboxConfig(_ sandbox: SandboxServer, caFile: String, extra: String = "") throws -> String {
        try writeTemp("""
            api_url: \(sandbox.baseURL)
            issuer_url: \(sandbox.issuerURL)
            ca_file: \(caFile)
            \(extra)
            """)
    }

    static let sandboxCredentials = ["FLORIDAY_CLIENT_ID": SandboxClient.default.clientID, "FLORIDAY_CLIENT_SECRET": SandboxClient.default.clientSecret, "FLORIDAY_API_KEY": "sandbox-api-key"]

    @Test func verifySaysWhatWorkedAndWhatDidNot() throws {
        let sandbox = try SandboxServer(address: SocketAddress(ip: "127.0.0.1", port: 0)!, tls: true)
        defer { sandbox.stop() }
        let ca = try CertificateFile(sandbox.certificateAuthorityPEM!)
        let config = try Self.sandboxConfig(sandbox, caFile: ca.path)
        let ok = try Self.run(["verify", "--config", config], environment: Self.sandboxCredentials)
        #expect(ok.status == 0)
        #expect(ok.stdout.contains("✔ token"))
        #expect(ok.stdout.contains("✔ api_key: GET /suppliers-api-2024v2/auth/key: 200 OK, organisation: Sandbox Nursery B.V."))
        let customers = try Self.run(["verify", "--config", config, "--api", "customers", "--version", "2026v1"], environment: Self.sandboxCredentials)
        #expect(customers.status == 0)
        #expect(customers.stdout.contains("/customers-api-2026v1/identities: 200"))

        var badSecret = Self.sandboxCredentials
        badSecret["FLORIDAY_CLIENT_SECRET"] = "wrong-secret-value"
        let refused = try Self.run(["verify", "--config", config], environment: badSecret)
        #expect(refused.status == 1)
        #expect(refused.stdout.contains("client id and secret"))
        #expect(!refused.stdout.contains("wrong-secret-value"))

        var badKey = Self.sandboxCredentials
        badKey["FLORIDAY_API_KEY"] = "wrong-key-value"
        let forbidden = try Self.run(["verify", "--config", config], environment: badKey)
        #expect(forbidden.status == 1)
        #expect(forbidden.stdout.contains("HTTP 403"))
        #expect(forbidden.stdout.contains("API key"))
        #expect(!forbidden.stdout.contains("wrong-key-value"))

        let untrusted = try Self.writeTemp("api_url: \(sandbox.baseURL)\nissuer_url: \(sandbox.issuerURL)\n")
        let tls = try Self.run(["verify", "--config", untrusted], environment: Self.sandboxCredentials)
        #expect(tls.status == 1)
        #expect(tls.stdout.contains("TLS"))
    }

    @Test func tokenPrintsClaimsAndTheTokenOnlyWithRaw() throws {
        let sandbox = try SandboxServer(address: SocketAddress(ip: "127.0.0.1", port: 0)!, tls: true)
        defer { sandbox.stop() }
        let ca = try CertificateFile(sandbox.certificateAuthorityPEM!)
        let config = try Self.sandboxConfig(sandbox, caFile: ca.path)
        let plain = try Self.run(["token", "--config", config], environment: Self.sandboxCredentials)
        #expect(plain.status == 0)
        #expect(plain.stdout.contains("issuer: \(sandbox.issuerURL)"))
        #expect(plain.stdout.contains("client id: sandbox-client"))
        #expect(plain.stdout.contains("scopes: role:app"))
        #expect(plain.stdout.contains("expires: "))
        #expect(!plain.stdout.contains("eyJ"))   // no JWT in the output
        let raw = try Self.run(["token", "--config", config, "--raw"], environment: Self.sandboxCredentials)
        #expect(raw.stdout.contains("eyJ"))
    }

    @Test func sighupReloadsAndABrokenConfigKeepsTheOldOne() throws {
        let sandbox = try SandboxServer(address: SocketAddress(ip: "127.0.0.1", port: 0)!, tls: true)
        defer { sandbox.stop() }
        sandbox.state.apiKeys = ["sandbox-api-key", "second-key"]
        let ca = try CertificateFile(sandbox.certificateAuthorityPEM!)
        let port = FailureTests.freePort()
        let adminPort = FailureTests.freePort()
        let path = try Self.writeTemp("")
        func write(apiKey: String) throws {
            try "listen: 127.0.0.1:\(port)\nadmin_listen: 127.0.0.1:\(adminPort)\napi_url: \(sandbox.baseURL)\nissuer_url: \(sandbox.issuerURL)\nca_file: \(ca.path)\napi_key: \(apiKey)\n"
                .write(toFile: path, atomically: true, encoding: .utf8)
        }
        try write(apiKey: "sandbox-api-key")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = ["run", "--config", path]
        process.environment = Self.childEnvironment(["FLORIDAY_CLIENT_ID": SandboxClient.default.clientID, "FLORIDAY_CLIENT_SECRET": SandboxClient.default.clientSecret])
        let err = PipeDrain()
        process.standardError = err.pipe
        try process.run()
        err.start()
        defer { process.terminate(); process.waitUntilExit() }
        #expect(eventually(timeout: 10) { (try? TestClient(port: port)) != nil })
        let client = try TestClient(port: port)
        #expect((try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x").json["headers"] as? [String: String])?["x-api-key"] == "sandbox-api-key")

        try write(apiKey: "second-key")
        kill(process.processIdentifier, SIGHUP)
        #expect(eventually {
            ((try? client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x"))?.json["headers"] as? [String: String])?["x-api-key"] == "second-key"
        })
        try "timeouts: { conect: 1s }\n".write(toFile: path, atomically: true, encoding: .utf8)
        kill(process.processIdentifier, SIGHUP)
        // The reload has been tried (and refused) before the key is checked again.
        #expect(eventually { err.textSoFar.contains("config.reload.failed") })
        #expect((try client.request("GET", "/suppliers-api-2026v1/_sandbox/echo/x").json["headers"] as? [String: String])?["x-api-key"] == "second-key")
        #expect(try Self.run(["healthcheck", "--url", "http://127.0.0.1:\(adminPort)/healthz"]).status == 0)
        process.terminate()
        process.waitUntilExit()
        let logs = err.text
        #expect(logs.contains("config.reloaded"))
        #expect(logs.contains("config.reload.failed"))
        #expect(logs.contains("timeouts.conect"))
        #expect(!logs.contains("second-key"))
        #expect(try Self.run(["healthcheck", "--url", "http://127.0.0.1:\(adminPort)/healthz"]).status == 1)
    }
}

/// Reads a child's output pipe to its end on a thread of its own, from `start()` (after the
/// child was launched) on. A pipe holds only 64 KiB: a child that writes more while the test
/// waits for it to exit would otherwise block for ever.
final class PipeDrain: @unchecked Sendable {
    let pipe = Pipe()
    private let finished = DispatchSemaphore(value: 0)
    private let data = Locked(Data())

    func start() {
        let handle = pipe.fileHandleForReading
        Thread.detachNewThread { [self] in
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                data.withLock { $0.append(chunk) }
            }
            finished.signal()
        }
    }

    /// What the child has written so far (it may write more).
    var textSoFar: String { data.withLock { String(decoding: $0, as: UTF8.self) } }

    /// Everything the child wrote; waits until every writer has closed the pipe.
    var text: String {
        finished.wait()
        defer { finished.signal() }
        return textSoFar
    }
}

/// A PEM written to a temporary file, removed when dropped.
final class CertificateFile {
    let path: String
    init(_ pem: String) throws {
        path = NSTemporaryDirectory() + "floriday-proxy-ca-\(UUID().uuidString).pem"
        try pem.write(toFile: path, atomically: true, encoding: .utf8)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}
