import HTTP1
@testable import Proxy
import Testing

@Suite struct HeaderRewriteTests {
    private func rewrite(_ headers: [(String, String)], target: String = "/x") -> HTTPRequestHead {
        let request = HTTPRequestHead(method: "GET", target: Array(target.utf8), headers: HTTPHeaders(headers))
        let injected = HeaderRewrite.Injected(
            host: HTTPField("Host", "api.example"), authorization: HTTPField("Authorization", "Bearer T0KEN"), apiKey: HTTPField("X-Api-Key", "K3Y"))
        return HeaderRewrite.upstreamRequest(
            from: request, target: request.target, injected: injected,
            clientIP: "192.0.2.7", requestID: HeaderRewrite.requestIDField("rid"), forwardedChunked: false)
    }

    @Test func injectsCredentialsAndReplacesTheClients() {
        let head = rewrite([("Authorization", "Bearer client"), ("X-Api-Key", "client-key"), ("Accept", "application/json")])
        #expect(head.headers.values("authorization").map { String(decoding: $0, as: UTF8.self) } == ["Bearer T0KEN"])
        #expect(head.headers.values("x-api-key").map { String(decoding: $0, as: UTF8.self) } == ["K3Y"])
        #expect(head.headers.firstString("host") == "api.example")
        #expect(head.headers.firstString("accept") == "application/json")
    }

    @Test func dropsHopByHopAndConnectionNamedFields() {
        let head = rewrite([
            ("Connection", "keep-alive, X-Private"), ("X-Private", "1"), ("Keep-Alive", "timeout=5"), ("TE", "trailers"),
            ("Upgrade", "h2c"), ("Proxy-Authorization", "Basic abc"), ("Proxy-Connection", "keep-alive"), ("Trailer", "X"),
            ("X-Kept", "yes"),
        ])
        for name in ["connection", "x-private", "keep-alive", "te", "upgrade", "proxy-authorization", "proxy-connection", "trailer"] {
            #expect(!head.headers.contains(name), "\(name) must not be forwarded")
        }
        #expect(head.headers.firstString("x-kept") == "yes")
    }

    @Test func connectionCannotStripTheInjectedCredentials() {
        let head = rewrite([("Connection", "Authorization, X-Api-Key, Host")])
        #expect(head.headers.firstString("authorization") == "Bearer T0KEN")
        #expect(head.headers.firstString("x-api-key") == "K3Y")
        #expect(head.headers.firstString("host") == "api.example")
    }

    @Test func appendsToXForwardedFor() {
        #expect(rewrite([]).headers.firstString("x-forwarded-for") == "192.0.2.7")
        #expect(rewrite([("X-Forwarded-For", "203.0.113.1")]).headers.firstString("x-forwarded-for") == "203.0.113.1, 192.0.2.7")
        #expect(rewrite([("X-Forwarded-Proto", "https")]).headers.values("x-forwarded-proto").map { String(decoding: $0, as: UTF8.self) } == ["http"])
        // Several lines are one list (RFC 9110 §5.3): all of it is kept, in order.
        let several = rewrite([("X-Forwarded-For", "203.0.113.1"), ("Accept", "*/*"), ("x-forwarded-for", "198.51.100.2, 198.51.100.3")])
        #expect(several.headers.values("x-forwarded-for").map { String(decoding: $0, as: UTF8.self) } == ["203.0.113.1, 198.51.100.2, 198.51.100.3, 192.0.2.7"])
    }

    @Test func clientRequestIDHostAndExpectAreReplacedOrDropped() {
        let head = rewrite([("X-Request-Id", "client-chosen"), ("Host", "proxy.local"), ("Expect", "100-continue"), ("Transfer-Encoding", "chunked"), ("HOST", "again")])
        #expect(head.headers.values("x-request-id").map { String(decoding: $0, as: UTF8.self) } == ["rid"])
        #expect(head.headers.values("host").map { String(decoding: $0, as: UTF8.self) } == ["api.example"])
        #expect(head.headers.fields.first?.hasName("host") == true)   // RFC 9112 §3.2: Host first
        #expect(!head.headers.contains("expect"))
        #expect(!head.headers.contains("transfer-encoding"))
    }

    @Test func fieldNamesMatchWhateverTheirCase() {
        #expect(Array("Keep-Alive".utf8).hasName("keep-alive"))
        #expect(Array("X-API-KEY".utf8).hasName("x-api-key"))
        #expect(!Array("x-api-kez".utf8).hasName("x-api-key"))
        #expect(!Array("x-api-ke".utf8).hasName("x-api-key"))
        // Bytes that lowercase onto letters only by accident ("@" + 0x20 is "`") stay distinct.
        #expect(!Array("@".utf8).hasName("`"))
        for name in ["te", "trailer", "upgrade", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "proxy-authenticate", "proxy-authorization"] {
            #expect(HeaderRewrite.isHopByHop(Array(name.uppercased().utf8)), "\(name)")
        }
        #expect(!HeaderRewrite.isHopByHop(Array("content-length".utf8)))
    }

    @Test func absoluteFormIsReducedToPathAndQuery() {
        func origin(_ text: String) -> String? { HeaderRewrite.originForm(of: Array(text.utf8)).map { String(decoding: $0, as: UTF8.self) } }
        #expect(origin("/a/b?c=%2F") == "/a/b?c=%2F")
        #expect(origin("http://evil.example/a?b=1") == "/a?b=1")
        #expect(origin("HTTPS://evil.example:8443") == "/")
        #expect(origin("http://evil.example?x") == "/?x")
        #expect(origin("ftp://x/y") == nil)
        #expect(origin("evil.example:443") == nil)
    }

    @Test func responseLosesHopByHopFields() {
        var headers = HTTPHeaders([("Connection", "close, X-Upstream-Private"), ("X-Upstream-Private", "1"), ("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")])
        headers.add("Keep-Alive", "timeout=5")
        let head = HeaderRewrite.clientResponse(from: HTTPResponseHead(status: 200, headers: headers), requestID: HeaderRewrite.requestIDField("rid"))
        #expect(!head.headers.contains("connection"))
        #expect(!head.headers.contains("x-upstream-private"))
        #expect(!head.headers.contains("transfer-encoding"))
        #expect(!head.headers.contains("keep-alive"))
        #expect(head.headers.firstString("content-type") == "application/json")
        #expect(head.headers.firstString("x-request-id") == "rid")
    }
}
