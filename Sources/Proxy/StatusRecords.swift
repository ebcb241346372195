import Foundation
import Synchronization

/// The release this build belongs to, shown on the status page and in `/status.json`.
public enum ProxyVersion {
    public static let current = "0.1.0"
}

/// Seconds since the Unix epoch: the wall clock, for times an operator reads.
public typealias WallTime = Double

public func wallNow() -> WallTime { Date().timeIntervalSince1970 }

/// Responses per second by status class over the last hour, for the status page: one slot per
/// second in a ring, each stamped with the second it counts, so a slot left from an earlier
/// lap reads as zero without anyone clearing it.
///
/// One lock per finished request: held for a few instructions, it costs far less than the
/// metrics that are recorded next to it. (`Atomic` cannot live in an array.)
public final class RequestHistory: Sendable {
    /// How far back it remembers.
    public static let capacity = 3600
    /// Status classes counted: 1xx … 5xx.
    static let classes = 5

    private struct Ring {
        var stamps = [Int64](repeating: -1, count: RequestHistory.capacity)
        var counts = [UInt32](repeating: 0, count: RequestHistory.capacity * RequestHistory.classes)
    }
    private let ring = Mutex(Ring())
    private let origin: ContinuousClock.Instant

    public init(origin: ContinuousClock.Instant = .now) {
        self.origin = origin
    }

    /// The current second on this history's scale.
    public func second(at instant: ContinuousClock.Instant = .now) -> Int64 {
        (instant - origin).components.seconds
    }

    /// One response with `status`, in second `second` (from `second(at:)`).
    public func record(status: Int, second: Int64) {
        let statusClass = status / 100
        guard statusClass >= 1 && statusClass <= Self.classes, second >= 0 else { return }
        let slot = Int(second % Int64(Self.capacity))
        ring.withLock { ring in
            if ring.stamps[slot] != second {
                ring.stamps[slot] = second
                for index in slot * Self.classes..<(slot + 1) * Self.classes { ring.counts[index] = 0 }
            }
            ring.counts[slot * Self.classes + statusClass - 1] &+= 1
        }
    }

    /// Counts per second for the `seconds` seconds up to and including `now`, oldest first:
    /// `perSecond[c][i]` is status class `c + 1` in second `now - seconds + 1 + i`.
    public func window(seconds: Int, endingAt now: Int64) -> RequestWindow {
        let seconds = min(max(1, seconds), Self.capacity)
        var perSecond = [[Int]](repeating: [Int](repeating: 0, count: seconds), count: Self.classes)
        ring.withLock { ring in
            for offset in 0..<seconds {
                let second = now - Int64(seconds - 1 - offset)
                guard second >= 0 else { continue }
                let slot = Int(second % Int64(Self.capacity))
                guard ring.stamps[slot] == second else { continue }
                for statusClass in 0..<Self.classes {
                    perSecond[statusClass][offset] = Int(ring.counts[slot * Self.classes + statusClass])
                }
            }
        }
        return RequestWindow(perSecond: perSecond)
    }
}

/// A stretch of `RequestHistory`.
public struct RequestWindow: Sendable, Equatable {
    /// Indexed by status class minus one (0 is 1xx), then by second, oldest first.
    public var perSecond: [[Int]]

    /// Responses of status class `statusClass` (1 … 5) in the whole window.
    public func total(statusClass: Int) -> Int { perSecond[statusClass - 1].reduce(0, +) }
    /// Responses of every class in second `index`.
    public func total(second index: Int) -> Int { perSecond.reduce(0) { $0 + $1[index] } }
    public var seconds: Int { perSecond.first?.count ?? 0 }
}

/// An error the proxy answered itself, as the status page lists it.
public struct ProblemRecord: Sendable, Equatable {
    public var time: WallTime
    public var type: String
    public var status: Int
    public var method: String
    /// The request path without its query (which may carry personal data).
    public var path: String
    public var requestID: String
}

/// The most recent problems, newest last. Errors are the exception, so a lock is fine here.
public final class RecentProblems: Sendable {
    public static let capacity = 20
    /// A path longer than this is cut (an attacker's 8 KiB target need not fill the page).
    static let maxPathBytes = 256
    private let records = Mutex<[ProblemRecord]>([])

    public init() {}

    func add(_ kind: Problem.Kind, status: Int, method: String, target: [UInt8], requestID: String, time: WallTime = wallNow()) {
        var path = target.prefix { $0 != UInt8(ascii: "?") }
        var cut = false
        if path.count > Self.maxPathBytes {
            path = path.prefix(Self.maxPathBytes)
            cut = true
        }
        let record = ProblemRecord(time: time, type: kind.rawValue, status: status, method: method,
                                   path: String(decoding: path, as: UTF8.self) + (cut ? "…" : ""), requestID: requestID)
        records.withLock { records in
            if records.count == Self.capacity { records.removeFirst() }
            records.append(record)
        }
    }

    /// Newest first.
    public var newestFirst: [ProblemRecord] { records.withLock { $0.reversed() } }
}

/// Token fetches as the operator sees them: when, and what came of it.
public final class TokenFetchHistory: Sendable {
    public struct Fetch: Sendable, Equatable {
        public var time: WallTime
        /// "success", or the failure kind (`invalid_client`, `unreachable`, …).
        public var outcome: String
        /// The IDM's reason for a failure (never a secret: token errors carry none).
        public var reason: String?
    }
    /// Failures remembered.
    public static let capacity = 5

    private struct State {
        var last: Fetch?
        var lastSuccess: WallTime?
        var failures: [Fetch] = []
    }
    private let state = Mutex(State())

    public init() {}

    public func record(outcome: String, reason: String?, time: WallTime = wallNow()) {
        let fetch = Fetch(time: time, outcome: outcome, reason: outcome == "success" ? nil : reason)
        state.withLock { state in
            state.last = fetch
            if outcome == "success" {
                state.lastSuccess = time
            } else {
                if state.failures.count == Self.capacity { state.failures.removeFirst() }
                state.failures.append(fetch)
            }
        }
    }

    public var last: Fetch? { state.withLock { $0.last } }
    public var lastSuccess: WallTime? { state.withLock { $0.lastSuccess } }
    /// The most recent failures, newest first.
    public var recentFailures: [Fetch] { state.withLock { $0.failures.reversed() } }
}
