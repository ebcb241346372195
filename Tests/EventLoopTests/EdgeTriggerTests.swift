@testable import EventLoop
import Foundation
import Testing

// The edge-triggered rules of the loop (see `SocketConnection`): each test builds the
// situation in which a missed edge would lose bytes, an end or a write, over real sockets.

/// Records what a stream delivers; optionally runs `onRead` after each read.
private final class Recorder: ByteStreamDelegate {
    let stream: ByteStream
    let received = Locked(0)
    let reads = Locked(0)
    let closed = Locked<StreamError??>(.none)
    let drained = Locked(0)
    var onRead: ((Recorder) -> Void)?
    init(_ stream: ByteStream) { self.stream = stream }
    func streamDidRead(_ bytes: UnsafeRawBufferPointer) {
        received.withLock { $0 += bytes.count }
        reads.withLock { $0 += 1 }
        onRead?(self)
    }
    func streamDidDrain() { drained.withLock { $0 += 1 } }
    func streamDidClose(_ error: StreamError?) { closed.withLock { $0 = .some(error) } }
    var isClosed: Bool { closed.withLock { $0 != nil } }
}

/// A listener on one loop whose accepted streams get a `Recorder`, configured by `setUp`.
private final class RecordingServer: @unchecked Sendable {
    let group: EventLoopGroup
    var listener: Listener!
    let recorders = Locked<[Recorder]>([])

    init(loops: Int = 1, setUp: @escaping (SocketConnection, Recorder) -> Void = { socket, _ in socket.start() }) throws {
        group = EventLoopGroup(loopCount: loops)
        let recorders = self.recorders
        weak var weakListener: Listener?
        listener = try Listener(bindTo: SocketAddress(ip: "127.0.0.1", port: 0)!, group: group) { socket in
            let recorder = Recorder(socket)
            socket.delegate = recorder
            recorders.withLock { $0.append(recorder) }
            setUp(socket, recorder)
            _ = weakListener
        }
        weakListener = listener
        listener.start()
    }

    var port: Int { listener.address.port }

    func recorder(_ index: Int) -> Recorder? { recorders.withLock { $0.count > index ? $0[index] : nil } }

    /// Waits for one turn of `loop`: everything queued on it before this call has run.
    func turn(_ loop: EventLoop) { loop.queue.sync {} }

    /// The accepted streams end with the server: a stream and its recorder hold each other
    /// until the stream is torn down.
    deinit {
        listener.close()
        for recorder in recorders.withLock({ $0 }) {
            recorder.stream.loop.queue.sync { recorder.stream.abort() }
        }
    }
}

private func connectBlocking(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var tv = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    let address = SocketAddress(ip: "127.0.0.1", port: port)!
    guard address.withSockaddr({ connect(fd, $0, $1) }) == 0 else {
        close(fd)
        throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
    }
    return fd
}

private func sendAll(_ fd: Int32, _ bytes: [UInt8]) {
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if n <= 0 { return }
        offset += n
    }
}

/// Bytes the kernel holds for the reader of `fd` (unread input).
private func unreadBytes(_ fd: Int32) -> Int {
    var count: Int32 = 0
    _ = ioctl(fd, UInt(FIONREAD), &count)
    return Int(count)
}

/// Bytes `fd` has sent that its peer has not acknowledged (loopback: not yet queued at the peer).
private func unsentBytes(_ fd: Int32) -> Int {
    var count: Int32 = 0
    _ = ioctl(fd, UInt(TIOCOUTQ), &count)
    return Int(count)
}

/// Polls until `condition` holds or `timeout` seconds pass.
private func poll(timeout: Double = 20, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(2_000)
    }
    return condition()
}

