import HTTP1
import Testing
@testable import Upstream

/// The HTTP/2 channel's one-pass check for a request body agrees with `announcesBody`.
@Suite struct AnnouncesBodyTests {
    static let cases: [[(String, String)]] = [
        [],
        [("Host", "a"), ("Accept", "*/*")],
        [("Content-Length", "0")],
        [("content-length", "4096")],
        [("Content-Length", "000")],
        [("Content-Length", "007")],
        [("CONTENT-LENGTH", "12"), ("Content-Length", "0")],
        [("Content-Length", "0"), ("Content-Length", "12")],
        [("Content-Length", "+3")],
        [("Content-Length", "x")],
        [("Content-Length", "")],
        [("Content-Length", "99999999999999999999999")],
        [("Transfer-Encoding", "chunked")],
        [("transfer-encoding", "gzip, chunked"), ("Content-Length", "0")],
        [("X-Content-Length", "5"), ("Content-Lengths", "5")],
    ]

    @Test(arguments: cases)
    func agreesWithTheHead(_ fields: [(String, String)]) {
        let head = HTTPRequestHead(method: "POST", target: Array("/".utf8), headers: HTTPHeaders(fields))
        #expect(HTTP2StreamChannel.announcesBody(head.headers) == head.announcesBody)
    }
}
