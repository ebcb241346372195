import CNGHTTP2
import HTTP1

/// Settings a session announces and the limits it applies to what the peer sends.
public struct HTTP2Settings: Sendable {
    /// SETTINGS_MAX_CONCURRENT_STREAMS: streams the peer may open at once.
    public var maxConcurrentStreams: UInt32 = 100
    /// SETTINGS_INITIAL_WINDOW_SIZE: how much body the peer may send on a stream before the
    /// application consumed it (the per-stream backpressure bound).
    public var initialWindowSize: Int32 = 1 << 20
    /// The connection-level receive window (RFC 9113 §6.9.2): bounds the body bytes held for all
    /// paused streams together.
    public var connectionWindowSize: Int32 = 16 << 20
    /// SETTINGS_MAX_HEADER_LIST_SIZE, and the size of a request head beyond which the server
    /// answers 431 (names and values plus 32 bytes per field, RFC 9113 §6.5.2).
    public var maxHeaderListSize = 65536
    /// Header fields in a request head (pseudo-header fields not counted); more is 431.
    public var maxHeaders = 100
    /// Length of `:path`; longer is 414.
    public var maxTargetBytes = 8192
    /// Whether the session answers PING itself. Off only for peers that must look dead.
    public var autoPingAck = true
    /// Client: whether Authorization values go into the HPACK dynamic table, so a repeated
    /// token is a table reference after its first use (see `HPACKEncoder`). Off, they are
    /// never-indexed literals, the safe choice when the values may be low-entropy secrets
    /// (RFC 7541 §7.1.3).
    public var indexesAuthorization = false
    /// Whether nghttp2's allocations go through a pool that reuses freed blocks
    /// (`cnghttp2_pool` in the CNGHTTP2 shim): cheaper for a session carrying many streams at
    /// once, at the price of keeping freed blocks (at most 128 per 16-byte size class up to
    /// 512 bytes, about 1 MiB if every class filled up; nghttp2 uses a few): for the few busy
    /// upstream connections, not for every client connection.
    public var recyclesAllocations = false

    public init() {}
}

/// Error codes of RFC 9113 §7 the application uses.
public enum HTTP2ErrorCode {
    public static let noError = UInt32(NGHTTP2_NO_ERROR.rawValue)
    public static let protocolError = UInt32(NGHTTP2_PROTOCOL_ERROR.rawValue)
    public static let internalError = UInt32(NGHTTP2_INTERNAL_ERROR.rawValue)
    public static let refusedStream = UInt32(NGHTTP2_REFUSED_STREAM.rawValue)
    public static let cancel = UInt32(NGHTTP2_CANCEL.rawValue)
    public static let enhanceYourCalm = UInt32(NGHTTP2_ENHANCE_YOUR_CALM.rawValue)
}

/// The HTTP/2 connection preface a client sends first (RFC 9113 §3.4).
public let http2ClientPreface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

/// A session's failure: nghttp2's error code and text.
public struct HTTP2SessionError: Error, Sendable, CustomStringConvertible {
    public var code: Int32
    public var description: String { String(cString: nghttp2_strerror(code)) }
}

/// What a session reports. Every call happens inside `receive` or `send`, on the session's
/// thread. Default implementations ignore the event.
public protocol HTTP2SessionDelegate: AnyObject {
    /// Server: a request head arrived on a new stream. `endStream`: no body follows.
    func http2RequestHead(stream: Int32, head: HTTPRequestHead, endStream: Bool)
    /// Server: a request head that breaks a configured limit; the stream waits for a response.
    func http2RequestRefused(stream: Int32, error: HTTP1ParseError)
    /// Client: the final response head arrived. `endStream`: no body follows.
    func http2ResponseHead(stream: Int32, head: HTTPResponseHead, endStream: Bool)
    /// Body bytes, valid during the call. Consume them with `consume(stream:count:)`.
    func http2Data(stream: Int32, bytes: UnsafeRawBufferPointer)
    /// The peer ended its side of the stream (after a body or trailers).
    func http2StreamEnded(stream: Int32)
    /// The stream is closed: `errorCode` is `noError` for a normal end, else the RST_STREAM code.
    func http2StreamClosed(stream: Int32, errorCode: UInt32)
    /// The peer sent GOAWAY.
    func http2GoAway(lastStreamID: Int32, errorCode: UInt32)
    /// The stream's queued body fell below `HTTP2Session.lowWater` (resume a paused producer).
    func http2StreamWritable(stream: Int32)
    /// Client: a trailer section arrived (RFC 9113 §8.1); the stream ends after it.
    func http2Trailers(stream: Int32, fields: [HTTPField])
    /// The peer acknowledged a PING this session sent.
    func http2PingAcknowledged()
    /// The peer sent a PING (answered by the session unless `autoPingAck` is off).
    func http2PingReceived()
    /// The peer's SETTINGS frame was applied (e.g. a new SETTINGS_MAX_CONCURRENT_STREAMS).
    func http2RemoteSettingsChanged()
}

extension HTTP2SessionDelegate {
    public func http2RequestHead(stream: Int32, head: HTTPRequestHead, endStream: Bool) {}
    public func http2RequestRefused(stream: Int32, error: HTTP1ParseError) {}
    public func http2ResponseHead(stream: Int32, head: HTTPResponseHead, endStream: Bool) {}
    public func http2Data(stream: Int32, bytes: UnsafeRawBufferPointer) {}
    public func http2StreamEnded(stream: Int32) {}
    public func http2StreamClosed(stream: Int32, errorCode: UInt32) {}
    public func http2GoAway(lastStreamID: Int32, errorCode: UInt32) {}
    public func http2StreamWritable(stream: Int32) {}
    public func http2Trailers(stream: Int32, fields: [HTTPField]) {}
    public func http2PingAcknowledged() {}
    public func http2PingReceived() {}
    public func http2RemoteSettingsChanged() {}
}

/// One HTTP/2 connection's state machine (nghttp2), on bytes: the owner feeds what the socket
/// read to `receive` and writes what `send` produces. nghttp2 never touches a socket.
///
/// Body bytes to send are queued per stream and handed to nghttp2 as its flow-control windows
/// allow. Received body bytes are not acknowledged (WINDOW_UPDATE) until the application calls
/// `consume`, so a stream whose consumer is slow stops its sender after one window.
///
/// Not thread-safe: one owner, one thread (its loop).
public final class HTTP2Session {
    public enum Role { case server, client }

    /// A stream whose queued body falls below this is reported writable.
    public static let lowWater = 64 * 1024

