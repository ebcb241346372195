import HTTP1

/// The proxy's whole header discipline, in one place (after Go's `httputil.ReverseProxy`).
public enum HeaderRewrite {
    /// Hop-by-hop fields (RFC 9110 §7.6.1): they describe one connection, not the message,
    /// and must not be forwarded. `Proxy-Connection` and `Keep-Alive` are the non-standard
    /// but widespread ones; `TE` goes too because trailers are not relayed.
    static let hopByHop = [
        "connection", "proxy-connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
        "te", "trailer", "transfer-encoding", "upgrade",
    ]

    /// Removes hop-by-hop fields and every field the `Connection` header names (§7.6.1).
    /// Runs on every request and response: compares bytes in place, allocates nothing
    /// unless a `Connection` header names extra fields.
    public static func removeHopByHop(_ headers: inout HTTPHeaders) {
        let named = headers.contains("connection") ? headers.connectionTokens() : []
        headers.removeAll { field in
            hopByHop.contains(where: field.hasName) || named.contains(where: field.hasName)
        }
    }

    /// Builds the upstream request head from the client's.
    ///
    /// Order matters: hop-by-hop fields (including those a client names in `Connection`) are
    /// removed first and the credentials injected last, so `Connection: Authorization` from a
    /// client cannot strip the proxy's own header.
    public static func upstreamRequest(
        from request: HTTPRequestHead, target: [UInt8], upstreamAuthority: String, bearer: String, apiKey: String,
        clientIP: String?, requestID: String, forwardedChunked: Bool
    ) -> HTTPRequestHead {
        var headers = request.headers
        removeHopByHop(&headers)
        // The client's own credentials never reach Floriday; ours replace them.
        headers.remove("authorization")
        headers.remove("x-api-key")
        headers.remove("host")
        // The proxy answers "Expect: 100-continue" itself (RFC 9110 §10.1.1).
        headers.remove("expect")
        // RFC 7239's de-facto predecessors: append the client to X-Forwarded-For, name the scheme it used.
        if let clientIP {
            if let prior = headers.firstString("x-forwarded-for") {
                headers.remove("x-forwarded-for")
                headers.add("X-Forwarded-For", prior + ", " + clientIP)
            } else {
                headers.add("X-Forwarded-For", clientIP)
            }
        }
        headers.replaceOrAdd("X-Forwarded-Proto", "http")
        headers.replaceOrAdd("X-Request-Id", requestID)
        if forwardedChunked { headers.add("Transfer-Encoding", "chunked") }
        var fields = [HTTPField("Host", upstreamAuthority)]
        fields.append(contentsOf: headers.fields)
        fields.append(HTTPField("Authorization", "Bearer " + bearer))
        fields.append(HTTPField("X-Api-Key", apiKey))
        var result = HTTPHeaders()
        result.fields = fields
        return HTTPRequestHead(method: request.method, target: target, version: .http1_1, headers: result)
    }

    /// Builds the client response head from the upstream's: hop-by-hop fields removed; the
    /// length is kept (the server connection re-frames the body when there is none).
    public static func clientResponse(from response: HTTPResponseHead, requestID: String) -> HTTPResponseHead {
        var headers = response.headers
        removeHopByHop(&headers)
        if !headers.contains("x-request-id") { headers.add("X-Request-Id", requestID) }
        return HTTPResponseHead(status: response.status, reason: response.reasonString, version: .http1_1, headers: headers)
    }

    /// The path and query to send upstream. An absolute-form target (RFC 9112 §3.2.2) is
    /// reduced to its path and query: the proxy talks to the configured API only, whatever
    /// authority the client named. Bytes are copied as they came, never decoded.
    static func originForm(of target: [UInt8]) -> [UInt8]? {
        if target.first == UInt8(ascii: "/") { return target }
        if target == [UInt8(ascii: "*")] { return target }
        // scheme "://" authority [path-abempty] ["?" query]
        guard let schemeEnd = findSequence(target, Array("://".utf8)) else { return nil }
        let scheme = target[..<schemeEnd].map { $0 | 0x20 }
        guard scheme == Array("http".utf8) || scheme == Array("https".utf8) else { return nil }
        let authorityStart = schemeEnd + 3
        var index = authorityStart
        while index < target.count, target[index] != UInt8(ascii: "/"), target[index] != UInt8(ascii: "?") { index += 1 }
        guard index > authorityStart else { return nil }
        if index == target.count { return [UInt8(ascii: "/")] }
        if target[index] == UInt8(ascii: "?") { return [UInt8(ascii: "/")] + target[index...] }
        return Array(target[index...])
    }

    private static func findSequence(_ haystack: [UInt8], _ needle: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for start in 0...(haystack.count - needle.count) where haystack[start..<start + needle.count].elementsEqual(needle) {
            return start
        }
        return nil
    }
}

extension HTTPResponseHead {
    var reasonString: String { String(decoding: reason, as: UTF8.self) }
}
