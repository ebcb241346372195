import FuzzerEntry
import HTTP1

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// libFuzzer entry point for the HTTP/1.1 request and response parsers.
//
// Each input is fed to both parsers, with small limits, in several ways: whole, split in two
// at a position derived from the first byte, in pieces of 1...8 bytes, and whole again while
// pausing after every event (as the server connection does). Invariants checked:
//
// - no crash, no trap, no sanitizer report;
// - `parse` never consumes more than it was given, and without `.pause` consumes everything
//   unless it throws;
// - events follow `head (body)* end`, per message; `.body` is never empty; a message framed by
//   Content-Length ends after exactly that many bytes; no message exceeds `maxBodyBytes`; a
//   request is never framed "until close";
// - after an error every later `parse` or `finish` throws the same error, and the parser is
//   not idle;
// - how the input is split never changes the events, nor whether the input is refused;
// - a head that was accepted, serialized again by `HTTP1Serializer`, parses to the same head
//   with the same framing (what the proxy forwards is what it understood).
//
// A violated invariant traps with a message, which libFuzzer reports as a crash.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    let selector = size > 0 ? Int(data[0]) : 0
    checkAll(input, selector: selector, make: { HTTP1RequestParser(limits: fuzzLimits) }, roundTrip: { requestRoundTrip($0, framing: $1) })
    let method = ["GET", "HEAD", "POST", "CONNECT"][selector & 3]
    checkAll(input, selector: selector, make: {
        let parser = HTTP1ResponseParser(limits: fuzzLimits)
        parser.requestMethod = method
        return parser
    }, roundTrip: { responseRoundTrip($0, framing: $1, method: method) })
    return 0
}

/// Small limits, so that the fuzzer reaches every limit check with short inputs.
let fuzzLimits: HTTP1Limits = {
    var limits = HTTP1Limits()
    limits.maxTargetBytes = 64
    limits.maxHeaderBytes = 512
    limits.maxHeaders = 8
    limits.maxBodyBytes = 4096
    limits.maxChunkExtensionBytes = 32
    limits.maxTrailerBytes = 128
    return limits
}()

// MARK: The two parsers behind one interface

protocol FuzzedParser {
    associatedtype Head: Equatable
    func parse(_ input: UnsafeRawBufferPointer, _ onEvent: (HTTP1ParseEvent<Head>) throws -> HTTP1ParseAction) throws -> Int
    func finish(_ onEvent: (HTTP1ParseEvent<Head>) throws -> HTTP1ParseAction) throws -> Bool
    var bodyFraming: HTTP1BodyFraming? { get }
    var isIdle: Bool { get }
    static var isRequest: Bool { get }
}

extension HTTP1RequestParser: FuzzedParser {
    static var isRequest: Bool { true }
}

extension HTTP1ResponseParser: FuzzedParser {
    static var isRequest: Bool { false }
}

// MARK: One run

enum Recorded<Head: Equatable>: Equatable {
    case head(Head, HTTP1BodyFraming)
    case body([UInt8])
    case trailers([HTTPField])
    case end
}

enum FinishResult: Equatable {
    case notReached
    case returned(Bool)
}

struct Outcome<Head: Equatable>: Equatable {
    var events: [Recorded<Head>] = []
    /// The error `parse` or `finish` threw, if any.
    var error: HTTP1ParseError?
    var finish = FinishResult.notReached
}

func violated(_ message: String) -> Never {
    fatalError("HTTP1Fuzz invariant: \(message)")
}

/// Checks the event grammar while recording.
struct Recorder<Head: Equatable> {
    var outcome = Outcome<Head>()
    private var inMessage = false
    private var framing = HTTP1BodyFraming.none
    private var bodyBytes: UInt64 = 0
    let isRequest: Bool

    init(isRequest: Bool) { self.isRequest = isRequest }