    public let role: Role
    public weak var delegate: HTTP2SessionDelegate?
    let settings: HTTP2Settings
    var session: OpaquePointer!
    /// nghttp2's allocator when `settings.recyclesAllocations` (freed after the session).
    private let pool: UnsafeMutablePointer<cnghttp2_pool>?
    var streams: [Int32: StreamState] = [:]
    /// The stream `stream(_:)` found last (0: none; stream 0 is the connection).
    private var lastID: Int32 = 0
    private var lastState: StreamState?
    var writable: [Int32] = []
    /// Client: header blocks are encoded here, not by nghttp2 (see `HPACKEncoder`): nghttp2
    /// gets only `:method` (which it needs to know what the response may carry), and the
    /// block of the HEADERS frame it produces is replaced in `send` by the encoder's block of
    /// the whole head, so the encoder is the only one the peer's decoder follows.
    private var encoder: HPACKEncoder?
    private var block: [UInt8] = []
    /// The authority of the last request, as bytes (the same for every request, in practice).
    private var lastAuthority: (text: String, bytes: [UInt8]) = ("", [])

    final class StreamState {
        var head: HeadBuilder?
        /// Client: the final response head was delivered; a later HEADERS frame is trailers.
        var responseDelivered = false
        var trailers: [HTTPField]?
        /// Client: the head and trailers to encode when nghttp2 sends their HEADERS frames.
        var pendingHead: PendingHead?
        var pendingTrailers: HTTPHeaders?
        var out: [UInt8] = []
        var outOffset = 0
        var outEnded = false
        /// Sent as a trailer section after the last DATA frame.
        var outTrailers: HTTPHeaders?
        var deferred = false
        var hasProvider = false
        var wantsWritable = false
        var queued: Int { out.count - outOffset }
    }

    /// Client: a request head waiting for its HEADERS frame (see `appendHeaders`).
    struct PendingHead {
        var method: [UInt8]
        var scheme: [UInt8]
        var authority: [UInt8]
        var path: [UInt8]
        var headers: HTTPHeaders
    }

    /// The fields of a head as they arrive (kept in the stream's state: no object per head).
    struct HeadBuilder {
        var method: [UInt8]?
        var path: [UInt8]?
        var authority: [UInt8]?
        /// Client: the `:status` value; -1 when it is not a number.
        var status: Int?
        var fields: [HTTPField] = []
        var cookies: [[UInt8]] = []
        var listSize = 0
        var failure: HTTP1ParseError?

        /// Takes one field of the head, applying the session's limits.
        mutating func add(name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>, settings: HTTP2Settings) {
            // RFC 9113 §6.5.2: the size of a field is its name and value plus 32.
            listSize += name.count + value.count + 32
            if failure != nil { return }
            if listSize > settings.maxHeaderListSize {
                failure = .init(status: 431, code: "header-too-large", message: "The request head is larger than allowed.")
                return
            }
            if name.first == UInt8(ascii: ":") {
                switch name.count {
                case 5 where HTTP2Session.same(name, ":path"):
                    if value.count > settings.maxTargetBytes {
                        failure = .init(status: 414, code: "target-too-long", message: "The request target is longer than allowed.")
                    }
                    path = Array(value)
                case 7 where HTTP2Session.same(name, ":method"): method = Array(value)
                case 7 where HTTP2Session.same(name, ":status"): status = HTTP2Session.statusCode(value)
                case 10 where HTTP2Session.same(name, ":authority"): authority = Array(value)
                default: break   // :scheme, :protocol (checked by nghttp2)
                }
                return
            }
            if fields.count >= settings.maxHeaders {
                failure = .init(status: 431, code: "too-many-headers", message: "The request has more header fields than allowed.")
                return
            }
            if name.count == 6, HTTP2Session.same(name, "cookie") {
                cookies.append(Array(value))
                return
            }
            if fields.isEmpty { fields.reserveCapacity(12) }   // no regrowing for a usual head
            fields.append(HTTPField(name: knownFieldNames.array(for: name), value: Array(value)))
        }
    }

    /// The bytes of `name` are `text` (same length assumed).
    @inline(__always)
    static func same(_ name: UnsafeBufferPointer<UInt8>, _ text: StaticString) -> Bool {
        for index in 0..<name.count where name[index] != text.utf8Start[index] { return false }
        return true
    }

    /// A `:status` value as a number (nghttp2 has checked it is three digits; anything else
    /// is -1, which no response head is delivered for).
    static func statusCode(_ value: UnsafeBufferPointer<UInt8>) -> Int {
        guard (1...9).contains(value.count) else { return -1 }
        var code = 0
        for byte in value {
            guard byte &- 0x30 < 10 else { return -1 }
            code = code * 10 + Int(byte &- 0x30)
        }
        return code
    }

