import Dispatch
import EventLoop
import Foundation

/// Polls `condition` until it holds or `timeout` seconds have passed; returns whether it held.
///
/// Tests wait for what they need to see instead of sleeping for a guessed time: a condition
/// that holds returns at once, and the ceiling is generous because a loaded two-core machine
/// can be seconds late. The ceiling only matters when the test is about to fail.
public func eventually(timeout: Double = 20, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = DispatchTime.now() + timeout
    while DispatchTime.now() < deadline {
        if try condition() { return true }
        usleep(10_000)
    }
    return try condition()
}

/// Runs `work` on `loop` and waits for its result. Blocks already queued on the loop run first
/// (a loop is a serial queue), so this also proves the loop has done everything asked of it
/// before the call.
public func onLoop<T>(_ loop: EventLoop, timeout: Double = 30, _ work: @escaping () -> T) -> T {
    let done = DispatchSemaphore(value: 0)
    let result = Box<T>()
    loop.execute {
        result.value = work()
        done.signal()
    }
    precondition(done.wait(timeout: .now() + timeout) == .success, "loop \(loop.index) did not run the work within \(timeout) s")
    return result.value!
}

/// Moves `clock` forward by `duration`, then fires on every loop of `group` the timers that are
/// now due, and waits until they have run.
///
/// Each loop first finishes what it is doing: a loop that has just written a response may
/// still be in the same turn, about to arm the connection's next timeout, while this thread
/// has already read the response. Moving the clock before that would arm the timeout from
/// the new time, and the test would wait for a deadline that never comes.
public func advance(_ clock: ManualClock, by duration: Duration, firingTimersOn loops: [EventLoop]) {
    for loop in loops { onLoop(loop) {} }
    clock.advance(by: duration)
    for loop in loops {
        onLoop(loop) { loop.fireDueTimersNow() }
    }
}

private final class Box<T>: @unchecked Sendable {
    var value: T?
}
