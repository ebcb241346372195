@testable import EventLoop
import Foundation
import TestSupport
import Testing

/// Reads everything, but pauses whenever asked and resumes later: data that arrived while
/// paused must be delivered after the resume, without any new bytes arriving.
private final class PausingReader: ByteStreamDelegate {
    let stream: ByteStream
    let received = Locked(0)
    init(_ stream: ByteStream) { self.stream = stream }
    func streamDidRead(_ bytes: UnsafeRawBufferPointer) { received.withLock { $0 += bytes.count } }
    func streamDidDrain() {}
    func streamDidClose(_ error: StreamError?) {}
}

@Suite struct PauseResumeTests {
    @Test func dataBufferedWhilePausedIsDeliveredAfterResume() throws {
        let group = EventLoopGroup(loopCount: 1)
        let loop = group.loops[0]
        let readers = Locked<[PausingReader]>([])
        // The first connection starts paused; the second, on the same loop, is a marker: once
        // it has read what was sent after the payload, the loop has seen the payload arrive.
        let listener = try Listener(bindTo: SocketAddress(ip: "127.0.0.1", port: 0)!, group: group) { socket in
            let reader = PausingReader(socket)
            socket.delegate = reader
            socket.start()
            if readers.withLock({ $0.isEmpty }) { socket.pauseReading() }
            readers.withLock { $0.append(reader) }
        }
        listener.start()
        let address = SocketAddress(ip: "127.0.0.1", port: listener.address.port)!
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        #expect(address.withSockaddr { connect(fd, $0, $1) } == 0)
        #expect(eventually { readers.withLock { $0.count } == 1 })
        let markerFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(markerFD) }
        #expect(address.withSockaddr { connect(markerFD, $0, $1) } == 0)
        #expect(eventually { readers.withLock { $0.count } == 2 })
        let (reader, marker) = readers.withLock { ($0[0], $0[1]) }
        var markerBytes = 0
        /// Sends a byte on the marker connection and waits until the loop has read it.
        func markerRoundTrip() {
            markerBytes += 1
            #expect("m".withCString { send(markerFD, $0, 1, Int32(MSG_NOSIGNAL)) } == 1)
            #expect(eventually { marker.received.withLock { $0 } == markerBytes })
        }
        // Write 64 KiB while the server is paused: it sits in the kernel's buffers.
        let payload = [UInt8](repeating: 7, count: 64 * 1024)
        #expect(payload.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == payload.count)
        markerRoundTrip()
        #expect(reader.received.withLock { $0 } == 0)
        // Resume with no new bytes arriving: everything buffered must still come.
        loop.execute { reader.stream.resumeReading() }
        #expect(eventually { reader.received.withLock { $0 } == payload.count })
        // And again: pause (done before the next bytes are sent), send more, resume.
        onLoop(loop) { reader.stream.pauseReading() }
        #expect(payload.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == payload.count)
        markerRoundTrip()
        #expect(reader.received.withLock { $0 } == payload.count)
        loop.execute { reader.stream.resumeReading() }
        #expect(eventually { reader.received.withLock { $0 } == 2 * payload.count })
        listener.close()
    }
}
