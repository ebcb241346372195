import EventLoop
import HTTP1

/// A whole response, collected in memory (for small control-plane calls such as the token endpoint).
public struct CollectedResponse: Sendable {
    public var head: HTTPResponseHead
    public var body: [UInt8]
}

extension UpstreamPool {
    /// Sends one request with a small body and collects the response (at most `maxBodyBytes`).
    /// Retries once on a fresh connection when a reused one turned out to be dead.
    public func fetch(
        method: String, target: String, headers: HTTPHeaders, body: [UInt8] = [], maxBodyBytes: Int = 1 << 20,
        completion: @escaping (Result<CollectedResponse, UpstreamError>) -> Void
    ) {
        var head = HTTPRequestHead(method: method, target: Array(target.utf8), headers: headers)
        head.headers.replaceOrAdd("Host", endpoint.authority)
        if !body.isEmpty || method == "POST" || method == "PUT" {
            head.headers.replaceOrAdd("Content-Length", String(body.count))
        }
        attemptFetch(head: head, body: body, maxBodyBytes: maxBodyBytes, retried: false, completion: completion)
    }

    private func attemptFetch(
        head: HTTPRequestHead, body: [UInt8], maxBodyBytes: Int, retried: Bool,
        completion: @escaping (Result<CollectedResponse, UpstreamError>) -> Void
    ) {
        acquire { result in
            switch result {
            case .failure(let error):
                completion(.failure(error))
            case .success(let (connection, reused)):
                let collector = ResponseCollector(maxBodyBytes: maxBodyBytes) { result in
                    if case .failure(let error) = result, !retried,
                       error.isSafeToRetry(method: head.method, onReusedConnection: reused) {
                        self.attemptFetch(head: head, body: body, maxBodyBytes: maxBodyBytes, retried: true, completion: completion)
                        return
                    }
                    completion(result)
                }
                collector.connection = connection
                connection.sendRequest(head, handler: collector)
                body.withUnsafeBytes { connection.writeBody($0) }
                connection.endRequest()
            }
        }
    }
}

private final class ResponseCollector: UpstreamResponseHandler {
    let maxBodyBytes: Int
    let completion: (Result<CollectedResponse, UpstreamError>) -> Void
    var head: HTTPResponseHead?
    var body: [UInt8] = []
    var done = false
    weak var connection: UpstreamChannel?

    init(maxBodyBytes: Int, completion: @escaping (Result<CollectedResponse, UpstreamError>) -> Void) {
        self.maxBodyBytes = maxBodyBytes
        self.completion = completion
    }

    func upstreamResponseHead(_ head: HTTPResponseHead) { self.head = head }

    func upstreamResponseBody(_ bytes: UnsafeRawBufferPointer) {
        guard !done else { return }
        if body.count + bytes.count > maxBodyBytes {
            done = true
            connection?.abandon()
            completion(.failure(.invalidResponse("response body larger than \(maxBodyBytes) bytes")))
            return
        }
        body.append(contentsOf: bytes)
    }

    func upstreamResponseEnd() {
        guard !done, let head else { return }
        done = true
        completion(.success(CollectedResponse(head: head, body: body)))
    }

    func upstreamFailed(_ error: UpstreamError) {
        guard !done else { return }
        done = true
        completion(.failure(error))
    }

    func upstreamWritable() {}
}
