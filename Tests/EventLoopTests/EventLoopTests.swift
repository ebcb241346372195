@testable import EventLoop
import Foundation
import TestSupport
import Testing

/// An echo server on the loop: every byte read is written back.
private final class Echo: ByteStreamDelegate {
    let stream: ByteStream
    let onClose: () -> Void
    init(_ stream: ByteStream, onClose: @escaping () -> Void) {
        self.stream = stream
        self.onClose = onClose
    }
    func streamDidRead(_ bytes: UnsafeRawBufferPointer) { stream.write(bytes) }
    func streamDidDrain() {}
    func streamDidClose(_ error: StreamError?) { onClose() }
}

private func blockingConnect(port: Int) -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var tv = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    let address = SocketAddress(ip: "127.0.0.1", port: port)!
    let result = address.withSockaddr { connect(fd, $0, $1) }
    precondition(result == 0)
    return fd
}

private func readExactly(_ fd: Int32, _ count: Int) -> [UInt8] {
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while out.count < count {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, min($0.count, count - out.count)) }
        if n <= 0 { break }
        out += buffer[0..<n]
    }
    return out
}

@Suite struct EventLoopTests {
    private func echoListener(group: EventLoopGroup, maxConnections: Int = 4096) throws -> Listener {
        var listener: Listener!
        listener = try Listener(bindTo: SocketAddress(ip: "127.0.0.1", port: 0)!, group: group, maxConnections: maxConnections) { socket in
            let echo = Echo(socket) { listener.connectionClosed() }
            socket.delegate = echo
            socket.start()
        }
        listener.start()
        return listener
    }