    public init(role: Role, settings: HTTP2Settings = HTTP2Settings(), delegate: HTTP2SessionDelegate? = nil) {
        self.role = role
        self.settings = settings
        self.delegate = delegate
        pool = settings.recyclesAllocations ? cnghttp2_pool_new() : nil
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, onBeginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, onHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, onFrameRecv)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, onDataChunk)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, onStreamClose)
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, onFrameSend)
        var option: OpaquePointer?
        nghttp2_option_new(&option)
        // The application acknowledges received DATA itself (`consume`): that is the
        // per-stream backpressure.
        nghttp2_option_set_no_auto_window_update(option, 1)
        if !settings.autoPingAck { nghttp2_option_set_no_auto_ping_ack(option, 1) }
        let context = Unmanaged.passUnretained(self).toOpaque()
        var created: OpaquePointer?
        // nghttp2 copies the allocator; nil is its default (malloc).
        func create(_ allocator: UnsafeMutablePointer<nghttp2_mem>?) {
            switch role {
            case .server: nghttp2_session_server_new3(&created, callbacks, context, option, allocator)
            case .client: nghttp2_session_client_new3(&created, callbacks, context, option, allocator)
            }
        }
        if let pool {
            var allocator = cnghttp2_pool_mem(pool)
            create(&allocator)
        } else {
            create(nil)
        }
        session = created
        if role == .client { encoder = HPACKEncoder(indexesAuthorization: settings.indexesAuthorization) }
        nghttp2_option_del(option)
        nghttp2_session_callbacks_del(callbacks)

        var entries = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: settings.maxConcurrentStreams),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: UInt32(settings.initialWindowSize)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: UInt32(settings.maxHeaderListSize)),
        ]
        if role == .client { entries.removeFirst() }
        nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &entries, entries.count)
        if settings.connectionWindowSize > cnghttp2_initial_window_size() {
            nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, settings.connectionWindowSize)
        }
    }

    deinit {
        nghttp2_session_del(session)
        cnghttp2_pool_delete(pool)
    }

    // MARK: Bytes in and out

    /// Processes bytes from the peer; events reach the delegate during the call. A thrown
    /// error is fatal to the connection (a GOAWAY may be waiting in `send`).
    public func receive(_ bytes: UnsafeRawBufferPointer) throws(HTTP2SessionError) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        let result = nghttp2_session_mem_recv(session, base.assumingMemoryBound(to: UInt8.self), bytes.count)
        if result < 0 { throw HTTP2SessionError(code: Int32(result)) }
    }

    /// Appends frames ready to go to `output` until it holds `limit` bytes or nothing is left;
    /// then reports streams whose queue drained.
    public func send(into output: inout [UInt8], limit: Int = 256 * 1024) throws(HTTP2SessionError) {
        while output.count < limit {
            var pointer: UnsafePointer<UInt8>?
            let count = nghttp2_session_mem_send(session, &pointer)
            if count < 0 { throw HTTP2SessionError(code: Int32(count)) }
            guard count > 0, let pointer else { break }
            let chunk = UnsafeBufferPointer(start: pointer, count: count)
            // A chunk is one frame (nghttp2 hands them out one by one).
            if encoder != nil, count >= 9, chunk[3] == UInt8(NGHTTP2_HEADERS.rawValue) {
                try appendHeaders(frame: chunk, to: &output)
            } else {
                output.append(contentsOf: chunk)
            }
        }
        if !writable.isEmpty {
            let drained = writable
            writable.removeAll(keepingCapacity: true)
            for id in drained { delegate?.http2StreamWritable(stream: id) }
        }
    }

    /// Client: replaces the block of a HEADERS frame nghttp2 produced with the encoder's block
    /// of the head (or trailers) kept for its stream, in as many frames as the peer's
    /// SETTINGS_MAX_FRAME_SIZE needs (HEADERS, then CONTINUATION, RFC 9113 §6.10). Blocks are
    /// encoded in the order their frames leave, which is the order the peer decodes them in.
    private func appendHeaders(frame: UnsafeBufferPointer<UInt8>, to output: inout [UInt8]) throws(HTTP2SessionError) {
        let length = Int(frame[0]) << 16 | Int(frame[1]) << 8 | Int(frame[2])
        let flags = frame[4]
        let id = Int32(bitPattern: (UInt32(frame[5]) << 24 | UInt32(frame[6]) << 16 | UInt32(frame[7]) << 8 | UInt32(frame[8])) & 0x7FFF_FFFF)
        let endHeaders = UInt8(NGHTTP2_FLAG_END_HEADERS.rawValue)
        let padded = UInt8(NGHTTP2_FLAG_PADDED.rawValue)
        let priority = UInt8(NGHTTP2_FLAG_PRIORITY.rawValue)
        guard let state = stream(id), state.pendingHead != nil || state.pendingTrailers != nil else {
            // A head nghttp2 encoded itself (see `withHeaderList`): never-indexed literals and
            // static table references, which leave the peer's table as the encoder knows it.
            output.append(contentsOf: frame)
            return
        }
        // What nghttp2 made of `:method` alone is one frame.
        guard length + 9 == frame.count, flags & endHeaders != 0 else {
            throw HTTP2SessionError(code: NGHTTP2_ERR_HEADER_COMP.rawValue)
        }
        // Moved out while in use (and back at the end), so that neither is copied on write.
        var block = self.block
        var encoder = self.encoder.take()!
        self.block = []
        block.removeAll(keepingCapacity: true)
        encoder.beginBlock(&block)
        if let head = state.pendingHead.take() {
            encoder.encode(name: Self.methodName, value: head.method, into: &block)
            encoder.encode(name: Self.schemeName, value: head.scheme, into: &block)
            encoder.encode(name: Self.authorityName, value: head.authority, into: &block)
            encoder.encode(name: Self.pathName, value: head.path, into: &block)
            forEachSentField(head.headers) { name, value in encoder.encode(name: name, value: value, into: &block) }
        } else if let trailers = state.pendingTrailers.take() {
            for field in trailers.fields where Self.isSentTrailer(field) { encoder.encode(name: field.name, value: field.value, into: &block) }
        }
        self.encoder = encoder
        defer { self.block = block }
        // nghttp2 pads nothing (no padding callback); a priority field is kept as it is.
        let prefix = flags & padded != 0 ? 1 : 0
        let priorityBytes = flags & priority != 0 ? 5 : 0
        let maxFrameSize = Int(nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_FRAME_SIZE))
        var offset = min(block.count, maxFrameSize - priorityBytes)
        let firstFlags = flags & ~(padded | endHeaders) | (offset == block.count ? endHeaders : 0)
        Self.appendFrameHeader(length: priorityBytes + offset, type: UInt8(NGHTTP2_HEADERS.rawValue), flags: firstFlags, stream: id, to: &output)
        output.append(contentsOf: frame[(9 + prefix)..<(9 + prefix + priorityBytes)])
        output.append(contentsOf: block[0..<offset])
        while offset < block.count {
            let count = min(maxFrameSize, block.count - offset)
            let last = offset + count == block.count
            Self.appendFrameHeader(length: count, type: UInt8(NGHTTP2_CONTINUATION.rawValue), flags: last ? endHeaders : 0, stream: id, to: &output)
            output.append(contentsOf: block[offset..<(offset + count)])
            offset += count
        }
    }

    private static func appendFrameHeader(length: Int, type: UInt8, flags: UInt8, stream id: Int32, to output: inout [UInt8]) {
        let id = UInt32(bitPattern: id)
        output.append(UInt8(truncatingIfNeeded: length >> 16))
        output.append(UInt8(truncatingIfNeeded: length >> 8))
        output.append(UInt8(truncatingIfNeeded: length))
        output.append(type)
        output.append(flags)
        output.append(UInt8(truncatingIfNeeded: id >> 24))
        output.append(UInt8(truncatingIfNeeded: id >> 16))
        output.append(UInt8(truncatingIfNeeded: id >> 8))
        output.append(UInt8(truncatingIfNeeded: id))
    }

    public var wantsRead: Bool { nghttp2_session_want_read(session) != 0 }
    public var wantsWrite: Bool { nghttp2_session_want_write(session) != 0 }
    /// Streams open (or half closed) right now.
    public var openStreams: Int { streams.count }
    /// The peer's SETTINGS_MAX_CONCURRENT_STREAMS (unlimited until it says otherwise).
    public var remoteMaxConcurrentStreams: Int {
        Int(nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS))
    }
    /// The highest stream id the peer opened that the session processed.
    public var lastProcessedStreamID: Int32 { nghttp2_session_get_last_proc_stream_id(session) }

    // MARK: Responses and requests

    /// Server: submits the response head; `hasBody` false ends the stream with it. Field names
    /// are sent in lower case; connection-specific fields are dropped (RFC 9113 §8.2.2).
    public func submitResponse(stream id: Int32, status: Int, headers: HTTPHeaders, hasBody: Bool) {
        // Three digits without a String for the usual status; any other keeps its decimal form.
        let threeDigits = (100...999).contains(status)
        let digits = threeDigits ? (UInt8(0x30 + status / 100), UInt8(0x30 + status / 10 % 10), UInt8(0x30 + status % 10)) : (0, 0, 0)
        let decimal = threeDigits ? [] : Array(String(status).utf8)
        let result = withHeaderList(headers: headers, extraBytes: 3 + decimal.count) { list in
            if threeDigits {
                withUnsafeBytes(of: digits) { list.append(":status", $0) }
            } else {
                decimal.withUnsafeBytes { list.append(":status", $0) }
            }
            return hasBody
        } submit: { nv, count, provider in
            nghttp2_submit_response(session, id, nv, count, provider)
        }
        if id > 0, result == 0, hasBody { state(for: id).hasProvider = true }
    }

    /// Server: an interim response (1xx), e.g. 100 Continue (RFC 9113 §8.1).
    public func submitInterim(stream id: Int32, status: Int) {
        var status = Array(String(status).utf8)
        var name = Array(":status".utf8)
        name.withUnsafeMutableBufferPointer { n in
            status.withUnsafeMutableBufferPointer { v in
                var nv = nghttp2_nv(name: n.baseAddress, value: v.baseAddress, namelen: n.count, valuelen: v.count, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
                _ = nghttp2_submit_headers(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, nil, &nv, 1, nil)
            }
        }
    }

    /// Client: opens a stream with `head` (`:authority` from `authority`, or the Host field).
    /// Returns the stream id, or a negative nghttp2 error.
    @discardableResult
    public func submitRequest(_ head: HTTPRequestHead, scheme: String = "http", authority: String? = nil, hasBody: Bool) -> Int32 {
        if encoder != nil, let created = submitRequestForEncoder(head, scheme: scheme, authority: authority, hasBody: hasBody) {
            return created
        }
        var method = head.method
        var scheme = scheme
        var authority = authority
        let host = authority == nil ? head.headers.first("host") ?? [] : []
        let extra = method.utf8.count + scheme.utf8.count + (authority?.utf8.count ?? host.count) + head.target.count
        let created = withHeaderList(headers: head.headers, extraBytes: extra) { list in
            method.withUTF8 { list.append(":method", UnsafeRawBufferPointer($0)) }
            scheme.withUTF8 { list.append(":scheme", UnsafeRawBufferPointer($0)) }
            if authority != nil {
                authority!.withUTF8 { list.append(":authority", UnsafeRawBufferPointer($0)) }
            } else {
                host.withUnsafeBytes { list.append(":authority", $0) }
            }
            head.target.withUnsafeBytes { list.append(":path", $0) }
            return hasBody
        } submit: { nv, count, provider in
            nghttp2_submit_request(session, nil, nv, count, provider, nil)
        }
        if created > 0 { state(for: created).hasProvider = hasBody }
        return created
    }

    /// `submitRequest` with the session's own encoder: the head is kept for `send`, nghttp2
    /// gets `:method` only. Nil when the head is too large for nghttp2 to send at all (its
    /// limit on a header block): then nghttp2 gets the whole head and refuses it as always.
    private func submitRequestForEncoder(_ head: HTTPRequestHead, scheme: String, authority: String?, hasBody: Bool) -> Int32? {
        let method = Self.methodBytes(head.method)
        let authorityBytes: [UInt8]
        if let authority {
            if authority != lastAuthority.text { lastAuthority = (authority, Array(authority.utf8)) }
            authorityBytes = lastAuthority.bytes
        } else {
            authorityBytes = head.headers.first("host") ?? []
        }
        let pending = PendingHead(method: method, scheme: scheme == "https" ? Self.https : scheme == "http" ? Self.http : Array(scheme.utf8),
                                  authority: authorityBytes, path: head.target, headers: head.headers)
        // nghttp2's bound on what a head encodes to (nghttp2_hd_deflate_bound, plus room for a
        // priority field), against its limit for a header block it sends (NGHTTP2_MAX_HEADERSLEN).
        let pseudoBound = 12 + 5 + 4 * 12 + 7 + pending.method.count + 7 + pending.scheme.count + 10 + authorityBytes.count + 5 + head.target.count
        var bound = pseudoBound
        for field in head.headers.fields { bound += 12 + field.name.count + field.value.count }
        if bound > 65536 {
            // Counted again with only the fields that are sent (the usual head never gets here).
            bound = pseudoBound
            forEachSentField(head.headers) { name, value in bound += 12 + name.count + value.count }
            guard bound <= 65536 else { return nil }
        }
        let created: Int32 = Self.methodName.withUnsafeBufferPointer { name in
            method.withUnsafeBufferPointer { value in
                // Never indexed: nghttp2's block is replaced, so its table must stay empty.
                var nv = nghttp2_nv(name: UnsafeMutablePointer(mutating: name.baseAddress), value: UnsafeMutablePointer(mutating: value.baseAddress),
                                    namelen: name.count, valuelen: value.count, flags: UInt8(NGHTTP2_NV_FLAG_NO_INDEX.rawValue))
                if hasBody {
                    var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: dataSourceRead)
                    return nghttp2_submit_request(session, nil, &nv, 1, &provider, nil)
                }
                return nghttp2_submit_request(session, nil, &nv, 1, nil, nil)
            }
        }
        if created > 0 {
            let state = state(for: created)
            state.hasProvider = hasBody
            state.pendingHead = pending
        }
        return created
    }

    // The encoder's own arrays: a name that is the same array is recognised without reading it.
    private static let methodName = HPACKEncoder.methodName
    private static let schemeName = HPACKEncoder.schemeName
    private static let authorityName = HPACKEncoder.authorityName
    private static let pathName = HPACKEncoder.pathName
    private static let https = Array("https".utf8)
    private static let http = Array("http".utf8)
    private static let methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"].map { ($0, Array($0.utf8)) }

    private static func methodBytes(_ method: String) -> [UInt8] {
        for (text, bytes) in methods where text == method { return bytes }
        return Array(method.utf8)
    }

    /// Calls `body` with the name and value of each field of `headers` that HTTP/2 carries:
    /// connection-specific fields are left out (RFC 9113 §8.2.2), and so is Host for a client
    /// (it went into `:authority`); TE is kept only as "trailers".
    private func forEachSentField(_ headers: HTTPHeaders, _ body: ([UInt8], [UInt8]) -> Void) {
        let fields = headers.fields
        var connectionListed = false
        for field in fields where field.name.count == 10 && lowercaseEquals(field.name, "connection") { connectionListed = true }
        // Fields named by Connection are connection-specific too (RFC 9110 §7.6.1); rare.
        let connectionNamed: [[UInt8]] = connectionListed ? headers.connectionTokens().map { Array($0.utf8) } : []
        let isClient = role == .client
        for field in fields {
            let name = field.name
            if let special = Self.specialField(name) {
                switch special {
                case .te:
                    // RFC 9113 §8.2.2: TE may be sent, with "trailers" as its only value.
                    guard isClient, Self.isTrailersOnly(field.value) else { continue }
                    body(Self.teName, Self.trailersValue)
                    continue
                case .host:
                    if isClient { continue }
                case .connectionSpecific:
                    continue
                }
            }
            if !connectionNamed.isEmpty, connectionNamed.contains(where: { lowercaseEquals(name, $0) }) { continue }
            body(name, field.value)
        }
    }

    private static let teName = Array("te".utf8)
    private static let trailersValue = Array("trailers".utf8)

    /// The name/value list of a head for nghttp2 (which copies it, and sends the names in
    /// lower case): the pseudo-header fields `pseudo` adds, then the fields of `headers` except
    /// connection-specific ones (RFC 9113 §8.2.2). Names and values are copied once into one
    /// buffer, which is on the stack for the usual head; nothing per field is allocated.
    /// `pseudo` returns whether the head has a body (a data provider is passed).
    private func withHeaderList(headers: HTTPHeaders, extraBytes: Int, pseudo: (inout HeaderList) -> Bool,
                                submit: (UnsafePointer<nghttp2_nv>, Int, UnsafePointer<nghttp2_data_provider>?) -> Int32) -> Int32 {
        var bytes = extraBytes + 32   // the pseudo-header names
        for field in headers.fields { bytes += field.name.count + field.value.count }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: max(bytes, 1)) { storage in
            withUnsafeTemporaryAllocation(of: nghttp2_nv.self, capacity: headers.count + 4) { entries in
                // With the session's own encoder, nghttp2's block must leave the table alone (it
                // only gets here with a head nghttp2 refuses to send, but nothing relies on that).
                let flags = encoder != nil ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE
                var list = HeaderList(storage: storage.baseAddress!, entries: entries.baseAddress!, flags: UInt8(flags.rawValue))
                let hasBody = pseudo(&list)
                forEachSentField(headers) { name, value in
                    name.withUnsafeBytes { n in value.withUnsafeBytes { v in list.append(n, v) } }
                }
                if hasBody {
                    var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: dataSourceRead)
                    return submit(list.entries, list.count, &provider)
                }
                return submit(list.entries, list.count, nil)
            }
        }
    }

    /// Names `forEachSentField` treats specially.
    private enum SpecialField { case te, host, connectionSpecific }

    /// RFC 9113 §8.2.2: Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding and
    /// Upgrade are never sent in HTTP/2; TE only as "trailers". (By length first: most names
    /// are none of them and cost one comparison.)
    private static func specialField(_ name: [UInt8]) -> SpecialField? {
        switch name.count {
        case 2: return lowercaseEquals(name, "te") ? .te : nil
        case 4: return lowercaseEquals(name, "host") ? .host : nil
        case 7: return lowercaseEquals(name, "upgrade") ? .connectionSpecific : nil
        case 10: return lowercaseEquals(name, "connection") || lowercaseEquals(name, "keep-alive") ? .connectionSpecific : nil
        case 16: return lowercaseEquals(name, "proxy-connection") ? .connectionSpecific : nil
        case 17: return lowercaseEquals(name, "transfer-encoding") ? .connectionSpecific : nil
        default: return nil
        }
    }

    /// A TE value naming only "trailers" (case-insensitive; list members may carry spaces).
    static func isTrailersOnly(_ value: [UInt8]) -> Bool {
        var members = 0
        for member in value.split(separator: UInt8(ascii: ",")) {
            let trimmed = member.drop { $0 == 0x20 || $0 == 0x09 }.reversed().drop { $0 == 0x20 || $0 == 0x09 }.reversed()
            if trimmed.isEmpty { continue }
            guard trimmed.count == 8, trimmed.map({ $0 | 0x20 }).elementsEqual("trailers".utf8) else { return false }
            members += 1
        }
        return members > 0
    }
    /// Queues body bytes for a stream whose head was submitted with `hasBody`.
    public func enqueueData(stream id: Int32, _ bytes: UnsafeRawBufferPointer) {
        guard let state = stream(id), state.hasProvider, !state.outEnded, bytes.count > 0 else { return }
        state.out.append(contentsOf: bytes)
        if state.queued >= Self.lowWater { state.wantsWritable = true }
        resumeIfDeferred(id, state)
    }

    /// Ends the body of a stream whose head was submitted with `hasBody`; `trailers`, when
    /// there are any, follow the body in a HEADERS frame that ends the stream (RFC 9113 §8.1).
    /// Names are sent in lower case; connection-specific fields are dropped.
    public func endData(stream id: Int32, trailers: HTTPHeaders = HTTPHeaders()) {
        guard let state = stream(id), state.hasProvider, !state.outEnded else { return }
        state.outEnded = true
        if !trailers.isEmpty { state.outTrailers = trailers }
        resumeIfDeferred(id, state)
    }

    /// The body is all sent: END_STREAM on the last DATA frame, or on the trailers after it.
    private func endOfData(_ id: Int32, _ state: StreamState, flags: UnsafeMutablePointer<UInt32>) {
        flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
        guard let trailers = state.outTrailers else { return }
        state.outTrailers = nil
        if encoder != nil {
            // The encoder writes the block when nghttp2 sends the (empty) trailer HEADERS frame.
            guard trailers.fields.contains(where: Self.isSentTrailer) else { return }
            if nghttp2_submit_trailer(session, id, nil, 0) == 0 {
                state.pendingTrailers = trailers
                flags.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
            }
            return
        }
        let fields = trailers.fields
        var bytes = 0
        for field in fields { bytes += field.name.count + field.value.count }
        // Submitting the trailers from the read callback is what nghttp2 documents for this.
        let result: Int32 = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: max(bytes, 1)) { storage in
            withUnsafeTemporaryAllocation(of: nghttp2_nv.self, capacity: max(fields.count, 1)) { entries in
                var list = HeaderList(storage: storage.baseAddress!, entries: entries.baseAddress!)
                for field in fields where Self.isSentTrailer(field) {
                    field.name.withUnsafeBytes { n in field.value.withUnsafeBytes { v in list.append(n, v) } }
                }
                guard list.count > 0 else { return -1 }
                return nghttp2_submit_trailer(session, id, list.entries, list.count)
            }
        }
        if result == 0 { flags.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue }
    }

    /// Trailer fields that are sent: not connection-specific (TE included), not pseudo-header
    /// fields (RFC 9113 §8.1).
    private static func isSentTrailer(_ field: HTTPField) -> Bool {
        switch specialField(field.name) {
        case .te?, .connectionSpecific?: return false
        case .host?, nil: return field.name.first != UInt8(ascii: ":")
        }
    }

    /// Body bytes queued for a stream and not yet handed to nghttp2.
    public func queuedBytes(stream id: Int32) -> Int {
        stream(id)?.queued ?? 0
    }

    private func resumeIfDeferred(_ id: Int32, _ state: StreamState) {
        if state.deferred {
            state.deferred = false
            nghttp2_session_resume_data(session, id)
        }
    }

    /// Whether nghttp2 still knows the stream (open or half closed).
    public func streamExists(_ id: Int32) -> Bool {
        nghttp2_session_find_stream(session, id) != nil
    }

    /// Sends a PING (RFC 9113 §6.7); the acknowledgement is reported to the delegate.
    public func ping() {
        nghttp2_submit_ping(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nil)
    }

    /// Sends SETTINGS_MAX_CONCURRENT_STREAMS mid-connection (a server lowering its limit).
    public func announceMaxConcurrentStreams(_ value: UInt32) {
        var entry = nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: value)
        nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &entry, 1)
    }

    /// Acknowledges `count` received bytes at the connection level only (RFC 9113 §6.9): the
    /// stream's own window still waits for `consumeStream`, so one slow stream cannot hold the
    /// connection window for all the others.
    public func consumeConnection(count: Int) {
        guard count > 0 else { return }
        nghttp2_session_consume_connection(session, count)
    }

    /// Acknowledges `count` received bytes of one stream only (see `consumeConnection`).
    public func consumeStream(_ id: Int32, count: Int) {
        guard count > 0 else { return }
        nghttp2_session_consume_stream(session, id, count)
    }

    /// Resets a stream (RST_STREAM with `errorCode`).
    public func reset(stream id: Int32, errorCode: UInt32) {
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, errorCode)
    }

    /// Acknowledges `count` received body bytes of a stream (and of the connection): they may
    /// be sent again (WINDOW_UPDATE).
    public func consume(stream id: Int32, count: Int) {
        guard count > 0 else { return }
        if nghttp2_session_consume(session, id, count) != 0 {
            nghttp2_session_consume_connection(session, count)
        }
    }

    /// Sends GOAWAY: streams up to `lastProcessedStreamID` run to their end, no new ones open
    /// (RFC 9113 §6.8).
    /// `lastStreamID`: the last stream the sender processed, when it is not the last it received.
    public func goAway(errorCode: UInt32 = HTTP2ErrorCode.noError, lastStreamID: Int32? = nil) {
        nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), lastStreamID ?? lastProcessedStreamID, errorCode, nil, 0)
    }

    /// Whether the peer has ended its side of the stream.
    public func remoteClosed(stream id: Int32) -> Bool {
        nghttp2_session_get_stream_remote_close(session, id) == 1
    }

    /// The stream's state, created on first use. (A class: `streams[id, default:]` would
    /// hand out a fresh object without storing it.)
    private func state(for id: Int32) -> StreamState {
        if let state = stream(id) { return state }
        let state = StreamState()
        streams[id] = state
        lastID = id
        lastState = state
        return state
    }

    /// The stream's state, if it is open. The callbacks of one frame (a field each), and the
    /// frames of one response, ask for the same stream many times in a row: the last one found
    /// is kept, so most lookups hash nothing.
    @inline(__always)
    private func stream(_ id: Int32) -> StreamState? {
        if id == lastID, let lastState { return lastState }
        guard let state = streams[id] else { return nil }
        lastID = id
        lastState = state
        return state
    }

    // MARK: From the callbacks

    func beginHeaders(_ frame: UnsafePointer<nghttp2_frame>) {
        let id = frame.pointee.hd.stream_id
        let category = frame.pointee.headers.cat
        if category == NGHTTP2_HCAT_REQUEST || category == NGHTTP2_HCAT_RESPONSE {
            state(for: id).head = HeadBuilder()
        } else if category == NGHTTP2_HCAT_HEADERS, role == .client, let state = stream(id) {
            if state.responseDelivered {
                state.trailers = []   // trailers after the final response
            } else if state.head?.status == nil {
                // A final response after an interim one.
                state.head = HeadBuilder()
            }
        }
    }

    func header(_ frame: UnsafePointer<nghttp2_frame>, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) -> Int32 {
        guard let state = stream(frame.pointee.hd.stream_id) else { return 0 }
        guard state.head != nil else {
            // Client: a trailer section; pseudo-header fields are not allowed there (nghttp2 checks).
            if role == .client, state.responseDelivered, state.trailers != nil, state.trailers!.count < settings.maxHeaders {
                state.trailers!.append(HTTPField(name: knownFieldNames.array(for: name), value: Array(value)))
            }
            return 0
        }
        state.head!.add(name: name, value: value, settings: settings)
        return 0
    }

    func frameReceived(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let id = frame.pointee.hd.stream_id
        let endStream = frame.pointee.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        switch UInt32(frame.pointee.hd.type) {
        case NGHTTP2_HEADERS.rawValue:
            guard let state = stream(id) else { return 0 }
            // Taken out of the state, not copied: its arrays stay uniquely referenced.
            if let builder = state.head.take() {
                if role == .server {
                    return requestHeadComplete(id, builder, endStream: endStream)
                }
                guard let status = builder.status, status >= 0 else {
                    state.head = builder
                    return 0
                }
                if (100..<200).contains(status) { return 0 }   // interim: wait for the final one
                state.responseDelivered = true
                var headers = HTTPHeaders(fields: builder.fields)
                if !builder.cookies.isEmpty { headers.fields.append(HTTPField(name: Array("cookie".utf8), value: Self.joinedCookies(builder.cookies))) }
                delegate?.http2ResponseHead(stream: id, head: HTTPResponseHead(status: status, version: HTTPVersion(major: 2, minor: 0), headers: headers), endStream: endStream)
            } else if endStream {
                if let trailers = state.trailers, !trailers.isEmpty {
                    state.trailers = nil
                    delegate?.http2Trailers(stream: id, fields: trailers)
                }
                delegate?.http2StreamEnded(stream: id)   // trailers
            }
        case NGHTTP2_DATA.rawValue:
            if endStream { delegate?.http2StreamEnded(stream: id) }
        case NGHTTP2_GOAWAY.rawValue:
            delegate?.http2GoAway(lastStreamID: frame.pointee.goaway.last_stream_id, errorCode: frame.pointee.goaway.error_code)
        case NGHTTP2_PING.rawValue:
            if frame.pointee.hd.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) != 0 {
                delegate?.http2PingAcknowledged()
            } else {
                delegate?.http2PingReceived()
            }
        case NGHTTP2_SETTINGS.rawValue:
            if frame.pointee.hd.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) == 0 {
                // The peer's decoder limit (RFC 7541 §4.2), applied by nghttp2 before this call.
                encoder?.setPeerLimit(Int(nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_HEADER_TABLE_SIZE)))
                delegate?.http2RemoteSettingsChanged()
            }
        default:
            break
        }
        return 0
    }

    /// Maps the pseudo-header fields to an HTTP/1-style head (RFC 9113 §8.3.1): `:path` is the
    /// target, `:authority` becomes Host when the request has none.
    private func requestHeadComplete(_ id: Int32, _ builder: HeadBuilder, endStream: Bool) -> Int32 {
        if let failure = builder.failure {
            delegate?.http2RequestRefused(stream: id, error: failure)
            return 0
        }
        guard let methodBytes = builder.method else { return protocolError(id) }
        let method = String(decoding: methodBytes, as: UTF8.self)
        // CONNECT has no :path; its target is the authority (RFC 9113 §8.5).
        guard let target = builder.path ?? (method == "CONNECT" ? builder.authority : nil) else { return protocolError(id) }
        var fields: [HTTPField] = []
        fields.reserveCapacity(builder.fields.count + 2)
        let host = builder.fields.first { $0.hasName("host") }
        if let authority = builder.authority {
            // RFC 9113 §8.3.1: a Host that names another entity than :authority is malformed.
            if let host, !host.value.elementsEqual(authority) { return protocolError(id) }
            if host == nil { fields.append(HTTPField(name: Array("host".utf8), value: authority)) }
        }
        fields.append(contentsOf: builder.fields)
        // RFC 9113 §8.2.3: split cookie fields are joined with "; " for an HTTP/1.1 hop.
        if !builder.cookies.isEmpty { fields.append(HTTPField(name: Array("cookie".utf8), value: Self.joinedCookies(builder.cookies))) }
        let head = HTTPRequestHead(method: method, target: target, version: HTTPVersion(major: 2, minor: 0), headers: HTTPHeaders(fields: fields))
        delegate?.http2RequestHead(stream: id, head: head, endStream: endStream)
        return 0
    }

    private func protocolError(_ id: Int32) -> Int32 {
        reset(stream: id, errorCode: HTTP2ErrorCode.protocolError)
        return 0
    }

    private static func joinedCookies(_ cookies: [[UInt8]]) -> [UInt8] {
        var joined: [UInt8] = []
        for (index, cookie) in cookies.enumerated() {
            if index > 0 { joined.append(contentsOf: "; ".utf8) }
            joined.append(contentsOf: cookie)
        }
        return joined
    }

    func dataChunk(stream id: Int32, _ bytes: UnsafeRawBufferPointer) {
        if let delegate, stream(id) != nil {
            delegate.http2Data(stream: id, bytes: bytes)
        } else {
            consume(stream: id, count: bytes.count)
        }
    }

    func streamClosed(_ id: Int32, errorCode: UInt32) {
        guard streams.removeValue(forKey: id) != nil else { return }
        if id == lastID {
            lastID = 0
            lastState = nil
        }
        delegate?.http2StreamClosed(stream: id, errorCode: errorCode)
    }

    func frameSent(_ frame: UnsafePointer<nghttp2_frame>) {
        let type = UInt32(frame.pointee.hd.type)
        guard role == .server, type == NGHTTP2_HEADERS.rawValue || type == NGHTTP2_DATA.rawValue,
              frame.pointee.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0 else { return }
        let id = frame.pointee.hd.stream_id
        // RFC 9113 §8.1: a server that answered before the request body ended may tell the
        // client to stop sending it with RST_STREAM(NO_ERROR).
        if nghttp2_session_get_stream_remote_close(session, id) == 0 {
            reset(stream: id, errorCode: HTTP2ErrorCode.noError)
        }
    }

    func readData(stream id: Int32, into buffer: UnsafeMutablePointer<UInt8>, length: Int, flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let state = stream(id) else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
        let count = min(length, state.queued)
        if count == 0 {
            if state.outEnded {
                endOfData(id, state, flags: flags)
                return 0
            }
            state.deferred = true
            return Int(NGHTTP2_ERR_DEFERRED.rawValue)
        }
        state.out.withUnsafeBytes { source in
            UnsafeMutableRawPointer(buffer).copyMemory(from: source.baseAddress! + state.outOffset, byteCount: count)
        }
        state.outOffset += count
        if state.outOffset == state.out.count {
            state.out.removeAll(keepingCapacity: state.out.capacity <= 1 << 20)
            state.outOffset = 0
            if state.outEnded { endOfData(id, state, flags: flags) }
        } else if state.outOffset >= 256 * 1024 && state.outOffset * 2 >= state.out.count {
            state.out.removeSubrange(0..<state.outOffset)
            state.outOffset = 0
        }
        if state.wantsWritable && state.queued < Self.lowWater {
            state.wantsWritable = false
            writable.append(id)
        }
        return count
    }
}

