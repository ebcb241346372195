import CLinux
import Dispatch

/// Name resolution off the loops: `getaddrinfo` blocks, so it runs on its own queue and the
/// answer is delivered back on the caller's loop. Numeric addresses skip the lookup.
public enum Resolver {
    private static let queue = DispatchQueue(label: "floriday-proxy.resolver", attributes: .concurrent)

    public static func resolve(
        host: String, port: Int, on loop: EventLoop,
        completion: @escaping (Result<[SocketAddress], SocketError>) -> Void
    ) {
        if let literal = SocketAddress(ip: host, port: port) {
            loop.executeSoon { completion(.success([literal])) }
            return
        }
        let completion = UncheckedSendable(completion)
        queue.async {
            let result = lookup(host: host, port: port)
            loop.execute { completion.value(result) }
        }
    }

    /// Blocking lookup; call only off the loops (start-up, command-line tools, the resolver queue).
    public static func lookup(host: String, port: Int) -> Result<[SocketAddress], SocketError> {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        hints.ai_flags = AI_ADDRCONFIG
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            // EAI codes are not errnos; report them as EHOSTUNREACH with the resolver's text.
            return .failure(SocketError("resolve \(host): \(String(cString: gai_strerror(status)))", errno: EHOSTUNREACH))
        }
        defer { freeaddrinfo(list) }
        var addresses: [SocketAddress] = []
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let info = entry {
            if let sa = info.pointee.ai_addr {
                var storage = sockaddr_storage()
                withUnsafeMutableBytes(of: &storage) { raw in
                    raw.copyMemory(from: UnsafeRawBufferPointer(start: sa, count: Int(info.pointee.ai_addrlen)))
                }
                let address = SocketAddress(storage: storage, length: info.pointee.ai_addrlen)
                if !addresses.contains(address) { addresses.append(address) }
            }
            entry = info.pointee.ai_next
        }
        return addresses.isEmpty ? .failure(SocketError("resolve \(host)", errno: EHOSTUNREACH)) : .success(addresses)
    }
}

/// Connects to a host name: resolves off the loop, then tries each address in turn
/// until one accepts, all within `timeout`.
public enum Connector {
    public static func connect(
        host: String, port: Int, loop: EventLoop, timeout: Duration,
        completion: @escaping (Result<SocketConnection, SocketError>) -> Void
    ) {
        Resolver.resolve(host: host, port: port, on: loop) { result in
            switch result {
            case .failure(let error):
                completion(.failure(error))
            case .success(let addresses):
                attempt(addresses[...], loop: loop, timeout: timeout, lastError: nil, completion: completion)
            }
        }
    }

    private static func attempt(
        _ addresses: ArraySlice<SocketAddress>, loop: EventLoop, timeout: Duration, lastError: SocketError?,
        completion: @escaping (Result<SocketConnection, SocketError>) -> Void
    ) {
        guard let address = addresses.first else {
            completion(.failure(lastError ?? SocketError("connect", errno: EHOSTUNREACH)))
            return
        }
        SocketConnection.connect(to: address, loop: loop, timeout: timeout) { result in
            switch result {
            case .success(let connection):
                completion(.success(connection))
            case .failure(let error):
                attempt(addresses.dropFirst(), loop: loop, timeout: timeout, lastError: error, completion: completion)
            }
        }
    }
}
