/// A message that violates HTTP/1.1 syntax or a configured limit.
///
/// `status` is what a server answers the client with; a client (the proxy talking to an
/// upstream) turns any of these into 502 itself. `code` is a stable slug for logs and
/// problem documents. `message` never quotes header values: they may carry credentials.
public struct HTTP1ParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: Int
    public var code: String
    public var message: String

    public init(status: Int, code: String, message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    public var description: String { "\(status) \(code): \(message)" }
}

extension HTTP1ParseError {
    // Start line (RFC 9112 §3, §4).
    static let invalidRequestLine = Self(status: 400, code: "invalid-request-line", message: "The request line is not 'method SP request-target SP HTTP-version'.")
    static let invalidTarget = Self(status: 400, code: "invalid-target", message: "The request target contains a byte outside visible ASCII or has an unknown form.")
    static let targetTooLong = Self(status: 414, code: "target-too-long", message: "The request target is longer than allowed.")
    static let unsupportedVersion = Self(status: 505, code: "unsupported-version", message: "Only HTTP/1.0 and HTTP/1.1 are supported.")
    static let invalidStatusLine = Self(status: 400, code: "invalid-status-line", message: "The status line is not 'HTTP-version SP 3DIGIT SP reason'.")

    // Line structure and field lines (RFC 9112 §2.2, §5).
    static let bareCR = Self(status: 400, code: "bare-cr", message: "A CR is not followed by LF.")
    static let bareLF = Self(status: 400, code: "bare-lf", message: "A line ends with LF without a preceding CR.")
    static let obsFold = Self(status: 400, code: "obs-fold", message: "A field line starts with whitespace (obsolete line folding).")
    static let invalidHeaderName = Self(status: 400, code: "invalid-header-name", message: "A field name is empty, is not a token, or is not followed by a colon.")
    static let spaceBeforeColon = Self(status: 400, code: "space-before-colon", message: "Whitespace between a field name and its colon.")
    static let invalidHeaderValue = Self(status: 400, code: "invalid-header-value", message: "A field value contains a control character.")
    static let headerTooLarge = Self(status: 431, code: "header-too-large", message: "The message head is larger than allowed.")
    static let tooManyHeaders = Self(status: 431, code: "too-many-headers", message: "The message has more field lines than allowed.")
    static let trailerTooLarge = Self(status: 431, code: "trailer-too-large", message: "The trailer section is larger than allowed.")
    static let missingHost = Self(status: 400, code: "missing-host", message: "An HTTP/1.1 request has no Host header field.")
    static let duplicateHost = Self(status: 400, code: "duplicate-host", message: "The request has more than one Host header field.")
    static let invalidHost = Self(status: 400, code: "invalid-host", message: "The Host header field is not a valid authority.")

    // Framing (RFC 9112 §6, §7).
    static let contentLengthWithTransferEncoding = Self(status: 400, code: "content-length-with-transfer-encoding", message: "The message has both Content-Length and Transfer-Encoding.")
    static let invalidContentLength = Self(status: 400, code: "invalid-content-length", message: "Content-Length is not a non-negative decimal integer.")
    static let conflictingContentLength = Self(status: 400, code: "conflicting-content-length", message: "Content-Length appears more than once or holds a list.")
    static let unsupportedTransferEncoding = Self(status: 501, code: "unsupported-transfer-encoding", message: "A transfer coding before the final chunked is not supported; only 'chunked' is.")
    static let chunkedNotFinal = Self(status: 400, code: "chunked-not-final", message: "Transfer-Encoding does not end in chunked, so the body length cannot be determined.")
    static let invalidTransferEncoding = Self(status: 400, code: "invalid-transfer-encoding", message: "Transfer-Encoding is malformed or applies chunked more than once.")
    static let transferEncodingInHTTP10 = Self(status: 400, code: "transfer-encoding-in-http10", message: "An HTTP/1.0 message has Transfer-Encoding.")
    static let invalidChunkSize = Self(status: 400, code: "invalid-chunk-size", message: "A chunk size is not a hexadecimal number.")
    static let chunkSizeOverflow = Self(status: 400, code: "chunk-size-overflow", message: "A chunk size has more than 16 hexadecimal digits.")
    static let invalidChunkExtension = Self(status: 400, code: "invalid-chunk-extension", message: "A chunk extension is malformed.")
    static let chunkExtensionTooLong = Self(status: 400, code: "chunk-extension-too-long", message: "The chunk extensions of one chunk are longer than allowed.")
    static let missingChunkCRLF = Self(status: 400, code: "missing-chunk-crlf", message: "Chunk data is not followed by CRLF.")
    static let bodyTooLarge = Self(status: 413, code: "body-too-large", message: "The message body is larger than allowed.")
    static let unexpectedEOF = Self(status: 400, code: "unexpected-eof", message: "The connection closed in the middle of a message.")
}
