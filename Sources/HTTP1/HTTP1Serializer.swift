/// Writes message heads and chunk framing. Heads are written as given: fields built from
/// Strings cannot hold CR or LF (see `HTTPField.init(_:_:)`), and parsed fields were validated.
public enum HTTP1Serializer {
    /// "METHOD target HTTP/1.1\r\n" + fields + "\r\n"
    public static func appendRequestHead(_ head: HTTPRequestHead, to buffer: inout [UInt8]) {
        buffer.reserveCapacity(buffer.count + head.method.utf8.count + head.target.count + 12 + fieldsSize(head.headers))
        buffer.append(contentsOf: head.method.utf8)
        buffer.append(ASCII.sp)
        buffer.append(contentsOf: head.target)
        buffer.append(ASCII.sp)
        appendVersion(head.version, to: &buffer)
        buffer.append(ASCII.cr)
        buffer.append(ASCII.lf)
        appendFields(head.headers, to: &buffer)
    }

    /// "HTTP/1.1 200 OK\r\n" + fields + "\r\n"
    public static func appendResponseHead(_ head: HTTPResponseHead, to buffer: inout [UInt8]) {
        buffer.reserveCapacity(buffer.count + head.reason.count + 15 + fieldsSize(head.headers))
        appendVersion(head.version, to: &buffer)
        buffer.append(ASCII.sp)
        if (100...999).contains(head.status) {
            buffer.append(0x30 + UInt8(head.status / 100))
            buffer.append(0x30 + UInt8(head.status / 10 % 10))
            buffer.append(0x30 + UInt8(head.status % 10))
        } else {
            buffer.append(contentsOf: String(head.status).utf8)
        }
        buffer.append(ASCII.sp)
        buffer.append(contentsOf: head.reason)
        buffer.append(ASCII.cr)
        buffer.append(ASCII.lf)
        appendFields(head.headers, to: &buffer)
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

    private static func fieldsSize(_ headers: HTTPHeaders) -> Int {
        var size = 2
        for field in headers.fields { size += field.name.count + field.value.count + 4 }
        return size
    }

    private static func appendFields(_ headers: HTTPHeaders, to buffer: inout [UInt8]) {
        for field in headers.fields {
            buffer.append(contentsOf: field.name)
            buffer.append(ASCII.colon)
            buffer.append(ASCII.sp)
            buffer.append(contentsOf: field.value)
            buffer.append(ASCII.cr)
            buffer.append(ASCII.lf)
        }
        buffer.append(ASCII.cr)
        buffer.append(ASCII.lf)
    }

    private static func appendVersion(_ version: HTTPVersion, to buffer: inout [UInt8]) {
        buffer.append(contentsOf: [0x48, 0x54, 0x54, 0x50, 0x2F])  // "HTTP/"
        if (0...9).contains(version.major) && (0...9).contains(version.minor) {
            buffer.append(0x30 + UInt8(version.major))
            buffer.append(0x2E)
            buffer.append(0x30 + UInt8(version.minor))
        } else {
            buffer.append(contentsOf: "\(version.major).\(version.minor)".utf8)
        }
    }
}
