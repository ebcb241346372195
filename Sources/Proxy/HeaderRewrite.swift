import HTTP1

/// The proxy's whole header discipline, in one place (after Go's `httputil.ReverseProxy`).
public enum HeaderRewrite {
    /// What happens to a client's field on its way upstream.
    enum Disposition { case keep, drop, forwardedFor }

    /// Hop-by-hop fields (RFC 9110 §7.6.1): they describe one connection, not the message,
    /// and must not be forwarded. `Proxy-Connection` and `Keep-Alive` are the non-standard
    /// but widespread ones; `TE` goes too (what a client accepts is said for its own hop; the
    /// trailers of an HTTP/2 response are relayed whatever it said, as RFC 9110 §6.5.1 allows). Compares bytes in
    /// place (by length first): this runs for every field of every message.
    static func isHopByHop(_ name: [UInt8]) -> Bool {
        switch name.count {
        case 2: return name.hasName("te")
        case 7: return name.hasName("trailer") || name.hasName("upgrade")
        case 10: return name.hasName("connection") || name.hasName("keep-alive")
        case 16: return name.hasName("proxy-connection")
        case 17: return name.hasName("transfer-encoding")
        case 18: return name.hasName("proxy-authenticate")
        case 19: return name.hasName("proxy-authorization")
        default: return false
        }
    }

    /// A client field on its way upstream: hop-by-hop fields go; so do the fields the proxy
    /// sets itself. The client's own credentials never reach Floriday (ours replace them);
    /// `Expect` is answered by the proxy (RFC 9110 §10.1.1); `Host`, `X-Forwarded-Proto` and
    /// `X-Request-Id` are replaced; `X-Forwarded-For` is extended; `X-Floriday-Organization` is the proxy's.
    static func requestDisposition(_ name: [UInt8]) -> Disposition {
        switch name.count {
        case 4: return name.hasName("host") ? .drop : .keep
        case 6: return name.hasName("expect") ? .drop : .keep
        case 9: return name.hasName("x-api-key") ? .drop : .keep
        case 12: return name.hasName("x-request-id") ? .drop : .keep
        case 13: return name.hasName("authorization") ? .drop : .keep
        case 15: return name.hasName("x-forwarded-for") ? .forwardedFor : .keep
        case 17: return name.hasName("x-forwarded-proto") || name.hasName("transfer-encoding") ? .drop : .keep
        // The proxy's own routing field: it chose the API key and goes no further.
        case 23: return name.hasName("x-floriday-organization") ? .drop : .keep
        default: return isHopByHop(name) ? .drop : .keep
        }
    }

    /// The fields a `Connection` header names (RFC 9110 §7.6.1): hop-by-hop as well.
    /// Empty (and no allocation) when there is no `Connection` header, the common case.
    /// `close` and `keep-alive` (nearly every `Connection` header) name no field the proxy
    /// would forward anyway, so they are not listed.
    static func connectionNamed(_ headers: HTTPHeaders) -> [ArraySlice<UInt8>] {
        var named: [ArraySlice<UInt8>] = []
        for index in headers.fields.indices where headers.fields[index].name.count == 10 && headers.fields[index].name.hasName("connection") {
            forEachListElement(headers.fields[index].value) { token in
                if token.hasName("close" as StaticString) || token.hasName("keep-alive" as StaticString) { return }
                named.append(token)
            }
        }
        return named
    }

    private static func isNamed(_ name: [UInt8], in named: [ArraySlice<UInt8>]) -> Bool {
        named.contains { $0.count == name.count && $0.hasName(name) }
    }

    /// Removes hop-by-hop fields and every field the `Connection` header names (§7.6.1).
    public static func removeHopByHop(_ headers: inout HTTPHeaders) {
        let named = connectionNamed(headers)
        headers.removeAll { isHopByHop($0.name) || (!named.isEmpty && isNamed($0.name, in: named)) }
    }

    /// The fields the proxy adds to every upstream request, built ahead where they can be.
    public struct Injected {
        /// `Host: <the API's authority>` (RFC 9110 §7.2: the authority of the target URI).
        public var host: HTTPField
        /// `Authorization: Bearer <token>` (from `AccessToken.authorizationField`).
        public var authorization: HTTPField
        /// `X-Api-Key: <key>`.
        public var apiKey: HTTPField

        public init(host: HTTPField, authorization: HTTPField, apiKey: HTTPField) {
            self.host = host
            self.authorization = authorization
            self.apiKey = apiKey
        }
    }

