import Testing

@testable import HTTP1

@Suite struct MessageOutputTests {
    /// Records each write as the bytes it carried.
    final class Writes {
        var list: [String] = []
        func write(_ bytes: UnsafeRawBufferPointer) { list.append(String(decoding: bytes, as: UTF8.self)) }
    }

    private func head(_ output: HTTP1MessageOutput, length: Int? = nil) {
        var headers = HTTPHeaders()
        if let length { headers.add("Content-Length", String(length)) }
        output.hold { HTTP1Serializer.appendResponseHead(HTTPResponseHead(status: 200, headers: headers), to: &$0) }
    }

    @Test func aSmallResponseIsOneWrite() {
        let output = HTTP1MessageOutput(), writes = Writes()
        head(output, length: 5)
        #expect(!output.isEmpty && writes.list.isEmpty)   // the head waits for the body
        Array("hello".utf8).withUnsafeBytes { output.writeBody($0, chunked: false, to: writes.write) }
        output.end(chunked: false, to: writes.write)
        #expect(writes.list == ["HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"])
        #expect(output.isEmpty)
    }

    @Test func aChunkIsOneWriteWithItsFraming() {
        let output = HTTP1MessageOutput(), writes = Writes()
        Array("abc".utf8).withUnsafeBytes { output.writeBody($0, chunked: true, to: writes.write) }
        Array("0123456789abcdefg".utf8).withUnsafeBytes { output.writeBody($0, chunked: true, to: writes.write) }
        output.end(chunked: true, to: writes.write)
        // RFC 9112 §7.1: chunk-size in hex, CRLF, data, CRLF; the last chunk is "0" CRLF CRLF.
        #expect(writes.list == ["3\r\nabc\r\n", "11\r\n0123456789abcdefg\r\n", "0\r\n\r\n"])
    }

    @Test func trailersFollowTheLastChunk() {
        let output = HTTP1MessageOutput(), writes = Writes()
        Array("abc".utf8).withUnsafeBytes { output.writeBody($0, chunked: true, to: writes.write) }
        output.end(chunked: true, trailers: HTTPHeaders([("x-checksum", "abc123"), ("grpc-status", "0")]), to: writes.write)
        // RFC 9112 §7.1.2: last-chunk, then the trailer section and its empty line.
        #expect(writes.list == ["3\r\nabc\r\n", "0\r\nx-checksum: abc123\r\ngrpc-status: 0\r\n\r\n"])
        // A body delimited by its length has no trailer section.
        let plain = HTTP1MessageOutput(), plainWrites = Writes()
        Array("abc".utf8).withUnsafeBytes { plain.writeBody($0, chunked: false, to: plainWrites.write) }
        plain.end(chunked: false, trailers: HTTPHeaders([("x-checksum", "abc123")]), to: plainWrites.write)
        #expect(plainWrites.list == ["abc"])
    }

    @Test func largeBodiesAreWrittenWithoutACopyAfterWhatIsHeld() {
        let output = HTTP1MessageOutput(), writes = Writes()
        head(output)
        let large = [UInt8](repeating: UInt8(ascii: "x"), count: HTTP1MessageOutput.coalesceLimit + 1)
        large.withUnsafeBytes { output.writeBody($0, chunked: false, to: writes.write) }
        #expect(writes.list.count == 2)
        #expect(writes.list[0].hasPrefix("HTTP/1.1 200 OK\r\n") && writes.list[0].hasSuffix("\r\n\r\n"))
        #expect(writes.list[1].utf8.count == large.count)
        // Chunked: size line with what was held, data alone, then the CRLF.
        large.withUnsafeBytes { output.writeBody($0, chunked: true, to: writes.write) }
        #expect(writes.list.suffix(3).map(\.utf8.count) == [String(large.count, radix: 16).utf8.count + 2, large.count, 2])
    }

    @Test func aWriteThatReachesBackIsSafe() {
        // The write closes the connection, whose close path discards the output: no
        // overlapping access, nothing written twice.
        let output = HTTP1MessageOutput()
        var written: [Int] = []
        head(output, length: 3)
        Array("abc".utf8).withUnsafeBytes { body in
            output.writeBody(body, chunked: false) { bytes in
                written.append(bytes.count)
                output.discard(releasingStorage: true)
            }
        }
        output.flush { written.append($0.count) }
        #expect(written.count == 1)
        #expect(output.isEmpty)
    }

    @Test func flushWithNothingHeldWritesNothing() {
        let output = HTTP1MessageOutput(), writes = Writes()
        output.flush(to: writes.write)
        output.end(chunked: false, to: writes.write)
        #expect(writes.list.isEmpty)
    }
}
