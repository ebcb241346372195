import Foundation

/// Where log lines go: a bounded buffer in memory, written to a file descriptor by a thread
/// of its own.
///
/// The event loops log (one access line per request) but must never wait for the reader of
/// standard error: a container runtime's log driver, journald under pressure or a pipe to a
/// stuck process would otherwise stop every connection until it reads again. So `write`
/// only copies the line into the buffer; when the buffer is full the line is dropped and
/// counted, and the writer reports the count as soon as the output moves again.
final class LogOutput: @unchecked Sendable {
    /// Standard error, with room for about 4,000 access lines.
    static let standardError = LogOutput(fd: 2, capacity: 1 << 20)

    private let fd: Int32
    private let capacity: Int
    private let condition = NSCondition()
    private var pending: [UInt8] = []
    private var dropped = 0
    private var writing = false
    /// The writer sleeps on the condition: the next line must wake it. While it is awake
    /// (writing, or pausing between batches) lines are only appended, with no wake-up each.
    private var writerWaiting = false
    private var started = false
    /// After a small batch the writer pauses this long, so lines arriving at a high rate
    /// leave in few large writes rather than one write (and one wake-up) each.
    private static let batchInterval: useconds_t = 10_000
    /// Builds the line that reports dropped lines, in the format of the other lines.
    private var droppedNotice: @Sendable (Int) -> [UInt8] = { count in Array("\(count) log lines dropped: the log output is too slow\n".utf8) }

    init(fd: Int32, capacity: Int) {
        self.fd = fd
        self.capacity = capacity
    }

    func setDroppedNotice(_ notice: @escaping @Sendable (Int) -> [UInt8]) {
        condition.withLock { droppedNotice = notice }
    }

    /// Queues one complete line (never split, never interleaved with another).
    func write(_ line: UnsafeRawBufferPointer) {
        condition.lock()
        defer { condition.unlock() }
        if !started {
            started = true
            let thread = Thread { [self] in run() }
            thread.name = "log-output"
            thread.start()
        }
        guard pending.count + line.count <= capacity else {
            dropped += 1
            return
        }
        pending.append(contentsOf: line)
        if writerWaiting { condition.broadcast() }
    }

    /// Waits until every line queued so far is written, or `timeout` passes (the reader may
    /// be stuck): before the process exits.
    func flush(timeout: TimeInterval) {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        while started && (!pending.isEmpty || dropped > 0 || writing) {
            if !condition.wait(until: deadline) { return }
        }
    }

    private func run() {
        var batch: [UInt8] = []
        while true {
            condition.lock()
            while pending.isEmpty && dropped == 0 {
                writerWaiting = true
                condition.wait()
                writerWaiting = false
            }
            batch.append(contentsOf: pending)
            pending.removeAll(keepingCapacity: pending.capacity <= capacity)
            if dropped > 0 {
                // The lines were dropped after those queued before them.
                batch.append(contentsOf: droppedNotice(dropped))
                dropped = 0
            }
            writing = true
            condition.unlock()

            writeAll(batch)
            let wasSmall = batch.count < 64 * 1024
            batch.removeAll(keepingCapacity: batch.capacity <= capacity)

            condition.lock()
            writing = false
            condition.broadcast()   // a flush may be waiting
            condition.unlock()
            if wasSmall { usleep(Self.batchInterval) }
        }
    }

    private func writeAll(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if written < 0 && errno == EINTR { continue }
                if written <= 0 { return }   // standard error is gone: nothing else to tell
                offset += written
            }
        }
    }
}
