import Dispatch
import EventLoop
import Foundation
import HTTP1
import Testing
import Upstream

/// The upstream connection and its pool on their own, against a scripted plain-HTTP upstream.
@Suite struct UpstreamConnectionTests {
    /// Records one exchange; optionally pauses the response on every body chunk, as the proxy
    /// does when its client reads slowly.
    final class Recorder: UpstreamResponseHandler, @unchecked Sendable {
        let pauseOnBody: Bool
        weak var connection: UpstreamChannel?
        var status = 0
        var body: [UInt8] = []
        var failure: UpstreamError?
        let done = DispatchSemaphore(value: 0)

        init(pauseOnBody: Bool) { self.pauseOnBody = pauseOnBody }

        func upstreamResponseHead(_ head: HTTPResponseHead) { status = head.status }
        func upstreamResponseBody(_ bytes: UnsafeRawBufferPointer) {
            body.append(contentsOf: bytes)
            if pauseOnBody { connection?.pauseResponse() }
        }
        func upstreamResponseEnd() { done.signal() }
        func upstreamFailed(_ error: UpstreamError) {
            failure = error
            done.signal()
        }
        func upstreamWritable() {}
    }

    struct Outcome {
        var status: Int
        var body: String
        var reused: Bool
        var failure: UpstreamError?
    }

    static func exchange(_ pool: UpstreamPool, target: String, pauseOnBody: Bool) throws -> Outcome {
        let recorder = Recorder(pauseOnBody: pauseOnBody)
        let reused = Locked(false)
        pool.loop.execute {
            pool.acquire { result in
                switch result {
                case .success(let acquired):
                    reused.withLock { $0 = acquired.reused }
                    recorder.connection = acquired.connection
                    let head = HTTPRequestHead(method: "GET", target: Array(target.utf8), headers: HTTPHeaders([("Host", "upstream")]))
                    acquired.connection.sendRequest(head, handler: recorder)
                    acquired.connection.endRequest()
                case .failure(let error):
                    recorder.upstreamFailed(error)
                }
            }
        }
        // The response timeout below answers long before this.
        guard recorder.done.wait(timeout: .now() + 20) == .success else { throw TestClient.Failure(description: "no answer") }
        return pool.loop.queue.sync {
            Outcome(status: recorder.status, body: String(decoding: recorder.body, as: UTF8.self),
                    reused: reused.withLock { $0 }, failure: recorder.failure)
        }
    }

    /// Regression: a response paused by its handler on its last bytes went back to the pool
    /// still paused, so the next exchange on that connection never read its response (seen as
    /// an HTTP/2 upload that hung after a large download).
    @Test func aConnectionPausedOnItsLastBytesReadsAgainWhenReused() throws {
        let upstream = try FakeUpstream { connection in
            while let request = connection.readRequest() {
                let body = "answer to \(request.target)"
                connection.write("HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
            }
        }
        var timeouts = UpstreamTimeouts()
        timeouts.response = .seconds(3)
        let loop = EventLoopGroup(loopCount: 1).next()
        let pool = UpstreamPool.standalone(endpoint: UpstreamEndpoint(host: "127.0.0.1", port: upstream.port, tls: nil),
                                           loop: loop, maxConnections: 1, timeouts: timeouts)
        defer { loop.execute { pool.shutdown() } }

        let first = try Self.exchange(pool, target: "/first", pauseOnBody: true)
        #expect(first.status == 200 && first.body == "answer to /first" && first.failure == nil)
        let second = try Self.exchange(pool, target: "/second", pauseOnBody: false)
        #expect(second.failure == nil, "\(String(describing: second.failure))")
        #expect(second.status == 200 && second.body == "answer to /second")
        #expect(second.reused)
        #expect(upstream.connections == 1)
    }
}