// MARK: Field names

/// Field names most messages carry, in the lower case HTTP/2 requires (RFC 9113 §8.2.1). A
/// received name equal to one of them shares its array: a retain instead of an allocation.
/// (Arrays are values, so sharing is invisible to users.)
struct KnownFieldNames: Sendable {
    /// By length: the names that long, each with `key(_:)` of its bytes.
    private var byLength = [[(key: UInt64, name: [UInt8])]](repeating: [], count: 32)

    init() {
        let names = [
            "accept", "accept-encoding", "accept-language", "accept-ranges", "access-control-allow-origin", "age",
            "authorization", "cache-control", "content-encoding", "content-language", "content-length",
            "content-type", "date", "etag", "expires", "host", "last-modified", "location", "referer", "retry-after",
            "server", "set-cookie", "strict-transport-security", "user-agent", "vary", "via", "x-api-key",
            "x-content-type-options", "x-forwarded-for", "x-forwarded-proto", "x-request-id",
        ]
        for name in names {
            let bytes = Array(name.utf8)
            byLength[bytes.count].append((bytes.withUnsafeBufferPointer { Self.key($0) }, bytes))
        }
    }

    @inline(__always)
    private static func key(_ name: UnsafeBufferPointer<UInt8>) -> UInt64 { lowercasedTail(name) }

