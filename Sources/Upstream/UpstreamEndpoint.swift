import TLS

/// Where an upstream lives and how to talk to it.
public struct UpstreamEndpoint: Sendable {
    public var host: String
    public var port: Int
    /// nil for plain HTTP.
    public var tls: TLSContext?
    /// The Host header value (authority).
    public var authority: String

    public init(host: String, port: Int, tls: TLSContext?, authority: String? = nil) {
        self.host = host
        self.port = port
        self.tls = tls
        let defaultPort = tls == nil ? 80 : 443
        let bracketed = host.contains(":") ? "[\(host)]" : host
        self.authority = authority ?? (port == defaultPort ? bracketed : "\(bracketed):\(port)")
    }
}
