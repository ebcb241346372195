import EventLoop
import Foundation
import HTTP1
import TestSupport
import Testing
@testable import Upstream

/// The HTTP/2 client connection against frames a test writes byte by byte, on a stream in
/// memory: orderings that a real server can produce only by chance (a GOAWAY read in the same
/// turn a request was submitted) happen here every time.
@Suite struct HTTP2ClientConnectionTests {
    /// A `ByteStream` in memory: what the connection writes is kept, what the test delivers
    /// is read. Closing tells the delegate on the next turn, as a socket does.
    final class MemoryStream: ByteStream {
        let loop: EventLoop
        var delegate: ByteStreamDelegate?
        var remoteAddress: SocketAddress? { nil }
        private(set) var isOpen = true
        var pendingWriteBytes: Int { 0 }
        private(set) var written: [UInt8] = []
        private(set) var closeCalls = 0

        init(loop: EventLoop) { self.loop = loop }

        func start() {}
        func write(_ bytes: UnsafeRawBufferPointer) {
            precondition(isOpen, "write after close")
            written.append(contentsOf: bytes)
        }
        func pauseReading() {}
        func resumeReading() {}
        func close() {
            closeCalls += 1
            guard isOpen else { return }
            isOpen = false
            let delegate = self.delegate
            self.delegate = nil
            loop.execute { delegate?.streamDidClose(nil) }
        }
        func abort() { close() }

        func deliver(_ bytes: [UInt8]) {
            bytes.withUnsafeBytes { delegate?.streamDidRead($0) }
        }

        /// The frames written after the client connection preface (RFC 9113 §3.4).
        var frames: [(type: UInt8, flags: UInt8, stream: UInt32, payload: [UInt8])] {
            RawFrame.parse(Array(written.dropFirst("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8.count)))
        }
    }

    final class Recorder: UpstreamResponseHandler {
        private(set) var failures: [UpstreamError] = []
        private(set) var heads = 0
        func upstreamResponseHead(_ head: HTTPResponseHead) { heads += 1 }
        func upstreamResponseBody(_ bytes: UnsafeRawBufferPointer) {}
        func upstreamResponseEnd() {}
        func upstreamFailed(_ error: UpstreamError) { failures.append(error) }
        func upstreamWritable() {}
    }

    static let settingsAck = RawFrame.frame(type: 0x4, flags: 0x1)
    /// GOAWAY with last stream id 0 and NO_ERROR: the server processed none of our streams.
    static let goAwayNothingProcessed = RawFrame.frame(type: 0x7, payload: [0, 0, 0, 0, 0, 0, 0, 0])

    /// A client connection on a memory stream of a fresh one-loop group, the server's SETTINGS
    /// (and its acknowledgement of ours) already read.
    static func connectionPastTheSettings() -> (EventLoop, MemoryStream, HTTP2ClientConnection) {
        let loop = EventLoopGroup(loopCount: 1).loops[0]
        let (stream, connection) = onLoop(loop) { () -> (MemoryStream, HTTP2ClientConnection) in
            let stream = MemoryStream(loop: loop)
            let connection = HTTP2ClientConnection(stream: stream, timeouts: UpstreamTimeouts(), authority: "api.example", localStreamCap: 100)
            stream.deliver(RawFrame.settings + settingsAck)
            return (stream, connection)
        }
        return (loop, stream, connection)
    }

    /// Opens a channel and submits a GET on it (on the connection's loop).
    static func sendGET(on connection: HTTP2ClientConnection, handler: UpstreamResponseHandler) {
        connection.makeChannel().sendRequest(HTTPRequestHead(method: "GET", target: Array("/trade-items".utf8),
                                                             headers: HTTPHeaders([("Host", "api.example")])), handler: handler)
    }

    /// The race behind a crash once seen under load: a request is submitted, and in the same
    /// turn the server's GOAWAY is read. The flush after that read asks nghttp2 to send the
    /// request's HEADERS, which it no longer may (RFC 9113 §6.8); nghttp2 closes the stream from
    /// inside `nghttp2_session_mem_send`, the exchange fails as refused, and with it the last
    /// channel of a connection that is going away. Closing the connection from there must not
    /// enter nghttp2 again (it would send on the output buffer the running call is filling):
    /// the close waits for the running flush, which then sends our GOAWAY and closes.
    @Test func aGoAwayReadInTheTurnARequestWasSubmittedRefusesItWithoutReenteringTheSession() throws {
        let (loop, stream, connection) = Self.connectionPastTheSettings()
        let recorder = Recorder()
        onLoop(loop) {
            Self.sendGET(on: connection, handler: recorder)
            stream.deliver(Self.goAwayNothingProcessed)
        }
        #expect(eventually { onLoop(loop) { !connection.isOpen } })
        onLoop(loop) {
            // Refused, so the proxy may send it again on another connection (RFC 9113 §8.7).
            #expect(recorder.failures.count == 1)
            if case .streamRefused = recorder.failures.first {} else { Issue.record("expected streamRefused, got \(recorder.failures)") }
            #expect(recorder.heads == 0)
            let frames = stream.frames
            #expect(!frames.contains { $0.type == 0x1 }, "no HEADERS left after the GOAWAY")
            #expect(frames.contains { $0.type == 0x7 }, "our own GOAWAY was sent before closing")
            #expect(!stream.isOpen)
            #expect(connection.activeChannels == 0)
        }
    }

    /// The ordinary end of a connection told to go away with a stream in flight: the stream
    /// runs to its end, then the connection sends its GOAWAY and closes.
    @Test func aGoAwayAboveTheStreamLetsItFinishThenCloses() throws {
        let (loop, stream, connection) = Self.connectionPastTheSettings()
        let recorder = Recorder()
        onLoop(loop) {
            Self.sendGET(on: connection, handler: recorder)
        }
        #expect(eventually { onLoop(loop) { stream.frames.contains { $0.type == 0x1 && $0.stream == 1 } } })
        onLoop(loop) {
            // GOAWAY naming stream 1 as processed, then its response: HEADERS (:status 200,
            // static table index 8) with END_STREAM.
            stream.deliver(RawFrame.frame(type: 0x7, payload: [0, 0, 0, 1, 0, 0, 0, 0])
                + RawFrame.frame(type: 0x1, flags: 0x4 | 0x1, stream: 1, payload: [0x88]))
        }
        #expect(eventually { onLoop(loop) { !connection.isOpen } })
        onLoop(loop) {
            #expect(recorder.failures.isEmpty)
            #expect(recorder.heads == 1)
            #expect(stream.frames.contains { $0.type == 0x7 })
            #expect(stream.closeCalls >= 1)
            #expect(!stream.isOpen)
        }
    }
}
