import EventLoop
import Foundation
import Testing

/// Connection churn through the proxy: short-lived connections that end in every way a client
/// can end one, over both event loops, while a keep-alive client keeps making requests. The
/// process must stay up, every keep-alive request must be answered, and the descriptors must
/// return to their baseline. (`make churn` runs the same mix 100,000 times against the release build.)
@Suite struct ChurnTests {
    /// How a churning connection ends.
    enum Ending: CaseIterable {
        case requestThenClose       // a whole request, the whole response, close
        case connectThenReset       // connect, then RST before any byte
        case resetMidRequest        // half a request head, then RST
        case resetMidResponse       // a large download, a few KiB read, then RST
        case closeBeforeAnyByte     // connect, then an orderly close at once
    }

    static let cyclesPerWorker = 1500
    static let workers = 4

    @Test func churnWhileKeepAliveTrafficRuns() throws {
        let harness = try Harness()
        // Warm up: token fetched, an upstream connection pooled on each loop.
        for _ in 0..<4 {
            let client = try harness.client()
            #expect(try client.request("GET", "/suppliers-api-2024v2/auth/key").status == 200)
        }
        let baseline = ProcessStats.openFileDescriptors()

        let stop = Locked(false)
        let keepAliveAnswered = Locked(0)
        let keepAliveFailures = Locked<[String]>([])
        let keepAlive = Thread {
            do {
                let client = try harness.client(timeout: 30)
                while !stop.withLock({ $0 }) {
                    let response = try client.request("GET", "/suppliers-api-2024v2/auth/key")
                    if response.status == 200 {
                        keepAliveAnswered.withLock { $0 += 1 }
                    } else {
                        keepAliveFailures.withLock { $0.append("status \(response.status)") }
                    }
                }
            } catch {
                keepAliveFailures.withLock { $0.append("\(error)") }
            }
        }
        keepAlive.start()

        let failures = Locked<[String]>([])
        let cycles = Locked(0)
        DispatchQueue.concurrentPerform(iterations: Self.workers) { worker in
            for cycle in 0..<Self.cyclesPerWorker {
                let ending = Ending.allCases[(cycle + worker) % Ending.allCases.count]
                do {
                    try Self.churn(port: harness.port, ending: ending)
                    cycles.withLock { $0 += 1 }
                } catch {
                    failures.withLock { $0.append("\(ending): \(error)") }
                }
            }
        }
        stop.withLock { $0 = true }
        keepAlive.cancel()
        #expect(eventually(timeout: 30) { keepAlive.isFinished })

        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0.prefix(5) })")
        #expect(cycles.withLock { $0 } == Self.workers * Self.cyclesPerWorker)
        #expect(keepAliveFailures.withLock { $0 }.isEmpty, "\(keepAliveFailures.withLock { $0 })")
        #expect(keepAliveAnswered.withLock { $0 } > 0)
        // Still serving, on both loops.
        for _ in 0..<4 {
            let client = try harness.client()
            #expect(try client.request("GET", "/suppliers-api-2024v2/auth/key").status == 200)
        }
        // Descriptors back to the baseline: the upstream pool may hold a few more connections
        // than after the warm-up (the downloads that were reset leave theirs closed, others
        // may have opened), hence the slack; a leak of one per cycle would be thousands.
        let slack = 16
        #expect(eventually(timeout: 30) { ProcessStats.openFileDescriptors() <= baseline + slack },
                "descriptors: \(ProcessStats.openFileDescriptors()), baseline \(baseline)")
    }

    /// One churning connection to 127.0.0.1:`port` that ends as `ending` says.
    static func churn(port: Int, ending: Ending) throws {
        let fd = try TestClient.rawConnect(port: port, timeout: 20)
        var closed = false
        defer { if !closed { close(fd) } }
        func reset() {
            // SO_LINGER with a zero timeout: close sends a RST instead of a FIN.
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            close(fd)
            closed = true
        }
        func send(_ text: String) throws {
            let bytes = Array(text.utf8)
            let sent = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent == bytes.count else { throw TestClient.Failure(description: "send: \(String(cString: strerror(errno)))") }
        }
        func read(atLeast count: Int) throws -> [UInt8] {
            var received: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 16_384)
            while received.count < count {
                let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
                guard n > 0 else { break }
                received += buffer[0..<n]
            }
            return received
        }
        switch ending {
        case .requestThenClose:
            try send("GET /suppliers-api-2024v2/auth/key HTTP/1.1\r\nHost: churn\r\nConnection: close\r\n\r\n")
            let answer = try read(atLeast: Int.max)
            guard answer.starts(with: Array("HTTP/1.1 200".utf8)) else {
                throw TestClient.Failure(description: "answer: \(String(decoding: answer.prefix(40), as: UTF8.self))")
            }
        case .connectThenReset:
            reset()
        case .resetMidRequest:
            try send("GET /suppliers-api-2024v2/auth/key HTTP/1.1\r\nHost: ch")
            reset()
        case .resetMidResponse:
            try send("GET /suppliers-api-2024v2/_sandbox/bytes?size=2000000 HTTP/1.1\r\nHost: churn\r\n\r\n")
            let first = try read(atLeast: 8_192)
            guard first.starts(with: Array("HTTP/1.1 200".utf8)) else {
                throw TestClient.Failure(description: "download: \(String(decoding: first.prefix(40), as: UTF8.self))")
            }
            reset()
        case .closeBeforeAnyByte:
            close(fd)
            closed = true
        }
    }
}