@Suite struct EdgeTriggerTests {
    @Test func aBurstLargerThanTheReadBudgetIsReadWithoutANewEdge() throws {
        let server = try RecordingServer()
        let fd = try connectBlocking(port: server.port)
        defer { close(fd) }
        // 4 MiB at once, then silence (the connection stays open): far more than one wake's
        // budget (SocketConnection.readsPerWake reads of the loop's 64 KiB buffer), so the
        // connection must carry on by itself; no later byte raises another edge.
        let size = 4 << 20
        #expect(size > SocketConnection.readsPerWake * 64 * 1024)
        sendAll(fd, [UInt8](repeating: 0x61, count: size))
        #expect(poll { server.recorder(0)?.received.withLock { $0 } == size })
        #expect(server.recorder(0)?.isClosed == false)
    }

    @Test func resumeDeliversWhatArrivedWhilePaused() throws {
        let server = try RecordingServer { socket, _ in
            socket.start()
            socket.pauseReading()
        }
        let fd = try connectBlocking(port: server.port)
        defer { close(fd) }
        #expect(poll { server.recorder(0) != nil })
        let recorder = try #require(server.recorder(0))
        let payload = [UInt8](repeating: 0x62, count: 32_768)   // fits the receive buffer
        sendAll(fd, payload)
        // Everything has reached the server's socket (nothing left on the client's side), and
        // the loop has had a turn after that: the edge for these bytes has come and gone.
        #expect(poll { unsentBytes(fd) == 0 })
        let loop = (recorder.stream as! SocketConnection).loop
        server.turn(loop)
        server.turn(loop)
        #expect(recorder.received.withLock { $0 } == 0, "a paused stream delivered bytes")
        loop.execute { recorder.stream.resumeReading() }
        #expect(poll { recorder.received.withLock { $0 } == payload.count })
    }

    @Test func pauseInTheMiddleOfABurstThenResume() throws {
        // Pausing from inside a read leaves the rest of the burst in the kernel; resuming must
        // read it although no new edge comes.
        let server = try RecordingServer { socket, recorder in
            recorder.onRead = { recorder in
                guard recorder.reads.withLock({ $0 }) == 1 else { return }
                recorder.stream.pauseReading()
                recorder.stream.loop.schedule(after: .milliseconds(50)) { recorder.stream.resumeReading() }
            }
            socket.start()
        }
        let fd = try connectBlocking(port: server.port)
        defer { close(fd) }
        let size = 1 << 20
        sendAll(fd, [UInt8](repeating: 0x63, count: size))
        #expect(poll { server.recorder(0)?.received.withLock { $0 } == size })
    }

    @Test func halfCloseAfterDataDeliversTheDataThenTheEnd() throws {
        let server = try RecordingServer()
        let fd = try connectBlocking(port: server.port)
        defer { close(fd) }
        let payload = [UInt8](repeating: 0x64, count: 200_000)
        sendAll(fd, payload)
        shutdown(fd, Int32(SHUT_WR))
        #expect(poll { server.recorder(0)?.isClosed == true })
        let recorder = try #require(server.recorder(0))
        #expect(recorder.received.withLock { $0 } == payload.count)
        let closedWith = recorder.closed.withLock { $0 }
        #expect(closedWith == .some(nil), "an orderly end, not an error")
    }

    @Test func halfCloseWhilePausedIsSeenAfterResume() throws {
        let server = try RecordingServer { socket, _ in
            socket.start()
            socket.pauseReading()
        }
        let fd = try connectBlocking(port: server.port)
        defer { close(fd) }
        #expect(poll { server.recorder(0) != nil })
        let recorder = try #require(server.recorder(0))
        sendAll(fd, Array("last words".utf8))
        shutdown(fd, Int32(SHUT_WR))
        #expect(poll { unsentBytes(fd) == 0 })
        let loop = (recorder.stream as! SocketConnection).loop
        server.turn(loop)
        #expect(!recorder.isClosed, "a paused stream noticed the end before its data was read")
        loop.execute { recorder.stream.resumeReading() }
        #expect(poll { recorder.isClosed })
        #expect(recorder.received.withLock { $0 } == 10)
    }

