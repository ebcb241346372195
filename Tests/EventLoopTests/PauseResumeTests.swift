@testable import EventLoop
import Foundation
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
        let listener = try Listener(bindTo: SocketAddress(ip: "127.0.0.1", port: 0)!, group: group) { socket in
            let reader = PausingReader(socket)
            socket.delegate = reader
            socket.start()
            socket.pauseReading()
            readers.withLock { $0.append(reader) }
        }
        listener.start()
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        let address = SocketAddress(ip: "127.0.0.1", port: listener.address.port)!
        #expect(address.withSockaddr { connect(fd, $0, $1) } == 0)
        // Write 64 KiB while the server is paused: it sits in the kernel's buffers.
        let payload = [UInt8](repeating: 7, count: 64 * 1024)
        #expect(payload.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == payload.count)
        #expect(eventually { readers.withLock { $0.count } == 1 })
        Thread.sleep(forTimeInterval: 0.2)
        let reader = readers.withLock { $0[0] }
        #expect(reader.received.withLock { $0 } == 0)
        // Resume with no new bytes arriving: everything buffered must still come.
        loop.execute { reader.stream.resumeReading() }
        #expect(eventually { reader.received.withLock { $0 } == payload.count })
        // And again: pause, send more, resume.
        loop.execute { reader.stream.pauseReading() }
        Thread.sleep(forTimeInterval: 0.05)
        #expect(payload.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == payload.count)
        Thread.sleep(forTimeInterval: 0.2)
        loop.execute { reader.stream.resumeReading() }
        #expect(eventually { reader.received.withLock { $0 } == 2 * payload.count })
        listener.close()
    }
}
