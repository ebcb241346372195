/// Writes message heads and chunk framing. Heads are written as given: fields built from
/// Strings cannot hold CR or LF (see `HTTPField.init(_:_:)`), and parsed fields were validated.
public enum HTTP1Serializer {
    /// "METHOD target HTTP/1.1\r\n" + fields + "\r\n"
    public static func appendRequestHead(_ head: HTTPRequestHead, to buffer: inout [UInt8]) {
        var method = head.method
        let size = method.utf8.count + head.target.count + 12 + fieldsSize(head.headers)
        write(size, to: &buffer) { writer in
            method.withUTF8 { writer.write(UnsafeRawBufferPointer($0)) }
            writer.write(ASCII.sp)
            writer.write(head.target)
            writer.write(ASCII.sp)
            writer.writeVersion(head.version)
            writer.writeCRLF()
            writer.writeFields(head.headers)
        }
    }

    /// "HTTP/1.1 200 OK\r\n" + fields + "\r\n"
    public static func appendResponseHead(_ head: HTTPResponseHead, to buffer: inout [UInt8]) {
        precondition((100...999).contains(head.status), "status \(head.status) is not three digits")
        let size = 15 + head.reason.count + fieldsSize(head.headers)
        write(size, to: &buffer) { writer in
            writer.writeVersion(head.version)
            writer.write(ASCII.sp)
            writer.write(0x30 + UInt8(head.status / 100))
            writer.write(0x30 + UInt8(head.status / 10 % 10))
            writer.write(0x30 + UInt8(head.status % 10))
            writer.write(ASCII.sp)
            writer.write(head.reason)
            writer.writeCRLF()
            writer.writeFields(head.headers)
        }
    }

    /// The chunk-size line: lowercase hex size + CRLF (RFC 9112 §7.1). A size of 0 would be
    /// the last chunk: use `lastChunk` for that.
    public static func appendChunkHeader(size: Int, to buffer: inout [UInt8]) {
        precondition(size >= 0, "negative chunk size")
        var shift = max(0, (Int.bitWidth - size.leadingZeroBitCount - 1) / 4 * 4)
        while shift >= 0 {
            let digit = UInt8((size >> shift) & 0xF)
            buffer.append(digit < 10 ? 0x30 + digit : 0x57 + digit)
            shift -= 4
        }
        buffer.append(ASCII.cr)
        buffer.append(ASCII.lf)
    }

    /// "\r\n" after chunk data.
    public static let chunkTerminator: [UInt8] = [ASCII.cr, ASCII.lf]

    /// "0\r\n\r\n": the last chunk and an empty trailer section.
    public static let lastChunk: [UInt8] = Array("0\r\n\r\n".utf8)

    /// The last chunk and a trailer section (RFC 9112 §7.1.2): "0\r\n" + fields + "\r\n".
    public static func appendLastChunk(trailers: HTTPHeaders, to buffer: inout [UInt8]) {
        write(3 + fieldsSize(trailers), to: &buffer) { writer in
            writer.write(0x30)
            writer.writeCRLF()
            writer.writeFields(trailers)
        }
    }

    private static func fieldsSize(_ headers: HTTPHeaders) -> Int {
        var size = 2
        for field in headers.fields { size += field.name.count + field.value.count + 4 }
        return size
    }

    /// Grows `buffer` by `size` bytes and lets `body` fill them in place: one reservation, then
    /// plain copies (appending piece by piece costs a capacity check per piece).
    private static func write(_ size: Int, to buffer: inout [UInt8], _ body: (inout Writer) -> Void) {
        let start = buffer.count
        buffer.append(contentsOf: repeatElement(0, count: size))
        buffer.withUnsafeMutableBytes { bytes in
            var writer = Writer(next: bytes.baseAddress! + start, end: bytes.baseAddress! + start + size)
            body(&writer)
            precondition(writer.next == writer.end, "head size miscounted")
        }
    }

    private struct Writer {
        var next: UnsafeMutableRawPointer
        let end: UnsafeMutableRawPointer

        mutating func write(_ byte: UInt8) {
            next.storeBytes(of: byte, as: UInt8.self)
            next += 1
        }

        mutating func write(_ bytes: UnsafeRawBufferPointer) {
            guard let base = bytes.baseAddress else { return }
            next.copyMemory(from: base, byteCount: bytes.count)
            next += bytes.count
        }

        mutating func write(_ bytes: [UInt8]) {
            bytes.withUnsafeBytes { write($0) }
        }

        mutating func writeCRLF() {
            write(ASCII.cr)
            write(ASCII.lf)
        }

        /// "HTTP/x.y"; versions are single digits (RFC 9110 §2.5).
        mutating func writeVersion(_ version: HTTPVersion) {
            precondition((0...9).contains(version.major) && (0...9).contains(version.minor), "HTTP version \(version)")
            write(0x48)  // "HTTP/"
            write(0x54)
            write(0x54)
            write(0x50)
            write(0x2F)
            write(0x30 + UInt8(version.major))
            write(0x2E)
            write(0x30 + UInt8(version.minor))
        }

        mutating func writeFields(_ headers: HTTPHeaders) {
            // Borrowed in place (a `for field in` loop would retain and release both arrays).
            headers.fields.withUnsafeBufferPointer { fields in
                for index in fields.indices {
                    write(fields[index].name)
                    write(ASCII.colon)
                    write(ASCII.sp)
                    write(fields[index].value)
                    writeCRLF()
                }
            }
            writeCRLF()
        }
    }
}
