import HTTP1
import Testing
@testable import Upstream

/// Whether a request head announces a body (RFC 9112 §6.3), as the upstream channels decide it.
@Suite struct AnnouncesBodyTests {
    static let cases: [([(String, String)], Bool)] = [
        ([], false),
        ([("Host", "a"), ("Accept", "*/*")], false),
        ([("Content-Length", "0")], false),
        ([("content-length", "4096")], true),
        ([("Content-Length", "000")], false),
        ([("Content-Length", "007")], true),
        ([("CONTENT-LENGTH", "12"), ("Content-Length", "0")], true),
        ([("Content-Length", "0"), ("Content-Length", "12")], false),
        ([("Content-Length", "+3")], true),
        ([("Content-Length", "x")], false),
        ([("Content-Length", "")], false),
        ([("Content-Length", "99999999999999999999999")], false),
        ([("Transfer-Encoding", "chunked")], true),
        ([("transfer-encoding", "gzip, chunked"), ("Content-Length", "0")], true),
        ([("X-Content-Length", "5"), ("Content-Lengths", "5")], false),
    ]

    @Test(arguments: cases)
    func decidesFromTheFramingFields(_ fields: [(String, String)], _ expected: Bool) {
        let head = HTTPRequestHead(method: "POST", target: Array("/".utf8), headers: HTTPHeaders(fields))
        #expect(head.announcesBody == expected)
    }
}