    mutating func record(_ event: HTTP1ParseEvent<Head>, framing current: HTTP1BodyFraming?) {
        switch event {
        case .head(let head):
            if inMessage { violated("a head inside a message") }
            guard let current else { violated("no body framing known at a head") }
            if isRequest && current == .untilClose { violated("a request framed until close") }
            inMessage = true
            framing = current
            bodyBytes = 0
            outcome.events.append(.head(head, current))
        case .body(let bytes):
            if !inMessage { violated("body outside a message") }
            if bytes.isEmpty { violated("an empty body event") }
            if framing == .none { violated("body in a message framed without one") }
            bodyBytes += UInt64(bytes.count)
            if let maximum = fuzzLimits.maxBodyBytes, bodyBytes > maximum { violated("body over maxBodyBytes: \(bodyBytes)") }
            if case .contentLength(let length) = framing, bodyBytes > length { violated("body over its Content-Length") }
            if case .body(let previous) = outcome.events.last {
                outcome.events[outcome.events.count - 1] = .body(previous + Array(bytes))
            } else {
                outcome.events.append(.body(Array(bytes)))
            }
        case .trailers(let fields):
            if !inMessage { violated("trailers outside a message") }
            if framing != .chunked { violated("trailers in a message that is not chunked") }
            if fields.isEmpty { violated("an empty trailers event") }
            if case .trailers = outcome.events.last { violated("two trailer sections") }
            outcome.events.append(.trailers(fields.fields))
        case .end:
            if !inMessage { violated("end outside a message") }
            if case .contentLength(let length) = framing, bodyBytes != length {
                violated("message ended after \(bodyBytes) of \(length) Content-Length bytes")
            }
            inMessage = false
            outcome.events.append(.end)
        }
    }
}

/// Feeds `pieces` in order, then finishes, checking the per-call invariants.
func run<P: FuzzedParser>(_ parser: P, _ pieces: [UnsafeRawBufferPointer], pauseEveryEvent: Bool) -> Outcome<P.Head> {
    var recorder = Recorder<P.Head>(isRequest: P.isRequest)
    let totalBytes = pieces.reduce(0) { $0 + $1.count }
    var calls = 0

    func afterError(_ error: HTTP1ParseError, rest: UnsafeRawBufferPointer) -> Outcome<P.Head> {
        if parser.isIdle { violated("idle after \(error.code)") }
        for retry in [rest, UnsafeRawBufferPointer(start: nil, count: 0)] {
            do {
                _ = try parser.parse(retry) { _ in violated("an event after \(error.code)") }
                violated("parse succeeded after \(error.code)")
            } catch let again as HTTP1ParseError {
                if again != error { violated("\(again.code) after \(error.code)") }
            } catch {
                violated("unexpected error type \(error)")
            }
        }
        do {
            _ = try parser.finish { _ in violated("an event from finish after \(error.code)") }
            violated("finish succeeded after \(error.code)")
        } catch let again as HTTP1ParseError {
            if again != error { violated("finish threw \(again.code) after \(error.code)") }
        } catch {
            violated("unexpected error type \(error)")
        }
        var outcome = recorder.outcome
        outcome.error = error
        return outcome
    }

    for piece in pieces {
        var offset = 0
        while true {
            calls += 1
            if calls > 4 * totalBytes + 64 { violated("parse keeps returning without progress") }
            let rest = UnsafeRawBufferPointer(rebasing: piece[offset...])
            var delivered = false
            let consumed: Int
            do {
                consumed = try parser.parse(rest) { event in
                    recorder.record(event, framing: parser.bodyFraming)
                    delivered = true
                    return pauseEveryEvent ? .pause : .proceed
                }
            } catch let error as HTTP1ParseError {
                return afterError(error, rest: rest)
            } catch {
                violated("unexpected error type \(error)")
            }
            if consumed < 0 || consumed > rest.count { violated("consumed \(consumed) of \(rest.count)") }
            if !pauseEveryEvent && consumed != rest.count { violated("consumed \(consumed) of \(rest.count) without a pause") }
            if !delivered && consumed != rest.count { violated("stopped early without an event") }
            offset += consumed
            // Without an event, the parser wants more input; after one, a paused parser may have
            // another ready (an `.end` needs no input), so ask again even with nothing left.
            if !delivered || !pauseEveryEvent { break }
        }
    }
    do {
        let ended = try parser.finish { event in
            recorder.record(event, framing: parser.bodyFraming)
            return .proceed
        }
        var outcome = recorder.outcome
        outcome.finish = .returned(ended)
        return outcome
    } catch let error as HTTP1ParseError {
        return afterError(error, rest: UnsafeRawBufferPointer(start: nil, count: 0))
    } catch {
        violated("unexpected error type \(error)")
    }
}