    /// `name` in lower case: a known name's shared array, else `name` itself when it has no
    /// upper case letter, else a lower-cased copy.
    func lowercased(_ name: [UInt8]) -> [UInt8] {
        if name.count < byLength.count {
            let key = name.withUnsafeBufferPointer { Self.key($0) }
            for candidate in byLength[name.count] where candidate.key == key && lowercaseEquals(name, candidate.name) {
                return candidate.name
            }
        }
        guard name.contains(where: { $0 &- 0x41 < 26 }) else { return name }
        return name.map { $0 &- 0x41 < 26 ? $0 | 0x20 : $0 }
    }

    /// A received name (HTTP/2 names are lower case) as an array: shared when it is known.
    func array(for name: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        guard name.count < byLength.count else { return Array(name) }
        let key = Self.key(name)
        for candidate in byLength[name.count] where candidate.key == key {
            let same = candidate.name.withUnsafeBufferPointer { known in
                for index in 0..<known.count where known[index] != name[index] { return false }
                return true
            }
            if same { return candidate.name }
        }
        return Array(name)
    }
}

let knownFieldNames = KnownFieldNames()

/// The last (up to) eight bytes of a name, in lower case, as one word: names of the same
/// length rarely share them, so comparing words finds the candidate.
@inline(__always)
func lowercasedTail(_ name: UnsafeBufferPointer<UInt8>) -> UInt64 {
    var word: UInt64 = 0
    if name.count >= 8 {
        word = UnsafeRawBufferPointer(name).loadUnaligned(fromByteOffset: name.count - 8, as: UInt64.self)
    } else {
        for byte in name { word = word << 8 | UInt64(byte) }
    }
    return lowercasedWord(word)
}

