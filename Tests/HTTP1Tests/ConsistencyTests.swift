import HTTP1
import Testing

/// Mutated messages fed whole and in random pieces must be accepted or refused alike, with the
/// same events. (Which error a many-times-broken message gets first may differ.)
@Suite struct ConsistencyTests {
    /// SplitMix64: small, deterministic, good enough to pick mutations.
    struct Random {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
    }

    static let interesting: [UInt8] = bytes("\r\n \t:;=\"\\0aF,x") + [0x00, 0x7F, 0x80, 0xFF]

    static func mutate(_ input: [UInt8], _ random: inout Random) -> [UInt8] {
        var output = input
        for _ in 0..<(1 + random.below(3)) {
            let index = random.below(output.count)
            switch random.below(3) {
            case 0: output[index] = interesting[random.below(interesting.count)]
            case 1: output.remove(at: index)
            default: output.insert(interesting[random.below(interesting.count)], at: index)
            }
        }
        return output
    }

    static func randomPieces(_ input: [UInt8], _ random: inout Random) -> [[UInt8]] {
        var result: [[UInt8]] = []
        var start = 0
        while start < input.count {
            let length = min(input.count - start, 1 + random.below(17))
            result.append(Array(input[start..<start + length]))
            start += length
        }
        return result
    }

    static func requests(_ pieces: [[UInt8]]) -> Result<[RequestEvent], HTTP1ParseError> {
        let parser = HTTP1RequestParser(limits: .with { $0.maxHeaderBytes = 512; $0.maxTargetBytes = 64 })
        var events: [RequestEvent] = []
        do {
            for piece in pieces {
                let consumed = try piece.withUnsafeBytes { buffer in
                    try parser.parse(buffer) { record($0, into: &events); return .proceed }
                }
                #expect(consumed == piece.count)
            }
            return .success(events)
        } catch let error as HTTP1ParseError {
            return .failure(error)
        } catch {
            Issue.record("unexpected \(error)")
            return .success([])
        }
    }

    static func responses(_ pieces: [[UInt8]]) -> Result<[ResponseEvent], HTTP1ParseError> {
        let parser = HTTP1ResponseParser()
        var events: [ResponseEvent] = []
        do {
            for piece in pieces {
                _ = try piece.withUnsafeBytes { buffer in
                    try parser.parse(buffer) { record($0, into: &events); return .proceed }
                }
            }
            _ = try parser.finish { record($0, into: &events); return .proceed }
            return .success(events)
        } catch let error as HTTP1ParseError {
            return .failure(error)
        } catch {
            Issue.record("unexpected \(error)")
            return .success([])
        }
    }

    static func sameOutcome<Head>(_ a: Result<[Event<Head>], HTTP1ParseError>, _ b: Result<[Event<Head>], HTTP1ParseError>) -> Bool {
        switch (a, b) {
        case (.success(let x), .success(let y)): x == y
        case (.failure(let x), .failure(let y)): [400, 413, 414, 431, 501, 505].contains(x.status) && [400, 413, 414, 431, 501, 505].contains(y.status)
        default: false
        }
    }

    @Test func mutatedRequests() {
        let seed = bytes("POST /a?b=c HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
            + "4;e=\"q\\\"\"\r\nwiki\r\n0\r\nT: 1\r\n\r\n"
            + "PUT /b HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello"
            + "GET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        var random = Random(state: 42)
        var refused = 0
        for _ in 0..<1500 {
            let input = Self.mutate(seed, &random)
            let whole = Self.requests([input])
            let split = Self.requests(Self.randomPieces(input, &random))
            #expect(Self.sameOutcome(whole, split), "\(String(decoding: input, as: UTF8.self).debugDescription)")
            if case .failure = whole { refused += 1 }
        }
        // Most mutations break something; some (inside a body, say) do not.
        #expect(refused > 500 && refused < 1500)
    }

    @Test func mutatedResponses() {
        let seed = bytes("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            + "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            + "HTTP/1.1 200\r\nContent-Type: text/plain\r\n\r\nto the end")
        var random = Random(state: 7)
        for _ in 0..<1000 {
            let input = Self.mutate(seed, &random)
            let whole = Self.responses([input])
            let split = Self.responses(Self.randomPieces(input, &random))
            #expect(Self.sameOutcome(whole, split), "\(String(decoding: input, as: UTF8.self).debugDescription)")
        }
    }
}
