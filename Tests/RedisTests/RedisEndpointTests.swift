import Redis
import Testing

@Suite struct RedisEndpointTests {
    @Test func hostPortAndDatabase() throws {
        let endpoint = try RedisEndpoint(url: "redis://redis.internal:6380/2")
        #expect(endpoint == RedisEndpoint(host: "redis.internal", port: 6380, database: 2))
        #expect(try RedisEndpoint(url: "redis://localhost") == RedisEndpoint(host: "localhost"))
        #expect(try RedisEndpoint(url: "redis://[::1]:7000/0") == RedisEndpoint(host: "::1", port: 7000))
    }

    @Test func passwordWithAndWithoutUserIsNeverShown() throws {
        let endpoint = try RedisEndpoint(url: "redis://:p%40ss@w0rd@127.0.0.1:6379/0")
        #expect(endpoint.password == "p@ss@w0rd")
        #expect(endpoint.user == nil)
        #expect(try RedisEndpoint(url: "redis://proxy:secret@h/1").user == "proxy")
        #expect(endpoint.description == "redis://:***@127.0.0.1:6379/0")
        #expect(!endpoint.description.contains("w0rd"))
    }

    @Test func tlsIsRecognised() throws {
        #expect(try RedisEndpoint(url: "rediss://h:6380").tls)
    }

    @Test(arguments: [
        ("http://h:6379", "must start with redis://"),
        ("redis://:6379", "no host"),
        ("redis://h:0", "port must be 1-65535"),
        ("redis://h:99999", "port must be 1-65535"),
        ("redis://h/db", "the path must be a database number, e.g. /0"),
        ("redis://[::1:6379", "unclosed [ in the host"),
        ("redis://:%zz@h", "bad %-escape in the password"),
    ])
    func badURLsSayWhy(url: String, reason: String) {
        #expect(throws: RedisEndpointError.self) { try RedisEndpoint(url: url) }
        do { _ = try RedisEndpoint(url: url) } catch { #expect(error.description == reason) }
    }
}