    @Test func aWriteLargerThanTheSocketBufferCompletesOnWritableEdges() throws {
        let size = 16 << 20
        let server = try RecordingServer { socket, _ in
            socket.start()
            let data = [UInt8](repeating: 0x65, count: size)
            socket.write(data)
        }
        let fd = try connectBlocking(port: server.port)
        defer { close(fd) }
        #expect(poll { server.recorder(0) != nil })
        let recorder = try #require(server.recorder(0))
        // The client does not read yet: the server's write is stuck with most bytes queued.
        #expect(poll { (recorder.stream.loop.queue.sync { recorder.stream.pendingWriteBytes }) > 0 })
        var received = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while received < size {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { break }
            received += n
        }
        #expect(received == size)
        #expect(poll { recorder.drained.withLock { $0 } >= 1 }, "the stream never reported its buffer drained")
        #expect(recorder.stream.loop.queue.sync { recorder.stream.pendingWriteBytes } == 0)
    }

    @Test func aConnectionClosedEarlierInABatchHearsNothingMore() throws {
        // Two connections on one loop, both readable in the same epoll batch. Whichever is
        // handled first aborts the other and, in the same handler, opens a new connection,
        // which the kernel gives the lowest free descriptor number: the one just closed. The
        // aborted connection's event is still in the batch; it must reach neither the closed
        // connection nor the newcomer (a loop keyed by descriptor number would deliver it there).
        let server = try RecordingServer { socket, _ in socket.start() }
        let first = try connectBlocking(port: server.port)
        defer { close(first) }
        let second = try connectBlocking(port: server.port)
        defer { close(second) }
        #expect(poll { server.recorders.withLock { $0.count } == 2 })
        let a = try #require(server.recorder(0)), b = try #require(server.recorder(1))
        let loop = server.group.loops[0]
        var pair: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { close(pair[1]) }
        _ = fcntl(pair[0], F_SETFL, fcntl(pair[0], F_GETFL) | O_NONBLOCK)
        let newcomer = Locked<Recorder?>(nil)
        loop.queue.sync {
            for (me, other) in [(a, b), (b, a)] {
                me.onRead = { _ in
                    guard newcomer.withLock({ $0 }) == nil else { return }
                    other.stream.abort()
                    let connection = SocketConnection(fd: dup(pair[0]), loop: loop, remoteAddress: nil)
                    let recorder = Recorder(connection)
                    connection.delegate = recorder
                    connection.start()
                    newcomer.withLock { $0 = recorder }
                }
            }
        }
        let droppedBefore = loop.queue.sync { loop.staleEventsDropped }
        // Hold the loop while both clients write, so both events wait in one batch.
        let gate = DispatchSemaphore(value: 0)
        let held = DispatchSemaphore(value: 0)
        loop.execute { held.signal(); gate.wait() }
        held.wait()
        sendAll(first, Array("one".utf8))
        sendAll(second, Array("two".utf8))
        #expect(poll { unsentBytes(first) == 0 && unsentBytes(second) == 0 })
        gate.signal()
        #expect(poll { newcomer.withLock { $0 } != nil })
        server.turn(loop)
        let total = a.received.withLock { $0 } + b.received.withLock { $0 }
        #expect(total == 3, "only the connection handled first may read; got \(total) bytes")
        // The aborted connection's event was read in the same batch and dropped by the loop.
        #expect(loop.queue.sync { loop.staleEventsDropped } == droppedBefore + 1)
        let recorder = try #require(newcomer.withLock { $0 })
        #expect(recorder.received.withLock { $0 } == 0)
        #expect(!recorder.isClosed)
        // The newcomer works: bytes written to its peer arrive.
        sendAll(pair[1], Array("hello".utf8))
        #expect(poll { recorder.received.withLock { $0 } == 5 })
        loop.queue.sync {
            recorder.stream.abort()
            // Each recorder's handler holds the other one.
            a.onRead = nil
            b.onRead = nil
        }
        close(pair[0])
    }
}
