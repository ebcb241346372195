import CLinux
/// Thin wrappers over the socket system calls the loop uses.
enum Socket {
    /// Requests and responses are written whole: no Nagle delay.
    static func disableNagle(_ fd: Int32) {
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    static func send(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int {
        // MSG_NOSIGNAL: a peer that went away yields EPIPE instead of SIGPIPE.
        Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
    }

    /// A listening socket bound to `address`, non-blocking.
    static func listen(on address: SocketAddress, backlog: Int32) throws(SocketError) -> Int32 {
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError("socket", errno: errno) }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if address.family == AF_INET6 {
            // Bind exactly what was asked for; "[::]" then means IPv6 only, as in nginx.
            _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        if address.withSockaddr({ bind(fd, $0, $1) }) != 0 {
            let error = SocketError("bind \(address)", errno: errno)
            Glibc.close(fd)
            throw error
        }
        if Glibc.listen(fd, backlog) != 0 {
            let error = SocketError("listen \(address)", errno: errno)
            Glibc.close(fd)
            throw error
        }
        return fd
    }

    static func localAddress(_ fd: Int32) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return result == 0 ? SocketAddress(storage: storage, length: length) : nil
    }

    /// Open file descriptors of this process (for leak checks and metrics).
    public static func openFileDescriptorCount() -> Int {
        var count = 0
        if let dir = opendir("/proc/self/fd") {
            while readdir(dir) != nil { count += 1 }
            closedir(dir)
            return count - 3   // ".", ".." and the directory's own fd
        }
        return -1
    }
}

public enum ProcessStats {
    /// Open file descriptors of this process.
    public static func openFileDescriptors() -> Int { Socket.openFileDescriptorCount() }
}
