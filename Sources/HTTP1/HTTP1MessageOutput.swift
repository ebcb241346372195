/// The bytes of one outgoing HTTP/1.1 message on their way to a stream, assembled so that a
/// small message leaves in one write (one TCP segment, one TLS record), as nginx's `writev`
/// does: the serialised head is held until the first body bytes, the end of the message, or
/// the owner's `flush`; a chunk's size line, data and CRLF (RFC 9112 §7.1) go out together.
///
/// The owner supplies the write and decides when held bytes must go regardless (for
/// instance at the end of its event loop's turn, so a head never waits for a body that
/// arrives later). A class, and no buffer is borrowed while `write` runs: a write may fail
/// and close the connection at once, and the owner's close path may come back here.
public final class HTTP1MessageOutput {
    /// Body bytes up to this size are copied behind held bytes; larger ones are written on
    /// their own, without a copy.
    public static let coalesceLimit = 16 * 1024

    private var held: [UInt8] = []
    private static let initialCapacity = 2048

    public init() {}

    public var isEmpty: Bool { held.isEmpty }

    /// Holds bytes the owner serialises (a head): `output.hold { HTTP1Serializer.appendResponseHead(head, to: &$0) }`.
    /// Returns how many bytes were added.
    @discardableResult
    public func hold(_ serialise: (inout [UInt8]) -> Void) -> Int {
        // One allocation for a head and a small body, instead of growing by doubling from the
        // first line on (an idle connection's buffer is released, so this happens per message).
        if held.capacity == 0 { held.reserveCapacity(Self.initialCapacity) }
        let before = held.count
        serialise(&held)
        return held.count - before
    }

    /// Body bytes, framed as a chunk when `chunked`; written with whatever is held.
    public func writeBody(_ bytes: UnsafeRawBufferPointer, chunked: Bool, to write: (UnsafeRawBufferPointer) -> Void) {
        guard bytes.count > 0 else { return }
        if chunked {
            if bytes.count <= Self.coalesceLimit { reserve(bytes.count + 24) }
            HTTP1Serializer.appendChunkHeader(size: bytes.count, to: &held)
            if bytes.count <= Self.coalesceLimit {
                held.append(contentsOf: bytes)
                held.append(contentsOf: HTTP1Serializer.chunkTerminator)
                flush(to: write)
            } else {
                flush(to: write)
                write(bytes)
                HTTP1Serializer.chunkTerminator.withUnsafeBytes { write($0) }
            }
        } else if held.isEmpty {
            write(bytes)
        } else if bytes.count <= Self.coalesceLimit {
            reserve(bytes.count)
            held.append(contentsOf: bytes)
            flush(to: write)
        } else {
            flush(to: write)
            write(bytes)
        }
    }

    /// The end of the message: the last chunk when `chunked` (with `trailers` as its trailer
    /// section), and everything held.
    public func end(chunked: Bool, trailers: HTTPHeaders = HTTPHeaders(), to write: (UnsafeRawBufferPointer) -> Void) {
        if chunked {
            if trailers.isEmpty {
                held.append(contentsOf: HTTP1Serializer.lastChunk)
            } else {
                HTTP1Serializer.appendLastChunk(trailers: trailers, to: &held)
            }
        }
        flush(to: write)
    }

    /// Room for `count` more bytes in one step (appending grows the buffer by doubling).
    private func reserve(_ count: Int) {
        if held.capacity - held.count < count { held.reserveCapacity(held.count + count) }
    }

    /// Writes what is held.
    public func flush(to write: (UnsafeRawBufferPointer) -> Void) {
        guard !held.isEmpty else { return }
        var outgoing: [UInt8] = []
        swap(&outgoing, &held)
        outgoing.withUnsafeBytes { write($0) }
        // Keep the buffer for the next message unless it grew large (or something was held
        // meanwhile).
        if held.isEmpty && outgoing.capacity <= 64 * 1024 {
            outgoing.removeAll(keepingCapacity: true)
            held = outgoing
        }
    }

    /// Drops what is held (the stream is gone); with `releasingStorage`, its buffer too (an
    /// idle connection need not keep one).
    public func discard(releasingStorage: Bool = false) {
        if releasingStorage { held = [] } else { held.removeAll(keepingCapacity: true) }
    }
}
