import CHiredis
import CLinux
import EventLoop
import Glibc

/// `rediss://` for hiredis 0.14 (Debian 12's), which has no TLS and whose asynchronous context
/// opens its own socket. The client makes the TLS connection with the project's TLS layer, then
/// hiredis connects to a Unix socket in a directory only this user can enter, the one
/// connection on it is accepted at once (a Unix-socket connect completes while the listener
/// has backlog room), the listener and its directory are removed, and this tunnel copies the
/// bytes between that connection and the TLS stream. hiredis sees a plain socket.
final class TLSTunnel {
    let local: SocketConnection
    let remote: ByteStream
    private var sides: [Side] = []
    private var closed = false
    /// Bytes waiting to be written on one side before the other side stops reading.
    static let highWater = 256 * 1024

    private init(local: SocketConnection, remote: ByteStream) {
        self.local = local
        self.remote = remote
    }

    /// Connects a new hiredis context through a tunnel to `remote` (a TLS stream, not yet
    /// started). On failure `remote` is aborted.
    static func open(remote: ByteStream) -> Result<(TLSTunnel, UnsafeMutablePointer<redisAsyncContext>), RedisError> {
        let loop = remote.loop
        let temporary = getenv("TMPDIR").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array((temporary + "/floriday-proxy-redis-XXXXXX").utf8CString)
        guard let directory = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }).map({ String(cString: $0) }) else {
            remote.abort()
            return .failure(.connect("TLS tunnel: cannot make a private directory (errno \(errno)); is TMPDIR writable?"))
        }
        let path = directory + "/s"
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer {
            if listener >= 0 { Glibc.close(listener) }
            unlink(path)
            rmdir(directory)
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        guard listener >= 0, pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            remote.abort()
            return .failure(.connect("TLS tunnel: no Unix socket (errno \(errno))"))
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(listener, 1) == 0 else {
            remote.abort()
            return .failure(.connect("TLS tunnel: cannot listen on \(path) (errno \(errno))"))
        }
        guard let context = redisAsyncConnectUnix(path) else {
            remote.abort()
            return .failure(.connect("out of memory"))
        }
        let accepted = accept4(listener, nil, nil, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
        guard context.pointee.err == 0, accepted >= 0 else {
            let why = context.pointee.err != 0 ? String(cString: context.pointee.errstr) : "accept: errno \(errno)"
            redisAsyncFree(context)
            if accepted >= 0 { Glibc.close(accepted) }
            remote.abort()
            return .failure(.connect("TLS tunnel: \(why)"))
        }
        let tunnel = TLSTunnel(local: SocketConnection(fd: accepted, loop: loop, remoteAddress: nil), remote: remote)
        let localSide = Side(tunnel, local: true), remoteSide = Side(tunnel, local: false)
        tunnel.sides = [localSide, remoteSide]
        tunnel.local.delegate = localSide
        remote.delegate = remoteSide
        tunnel.local.start()
        remote.start()
        return .success((tunnel, context))
    }

    /// Ends both sides (hiredis then reads the end of its stream).
    func close() {
        guard !closed else { return }
        closed = true
        local.close()
        remote.close()
    }

    fileprivate func forward(_ bytes: UnsafeRawBufferPointer, fromLocal: Bool) {
        guard !closed else { return }
        let source: ByteStream = fromLocal ? local : remote
        let target: ByteStream = fromLocal ? remote : local
        target.write(bytes)
        if target.pendingWriteBytes > Self.highWater { source.pauseReading() }
    }

    fileprivate func drained(local drainedLocal: Bool) {
        // The side that drained can take more: let the other read again.
        (drainedLocal ? remote : local as ByteStream).resumeReading()
    }

    private final class Side: ByteStreamDelegate {
        weak var tunnel: TLSTunnel?
        let local: Bool
        init(_ tunnel: TLSTunnel, local: Bool) {
            self.tunnel = tunnel
            self.local = local
        }
        func streamDidRead(_ bytes: UnsafeRawBufferPointer) { tunnel?.forward(bytes, fromLocal: local) }
        func streamDidDrain() { tunnel?.drained(local: local) }
        func streamDidClose(_ error: StreamError?) { tunnel?.close() }
    }
}