/// ASCII upper case to lower case, eight bytes at once (the bytes in 0x41...0x5A get 0x20).
@inline(__always)
func lowercasedWord(_ word: UInt64) -> UInt64 {
    let ones: UInt64 = 0x0101_0101_0101_0101
    let low = word & (0x7F &* ones)
    let atLeastA = low &+ (0x80 - 0x41) &* ones
    let aboveZ = low &+ (0x80 - 0x5B) &* ones
    let upper = atLeastA & ~aboveZ & ~word & (0x80 &* ones)
    return word | upper >> 2
}

// MARK: Building name/value lists

/// A head's name/value list under construction: names and values are copied back to back
/// into `storage` (sized by the caller for all of them) and `entries` point into it.
struct HeaderList {
    let storage: UnsafeMutablePointer<UInt8>
    let entries: UnsafeMutablePointer<nghttp2_nv>
    /// nghttp2_nv flags of every entry.
    let flags: UInt8
    private(set) var used = 0
    private(set) var count = 0

    init(storage: UnsafeMutablePointer<UInt8>, entries: UnsafeMutablePointer<nghttp2_nv>, flags: UInt8 = UInt8(NGHTTP2_NV_FLAG_NONE.rawValue)) {
        self.storage = storage
        self.entries = entries
        self.flags = flags
    }

