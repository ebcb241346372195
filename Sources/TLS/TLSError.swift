import COpenSSL
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A TLS failure with a message fit for a log line or an HTTP 502 body.
public struct TLSError: Error, Sendable, CustomStringConvertible {
    public var message: String
    /// The peer's certificate was rejected (unknown CA, wrong name, expired, ...), as opposed
    /// to a protocol or I/O problem. Callers report these differently: retrying will not help.
    public var isVerificationFailure: Bool
    public var description: String { message }

    public init(_ message: String, isVerificationFailure: Bool = false) {
        self.message = message
        self.isVerificationFailure = isVerificationFailure
    }

    /// `operation`: what failed, e.g. "TLS handshake". Drains OpenSSL's error queue of this
    /// thread, keeping the first entry: later entries are usually consequences of it.
    static func fromErrorQueue(_ operation: String) -> TLSError {
        var first: UInt = 0
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            if first == 0 { first = code }
        }
        guard first != 0 else { return TLSError("\(operation) failed") }
        return TLSError("\(operation) failed: \(describe(first))")
    }

    /// The reason text ("wrong version number", "No such file or directory") when there is
    /// one, else the full "error:0A00010B:SSL routines::..." string.
    static func describe(_ code: UInt) -> String {
        if ERR_GET_LIB(code) == ERR_LIB_SYS, let text = strerror(ERR_GET_REASON(code)) {
            return String(cString: text)
        }
        if let reason = ERR_reason_error_string(code) {
            return String(cString: reason)
        }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
