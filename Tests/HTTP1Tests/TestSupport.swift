import HTTP1
import Testing

/// A parse event with the body copied out, so sequences can be compared.
enum Event<Head: Equatable>: Equatable {
    case head(Head)
    case body([UInt8])
    case trailers([HTTPField])
    case end
}

typealias RequestEvent = Event<HTTPRequestHead>
typealias ResponseEvent = Event<HTTPResponseHead>

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// Appends an event, merging consecutive body pieces (how a body is split depends on how the
/// input was split; the bytes must not).
func record<Head>(_ event: HTTP1ParseEvent<Head>, into events: inout [Event<Head>]) {
    switch event {
    case .head(let head):
        events.append(.head(head))
    case .body(let chunk):
        if case .body(let previous) = events.last {
            events[events.count - 1] = .body(previous + Array(chunk))
        } else {
            events.append(.body(Array(chunk)))
        }
    case .trailers(let fields):
        events.append(.trailers(fields.fields))
    case .end:
        events.append(.end)
    }
}

/// Splits `input` into pieces of `step` bytes (one piece when nil).
func pieces(_ input: [UInt8], step: Int?) -> [[UInt8]] {
    guard let step else { return [input] }
    return stride(from: 0, to: input.count, by: step).map { Array(input[$0..<min($0 + step, input.count)]) }
}

/// Parses requests fed in pieces; every piece must be consumed whole (nothing pauses).
func parseRequests(_ input: [UInt8], limits: HTTP1Limits = HTTP1Limits(), step: Int? = nil) throws -> [RequestEvent] {
    let parser = HTTP1RequestParser(limits: limits)
    var events: [RequestEvent] = []
    for piece in pieces(input, step: step) {
        let consumed = try piece.withUnsafeBytes { buffer in
            try parser.parse(buffer) { event in
                record(event, into: &events)
                return .proceed
            }
        }
        #expect(consumed == piece.count)
    }
    return events
}

func parseRequests(_ text: String, limits: HTTP1Limits = HTTP1Limits(), step: Int? = nil) throws -> [RequestEvent] {
    try parseRequests(bytes(text), limits: limits, step: step)
}

/// Parses responses to `method`, then signals EOF when `finish` is set.
func parseResponses(_ input: [UInt8], method: String = "GET", limits: HTTP1Limits = HTTP1Limits(), step: Int? = nil, finish: Bool = false) throws -> [ResponseEvent] {
    let parser = HTTP1ResponseParser(limits: limits)
    parser.requestMethod = method
    var events: [ResponseEvent] = []
    for piece in pieces(input, step: step) {
        let consumed = try piece.withUnsafeBytes { buffer in
            try parser.parse(buffer) { event in
                record(event, into: &events)
                return .proceed
            }
        }
        #expect(consumed == piece.count)
    }
    if finish {
        _ = try parser.finish { event in
            record(event, into: &events)
            return .proceed
        }
    }
    return events
}

func parseResponses(_ text: String, method: String = "GET", limits: HTTP1Limits = HTTP1Limits(), step: Int? = nil, finish: Bool = false) throws -> [ResponseEvent] {
    try parseResponses(bytes(text), method: method, limits: limits, step: step, finish: finish)
}

/// The error a request stream fails with, after checking that feeding it one byte at a
/// time fails the same way.
func requestError(_ input: [UInt8], limits: HTTP1Limits = HTTP1Limits(), sourceLocation: SourceLocation = #_sourceLocation) -> HTTP1ParseError? {
    let whole = captureError { _ = try parseRequests(input, limits: limits) }
    let byByte = captureError { _ = try parseRequests(input, limits: limits, step: 1) }
    #expect(whole == byByte, "byte-at-a-time parsing failed differently", sourceLocation: sourceLocation)
    return whole
}

func requestError(_ text: String, limits: HTTP1Limits = HTTP1Limits(), sourceLocation: SourceLocation = #_sourceLocation) -> HTTP1ParseError? {
    requestError(bytes(text), limits: limits, sourceLocation: sourceLocation)
}

func responseError(_ input: [UInt8], method: String = "GET", limits: HTTP1Limits = HTTP1Limits(), finish: Bool = false, sourceLocation: SourceLocation = #_sourceLocation) -> HTTP1ParseError? {
    let whole = captureError { _ = try parseResponses(input, method: method, limits: limits, finish: finish) }
    let byByte = captureError { _ = try parseResponses(input, method: method, limits: limits, step: 1, finish: finish) }
    #expect(whole == byByte, "byte-at-a-time parsing failed differently", sourceLocation: sourceLocation)
    return whole
}

func responseError(_ text: String, method: String = "GET", limits: HTTP1Limits = HTTP1Limits(), finish: Bool = false, sourceLocation: SourceLocation = #_sourceLocation) -> HTTP1ParseError? {
    responseError(bytes(text), method: method, limits: limits, finish: finish, sourceLocation: sourceLocation)
}

private func captureError(_ body: () throws -> Void) -> HTTP1ParseError? {
    do {
        try body()
        return nil
    } catch let error as HTTP1ParseError {
        return error
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

/// The head a request parse produced (the first one).
func firstHead(_ events: [RequestEvent]) -> HTTPRequestHead? {
    for case .head(let head) in events { return head }
    return nil
}

func firstResponseHead(_ events: [ResponseEvent]) -> HTTPResponseHead? {
    for case .head(let head) in events { return head }
    return nil
}

extension HTTP1Limits {
    static func with(_ change: (inout HTTP1Limits) -> Void) -> HTTP1Limits {
        var limits = HTTP1Limits()
        change(&limits)
        return limits
    }
}