    @Test func echoesLargePayloadsThroughShortWrites() throws {
        ignoreSIGPIPE()
        let group = EventLoopGroup(loopCount: 2)
        let listener = try echoListener(group: group)
        let fd = blockingConnect(port: listener.address.port)
        defer { close(fd) }
        // 4 MiB exceeds the socket buffers, so the server must keep tails and wait for writability.
        let payload = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let writer = Thread {
            payload.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let n = send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                    if n <= 0 { return }
                    offset += n
                }
            }
        }
        writer.start()
        let echoed = readExactly(fd, payload.count)
        #expect(echoed.count == payload.count)
        #expect(echoed == payload)
        listener.close()
    }

    @Test func connectorReachesTheListenerAndReportsRefusal() throws {
        let group = EventLoopGroup(loopCount: 1)
        let listener = try echoListener(group: group)
        let loop = group.loops[0]
        let done = DispatchSemaphore(value: 0)
        let outcome = Locked<String>("")
        Connector.connect(host: "localhost", port: listener.address.port, loop: loop, timeout: .seconds(2)) { result in
            switch result {
            case .success(let connection): outcome.withLock { $0 = "connected" }; connection.abort()
            case .failure(let error): outcome.withLock { $0 = "\(error)" }
            }
            done.signal()
        }
        #expect(done.wait(timeout: .now() + 5) == .success)
        #expect(outcome.withLock { $0 } == "connected")
        listener.close()
        // The descriptor closes a tick or two after the listener: wait until connecting is refused.
        let port = listener.address.port
        #expect(eventually {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            return SocketAddress(ip: "127.0.0.1", port: port)!.withSockaddr { connect(fd, $0, $1) } != 0 && errno == ECONNREFUSED
        })
        Connector.connect(host: "127.0.0.1", port: listener.address.port, loop: loop, timeout: .seconds(2)) { result in
            if case .failure(let error) = result { outcome.withLock { $0 = "\(error.errno == ECONNREFUSED)" } }
            done.signal()
        }
        #expect(done.wait(timeout: .now() + 5) == .success)
        #expect(outcome.withLock { $0 } == "true")
    }

    @Test func timersFireOnceAndCanBeMoved() throws {
        // The loop's clock is moved by hand; `fireDueTimersNow` fires what is due at once.
        let clock = ManualClock()
        let loop = EventLoopGroup(loopCount: 1, clock: clock).loops[0]
        let fired = Locked<[String]>([])
        let timer = LoopTimer(loop: loop) { fired.withLock { $0.append("moved") } }
        onLoop(loop) {
            timer.schedule(after: .milliseconds(20))
            timer.schedule(after: .milliseconds(80))   // replaces the first deadline
        }
        advance(clock, by: .milliseconds(79), firingTimersOn: [loop])
        #expect(fired.withLock { $0 }.isEmpty, "fired before its (moved) deadline")
        advance(clock, by: .milliseconds(1), firingTimersOn: [loop])
        #expect(fired.withLock { $0 } == ["moved"])
        advance(clock, by: .seconds(10), firingTimersOn: [loop])
        #expect(fired.withLock { $0 } == ["moved"], "fired more than once")
        let disarmed = LoopTimer(loop: loop) { fired.withLock { $0.append("disarmed") } }
        onLoop(loop) { disarmed.schedule(after: .milliseconds(10)); disarmed.disarm() }
        advance(clock, by: .seconds(10), firingTimersOn: [loop])
        #expect(fired.withLock { $0 } == ["moved"])
    }

    @Test func aTimerMovedByAnotherTimerOfTheSameBatchWaitsForItsNewDeadline() throws {
        // Both come due in the same tick; the first one's handler moves or stops the other
        // (a connection's read timeout closing it stops its write timer, say).
        let clock = ManualClock()
        let loop = EventLoopGroup(loopCount: 1, clock: clock).loops[0]
        let fired = Locked<[String]>([])
        var moved: LoopTimer!
        var stopped: LoopTimer!
        moved = LoopTimer(loop: loop) { fired.withLock { $0.append("moved") } }
        stopped = LoopTimer(loop: loop) { fired.withLock { $0.append("stopped") } }
        let first = LoopTimer(loop: loop) {
            fired.withLock { $0.append("first") }
            moved.schedule(after: .seconds(5))
            stopped.disarm()
        }
        onLoop(loop) {
            first.schedule(after: .seconds(1))
            moved.schedule(after: .seconds(1))
            stopped.schedule(after: .seconds(1))
        }
        advance(clock, by: .seconds(1), firingTimersOn: [loop])
        #expect(fired.withLock { $0 } == ["first"])
        advance(clock, by: .seconds(5), firingTimersOn: [loop])
        #expect(fired.withLock { $0 } == ["first", "moved"])
    }

    @Test func resolverAnswersOffTheLoop() throws {
        let loop = EventLoopGroup(loopCount: 1).loops[0]
        let done = DispatchSemaphore(value: 0)
        let answer = Locked<[String]>([])
        Resolver.resolve(host: "localhost", port: 80, on: loop) { result in
            #expect(loop.inLoop)
            if case .success(let addresses) = result { answer.withLock { $0 = addresses.map(\.ipString) } }
            done.signal()
        }
        #expect(done.wait(timeout: .now() + 5) == .success)
        #expect(answer.withLock { $0 }.contains { $0 == "127.0.0.1" || $0 == "::1" })
        #expect(Resolver.lookup(host: "no-such-host.invalid", port: 80).isFailure)
    }

    @Test func descriptorsDoNotLeak() throws {
        let group = EventLoopGroup(loopCount: 2)
        let listener = try echoListener(group: group)
        Thread.sleep(forTimeInterval: 0.05)
        let baseline = ProcessStats.openFileDescriptors()
        for i in 0..<300 {
            let fd = blockingConnect(port: listener.address.port)
            if i % 3 == 0 {
                var linger = linger(l_onoff: 1, l_linger: 0)   // close with RST
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
            } else if i % 3 == 1 {
                _ = "ping".withCString { send(fd, $0, 4, Int32(MSG_NOSIGNAL)) }
                _ = readExactly(fd, 4)
            }
            close(fd)
        }
        // Process-wide, so a little slack: a descriptor of the runtime's own may open meanwhile.
        // A leak of the 300 connections would be far beyond it.
        #expect(eventually { ProcessStats.openFileDescriptors() <= baseline + 5 && listener.activeConnections == 0 },
                "open descriptors: \(ProcessStats.openFileDescriptors()), baseline \(baseline)")
        listener.close()
    }

    @Test func stopsAcceptingAtTheConnectionLimit() throws {
        let group = EventLoopGroup(loopCount: 1)
        let listener = try echoListener(group: group, maxConnections: 2)
        let a = blockingConnect(port: listener.address.port)
        let b = blockingConnect(port: listener.address.port)
        #expect(eventually { listener.activeConnections == 2 })
        // The third waits in the backlog: connected by the kernel, not served.
        let c = blockingConnect(port: listener.address.port)
        _ = "x".withCString { send(c, $0, 1, Int32(MSG_NOSIGNAL)) }
        var tv = timeval(tv_sec: 0, tv_usec: 300_000)
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        #expect(readExactly(c, 1).isEmpty)
        close(a)
        // A slot frees up: the waiting connection is accepted and served.
        tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        #expect(readExactly(c, 1) == [UInt8(ascii: "x")])
        close(b)
        close(c)
        listener.close()
    }
}

extension Result {
    var isFailure: Bool { if case .failure = self { return true } else { return false } }
}

func eventually(timeout: Double = 5, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}