    private static let forwardedProtoHTTP = HTTPField("X-Forwarded-Proto", "http")
    private static let transferEncodingChunked = HTTPField("Transfer-Encoding", "chunked")
    private static let forwardedForName = Array("X-Forwarded-For".utf8)
    private static let requestIDName = Array("X-Request-Id".utf8)

    /// `X-Request-Id: <id>`, built once per request: it goes upstream (again on a replay) and
    /// back to the client. An id is visible ASCII only (`ProxyHandler.requestID`), so it is
    /// taken as it is; anything else is sanitised as any other value the proxy sets.
    public static func requestIDField(_ requestID: String) -> HTTPField {
        let bytes = Array(requestID.utf8)
        if bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) { return HTTPField(name: requestIDName, value: bytes) }
        return HTTPField(name: requestIDName, value: HTTPField("", requestID).value)
    }

    /// Builds the upstream request head from the client's, in one pass over its fields.
    ///
    /// The credentials are appended after the client's fields are filtered, so
    /// `Connection: Authorization` from a client cannot strip the proxy's own header.
    public static func upstreamRequest(
        from request: HTTPRequestHead, target: [UInt8], injected: Injected,
        clientIP: String?, requestID: HTTPField, forwardedChunked: Bool
    ) -> HTTPRequestHead {
        let named = connectionNamed(request.headers)
        var fields: [HTTPField] = []
        fields.reserveCapacity(request.headers.count + 6)
        fields.append(injected.host)
        var forwardedFor: [UInt8] = []
        // Borrowed in place: only the fields kept are retained (once, by `fields`).
        request.headers.fields.withUnsafeBufferPointer { given in
            for index in given.indices {
                switch requestDisposition(given[index].name) {
                case .drop:
                    continue
                case .forwardedFor:
                    // Several lines are one comma-separated list (RFC 9110 §5.3).
                    if !forwardedFor.isEmpty { forwardedFor.append(contentsOf: ", ".utf8) }
                    forwardedFor.append(contentsOf: given[index].value)
                case .keep:
                    if !named.isEmpty && isNamed(given[index].name, in: named) { continue }
                    fields.append(given[index])
                }
            }
        }
        // RFC 7239's de-facto predecessors: append the client to X-Forwarded-For, name the
        // scheme it used.
        if let clientIP {
            if !forwardedFor.isEmpty { forwardedFor.append(contentsOf: ", ".utf8) }
            forwardedFor.append(contentsOf: clientIP.utf8)
        }
        if !forwardedFor.isEmpty { fields.append(HTTPField(name: forwardedForName, value: forwardedFor)) }
        fields.append(forwardedProtoHTTP)
        fields.append(requestID)
        if forwardedChunked { fields.append(transferEncodingChunked) }
        fields.append(injected.authorization)
        fields.append(injected.apiKey)
        return HTTPRequestHead(method: request.method, target: target, version: .http1_1, headers: HTTPHeaders(fields: fields))
    }

    /// Builds the client response head from the upstream's: hop-by-hop fields removed; the
    /// length is kept (the server connection re-frames the body when there is none).
    public static func clientResponse(from response: HTTPResponseHead, requestID: HTTPField) -> HTTPResponseHead {
        let named = connectionNamed(response.headers)
        var fields: [HTTPField] = []
        fields.reserveCapacity(response.headers.count + 1)
        var hasRequestID = false
        response.headers.fields.withUnsafeBufferPointer { given in
            for index in given.indices {
                let name = given[index].name
                if isHopByHop(name) || (!named.isEmpty && isNamed(name, in: named)) { continue }
                if name.count == 12 && name.hasName("x-request-id") { hasRequestID = true }
                fields.append(given[index])
            }
        }
        if !hasRequestID { fields.append(requestID) }
        var head = response
        head.version = .http1_1
        head.headers = HTTPHeaders(fields: fields)
        return head
    }

    /// A trailer section from the API on its way to the client (HTTP/2 responses; RFC 9110
    /// §6.5): hop-by-hop fields go, and so do the fields a trailer must not carry because they
    /// frame or route the message (`Content-Length`, `Host`). The rest is passed on as sent;
    /// the client's framing decides whether it can carry them (`ServerExchange.end`).
    public static func clientTrailers(from fields: [HTTPField]) -> HTTPHeaders {
        var kept: [HTTPField] = []
        for field in fields {
            if isHopByHop(field.name) { continue }
            if field.name.count == 14 && field.name.hasName("content-length") { continue }
            if field.name.count == 4 && field.name.hasName("host") { continue }
            kept.append(field)
        }
        return HTTPHeaders(fields: kept)
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
