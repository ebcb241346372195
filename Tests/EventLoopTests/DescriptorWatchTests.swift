import EventLoop
import Foundation
import TestSupport
import Testing

/// A descriptor owned by someone else (here: the test, through a socket pair), watched
/// level-triggered with the interest its owner sets.
@Suite struct DescriptorWatchTests {
    let group = EventLoopGroup(loopCount: 1)

    /// Both ends non-blocking: [watched, peer].
    func socketPair() -> [Int32] {
        var fds: [Int32] = [0, 0]
        precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0)
        return fds
    }

    @Test func readableIsReportedAgainWhileBytesRemain() {
        let loop = group.loops[0]
        let fds = socketPair()
        defer { close(fds[0]); close(fds[1]) }
        let received = Locked<[UInt8]>([])
        // The owner reads one byte per call: level-triggering must call it again for the rest.
        let watch = onLoop(loop) {
            DescriptorWatch(descriptor: fds[0], loop: loop, onReadable: {
                var byte: UInt8 = 0
                if read(fds[0], &byte, 1) == 1 { received.withLock { $0.append(byte) } }
            }, onWritable: {})!
        }
        _ = write(fds[1], "abc", 3)
        // No interest yet: nothing is read.
        #expect(onLoop(loop) { watch.wantsRead } == false)
        onLoop(loop) { watch.setInterest(read: true, write: false) }
        #expect(eventually { received.withLock { $0 } == Array("abc".utf8) })
        onLoop(loop) { watch.cancel() }
        #expect(onLoop(loop) { loop.registeredSockets } == 0)
    }

    @Test func writableOnlyWhileWanted() {
        let loop = group.loops[0]
        let fds = socketPair()
        defer { close(fds[0]); close(fds[1]) }
        let writable = Locked(0)
        let watch = onLoop(loop) {
            DescriptorWatch(descriptor: fds[0], loop: loop, onReadable: {}, onWritable: { writable.withLock { $0 += 1 } })!
        }
        // The owner stops wanting to write after the first call, as hiredis does once its
        // buffer is flushed.
        onLoop(loop) { watch.setInterest(read: false, write: true) }
        #expect(eventually { writable.withLock { $0 } >= 1 })
        let seen = onLoop(loop) { () -> Int in
            watch.setInterest(read: false, write: false)
            return writable.withLock { $0 }
        }
        // Work queued on the loop after the change runs after any event the loop had; still
        // no further call.
        onLoop(loop) {}
        onLoop(loop) {}
        #expect(writable.withLock { $0 } == seen)
        onLoop(loop) { watch.cancel() }
    }

    @Test func aHangUpReachesTheOwnerWithoutInterest() {
        let loop = group.loops[0]
        let fds = socketPair()
        defer { close(fds[0]) }
        let ended = Locked(false)
        let watch = Locked<DescriptorWatch?>(nil)
        onLoop(loop) {
            watch.withLock {
                $0 = DescriptorWatch(descriptor: fds[0], loop: loop, onReadable: {
                    var byte: UInt8 = 0
                    if read(fds[0], &byte, 1) == 0 {
                        ended.withLock { $0 = true }
                        watch.withLock { $0?.cancel() }
                    }
                }, onWritable: {})
            }
        }
        close(fds[1])
        #expect(eventually { ended.withLock { $0 } })
        #expect(onLoop(loop) { loop.registeredSockets } == 0)
    }
}