    mutating func append(_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) {
        let namePointer = copy(name)
        let valuePointer = copy(value)
        entries[count] = nghttp2_nv(name: namePointer, value: valuePointer, namelen: name.count, valuelen: value.count, flags: flags)
        count += 1
    }

    mutating func append(_ name: StaticString, _ value: UnsafeRawBufferPointer) {
        append(UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount), value)
    }

    mutating func append(_ name: StaticString, _ value: StaticString) {
        append(name, UnsafeRawBufferPointer(start: value.utf8Start, count: value.utf8CodeUnitCount))
    }

    private mutating func copy(_ bytes: UnsafeRawBufferPointer) -> UnsafeMutablePointer<UInt8> {
        let target = storage + used
        if let base = bytes.baseAddress, bytes.count > 0 {
            UnsafeMutableRawPointer(target).copyMemory(from: base, byteCount: bytes.count)
        }
        used += bytes.count
        return target
    }
}

/// `bytes` equals `lowercase` (lower-case ASCII) ignoring ASCII case.
@inline(__always)
private func lowercaseEquals(_ bytes: [UInt8], _ lowercase: StaticString) -> Bool {
    lowercaseEquals(bytes, UnsafeBufferPointer(start: lowercase.utf8Start, count: lowercase.utf8CodeUnitCount))
}

