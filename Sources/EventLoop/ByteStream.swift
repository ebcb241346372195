import CLinux
/// Receives what happens on a `ByteStream`. Every call comes on the stream's loop.
public protocol ByteStreamDelegate: AnyObject {
    /// Bytes arrived. The buffer is only valid during the call.
    func streamDidRead(_ bytes: UnsafeRawBufferPointer)
    /// The stream's write buffer went from non-empty to empty (use it for backpressure).
    func streamDidDrain()
    /// The stream is closed. `error` is nil for an orderly end (EOF or our own close).
    /// Called exactly once; the stream drops its delegate afterwards.
    func streamDidClose(_ error: StreamError?)
}

/// A bidirectional byte stream owned by one loop: a plain socket or TLS over one.
///
/// Not thread-safe: call it on `loop` only.
public protocol ByteStream: AnyObject {
    var loop: EventLoop { get }
    var delegate: ByteStreamDelegate? { get set }
    var remoteAddress: SocketAddress? { get }
    var isOpen: Bool { get }
    /// Bytes accepted by `write` and not yet handed to the kernel.
    var pendingWriteBytes: Int { get }
    /// Starts delivering reads to the delegate.
    func start()
    /// Queues bytes; never blocks.
    func write(_ bytes: UnsafeRawBufferPointer)
    /// Stops reading until `resumeReading` (backpressure); calls balance internally.
    func pauseReading()
    func resumeReading()
    /// Flushes pending writes, then closes. The delegate hears `streamDidClose(nil)`.
    func close()
    /// Closes at once, dropping pending writes.
    func abort()
}

extension ByteStream {
    public func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { write($0) }
    }

    public func write(_ text: String) {
        var text = text
        text.withUTF8 { write(UnsafeRawBufferPointer($0)) }
    }
}