/// The input fed whole, split in two, in small pieces and with pauses: same events, same verdict.
func checkAll<P: FuzzedParser>(_ input: UnsafeRawBufferPointer, selector: Int, make: () -> P, roundTrip: (P.Head, HTTP1BodyFraming) -> Void) {
    let count = input.count
    let whole = run(make(), [input], pauseEveryEvent: false)

    let split = count * selector / 256
    let halves = run(make(), [UnsafeRawBufferPointer(rebasing: input[..<split]), UnsafeRawBufferPointer(rebasing: input[split...])], pauseEveryEvent: false)

    let step = 1 + selector % 8
    let small = run(make(), stride(from: 0, to: count, by: step).map { UnsafeRawBufferPointer(rebasing: input[$0..<min($0 + step, count)]) },
                    pauseEveryEvent: false)

    let paused = run(make(), [input], pauseEveryEvent: true)

    // Pausing changes nothing at all, not even which error.
    if paused != whole { violated("pausing after every event changed the outcome") }
    for (name, other) in [("split at \(split)", halves), ("pieces of \(step)", small)] {
        // An incomplete head may be refused early, by a different check than the complete one
        // would fail: the verdict and the events must agree, the error code need not.
        if other.events != whole.events { violated("\(name): events differ from the whole input's") }
        if (other.error == nil) != (whole.error == nil) {
            violated("\(name): \(other.error?.code ?? "accepted") where the whole input gives \(whole.error?.code ?? "accepted")")
        }
        if whole.error == nil && other.finish != whole.finish { violated("\(name): finish differs") }
    }

    for event in whole.events {
        if case .head(let head, let framing) = event { roundTrip(head, framing) }
    }
}

// MARK: Serialize and parse again

func requestRoundTrip(_ head: HTTPRequestHead, framing: HTTP1BodyFraming) {
    var bytes: [UInt8] = []
    HTTP1Serializer.appendRequestHead(head, to: &bytes)
    let again = HTTP1RequestParser()
    var reparsed: HTTPRequestHead?
    var reframed: HTTP1BodyFraming?
    do {
        _ = try bytes.withUnsafeBytes { raw in
            try again.parse(raw) { event in
                if case .head(let h) = event { reparsed = h; reframed = again.bodyFraming }
                return .pause
            }
        }
    } catch {
        violated("a serialized request head does not parse: \(error)")
    }
    guard let reparsed else { violated("a serialized request head is incomplete") }
    if reparsed != head { violated("a request head changed through serialize and parse") }
    if reframed != framing { violated("a request's framing changed through serialize and parse") }
}

func responseRoundTrip(_ head: HTTPResponseHead, framing: HTTP1BodyFraming, method: String) {
    var bytes: [UInt8] = []
    HTTP1Serializer.appendResponseHead(head, to: &bytes)
    let again = HTTP1ResponseParser()
    again.requestMethod = method
    var reparsed: HTTPResponseHead?
    var reframed: HTTP1BodyFraming?
    do {
        _ = try bytes.withUnsafeBytes { raw in
            try again.parse(raw) { event in
                if case .head(let h) = event { reparsed = h; reframed = again.bodyFraming }
                return .pause
            }
        }
    } catch {
        violated("a serialized response head does not parse: \(error)")
    }
    guard let reparsed else { violated("a serialized response head is incomplete") }
    if reparsed != head { violated("a response head changed through serialize and parse") }
    if reframed != framing { violated("a response's framing changed through serialize and parse") }
}
