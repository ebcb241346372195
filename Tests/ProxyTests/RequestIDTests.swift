import HTTP1
@testable import Proxy
import Testing

@Suite struct RequestIDTests {
    @Test func generatedIDsAreDistinctHex() {
        let ids = (0..<20_000).map { _ in ProxyHandler.requestID(from: HTTPHeaders()) }
        #expect(Set(ids).count == ids.count)
        #expect(ids.allSatisfy { $0.utf8.count == 32 && $0.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) } })
        // Consecutive ids share no obvious structure: each hex digit position takes many values.
        for position in [0, 15, 16, 31] {
            let digits = Set(ids.prefix(256).map { Array($0.utf8)[position] })
            #expect(digits.count == 16, "position \(position)")
        }
    }

    @Test func aUsableClientIDIsKeptAndABadOneReplaced() {
        #expect(ProxyHandler.requestID(from: HTTPHeaders([("X-Request-Id", "abc-123")])) == "abc-123")
        let tooLong = String(repeating: "a", count: 129)
        #expect(ProxyHandler.requestID(from: HTTPHeaders([("X-Request-Id", tooLong)])).utf8.count == 32)
        #expect(ProxyHandler.requestID(from: HTTPHeaders([("X-Request-Id", "has space")])) != "has space")
    }
}

@Suite struct AccessLogFormatTests {
    @Test func durationsAreMillisecondsWithOneDecimal() {
        #expect(AccessLog.milliseconds(.zero) == "0.0")
        #expect(AccessLog.milliseconds(.microseconds(12_340)) == "12.3")
        #expect(AccessLog.milliseconds(.microseconds(12_350)) == "12.4")   // rounded half up
        #expect(AccessLog.milliseconds(.microseconds(49)) == "0.0")
        #expect(AccessLog.milliseconds(.seconds(2)) == "2000.0")
        #expect(AccessLog.milliseconds(.seconds(61) + .microseconds(999_960)) == "62000.0")
    }
}