@inline(__always)
func lowercaseEquals(_ bytes: [UInt8], _ lowercase: [UInt8]) -> Bool {
    lowercase.withUnsafeBufferPointer { lowercaseEquals(bytes, $0) }
}

func lowercaseEquals(_ bytes: [UInt8], _ lowercase: UnsafeBufferPointer<UInt8>) -> Bool {
    guard bytes.count == lowercase.count else { return false }
    return bytes.withUnsafeBufferPointer { mine in
        let count = mine.count
        guard count >= 8 else {
            for index in 0..<count {
                let byte = mine[index]
                if (byte &- 0x41 < 26 ? byte | 0x20 : byte) != lowercase[index] { return false }
            }
            return true
        }
        // Eight bytes at a time; the last word overlaps the one before when the length is not
        // a multiple of eight.
        let mine = UnsafeRawBufferPointer(mine), other = UnsafeRawBufferPointer(lowercase)
        var offset = 0
        while true {
            if lowercasedWord(mine.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) != other.loadUnaligned(fromByteOffset: offset, as: UInt64.self) {
                return false
            }
            if offset == count - 8 { return true }
            offset = min(offset + 8, count - 8)
        }
    }
}

// MARK: nghttp2 callbacks (C function pointers; the session comes back through user_data)

@inline(__always)
private func owner(_ userData: UnsafeMutableRawPointer?) -> HTTP2Session {
    Unmanaged<HTTP2Session>.fromOpaque(userData!).takeUnretainedValue()
}

private func onBeginHeaders(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    owner(userData).beginHeaders(frame!)
    return 0
}

private func onHeader(
    _ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ name: UnsafePointer<UInt8>?, _ nameLength: Int,
    _ value: UnsafePointer<UInt8>?, _ valueLength: Int, _ flags: UInt8, _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    owner(userData).header(frame!, name: UnsafeBufferPointer(start: name, count: nameLength), value: UnsafeBufferPointer(start: value, count: valueLength))
}

private func onFrameRecv(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    owner(userData).frameReceived(frame!)
}

private func onDataChunk(
    _ session: OpaquePointer?, _ flags: UInt8, _ streamID: Int32, _ data: UnsafePointer<UInt8>?, _ length: Int, _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    owner(userData).dataChunk(stream: streamID, UnsafeRawBufferPointer(start: data, count: length))
    return 0
}

private func onStreamClose(_ session: OpaquePointer?, _ streamID: Int32, _ errorCode: UInt32, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    owner(userData).streamClosed(streamID, errorCode: errorCode)
    return 0
}

private func onFrameSend(_ session: OpaquePointer?, _ frame: UnsafePointer<nghttp2_frame>?, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    owner(userData).frameSent(frame!)
    return 0
}

private func dataSourceRead(
    _ session: OpaquePointer?, _ streamID: Int32, _ buffer: UnsafeMutablePointer<UInt8>?, _ length: Int,
    _ flags: UnsafeMutablePointer<UInt32>?, _ source: UnsafeMutablePointer<nghttp2_data_source>?, _ userData: UnsafeMutableRawPointer?
) -> Int {
    owner(userData).readData(stream: streamID, into: buffer!, length: length, flags: flags!)
}
