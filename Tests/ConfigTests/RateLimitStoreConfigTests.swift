import Config
import Foundation
import Redis
import Testing

/// `rate_limit.store`, its password and `rate_limit.replicas`.
struct RateLimitStoreConfigTests {
    @Test func theDefaultIsInProcessBucketsForOneReplica() throws {
        let config = try load("rate_limit: { enabled: true }")
        #expect(config.rateLimit.store == .memory)
        #expect(config.rateLimit.replicas == 1)
        #expect(try load("rate_limit: { store: memory }").rateLimit.store == .memory)
    }

    @Test func aRedisURLWithItsPartsAndReplicas() throws {
        let config = try load("rate_limit: { store: \"redis://redis.internal:6380/2\", replicas: 3 }")
        #expect(config.rateLimit.store == .redis(RedisEndpoint(host: "redis.internal", port: 6380, database: 2)))
        #expect(config.rateLimit.replicas == 3)
        let tls = try load("rate_limit: { store: \"rediss://:pw@redis:6379/0\" }")
        #expect(tls.rateLimit.store == .redis(RedisEndpoint(host: "redis", password: "pw", tls: true)))
    }

    @Test func thePasswordFromAVariableOrAFile() throws {
        var environment = credentials
        environment["REDIS_PASSWORD"] = "r3dis-pa55"
        let inURL = try load("rate_limit: { store: \"redis://:${REDIS_PASSWORD}@redis:6379/0\" }", environment: environment)
        #expect(inURL.rateLimit.store == .redis(RedisEndpoint(host: "redis", password: "r3dis-pa55")))
        let inline = try load("rate_limit: { store: \"redis://redis\", store_password: \"${REDIS_PASSWORD}\" }", environment: environment)
        #expect(inline.rateLimit.store == .redis(RedisEndpoint(host: "redis", password: "r3dis-pa55")))

        let file = NSTemporaryDirectory() + "floriday-proxy-redis-password-\(UUID().uuidString)"
        try "p@ss word:/#1\n".write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let fromFile = try load("rate_limit: { store: \"rediss://redis:6380\", store_password_file: \"\(file)\" }")
        #expect(fromFile.rateLimit.store == .redis(RedisEndpoint(host: "redis", port: 6380, password: "p@ss word:/#1", tls: true)))
    }

    @Test func thePasswordIsNeverShown() throws {
        let config = try load("rate_limit: { store: \"redis://:r3dis-pa55@redis:6379/0\", replicas: 2 }")
        let rendered = config.renderedYAML()
        #expect(!rendered.contains("r3dis-pa55"))
        #expect(rendered.contains("  store: \"redis://:***@redis:6379/0\"") || rendered.contains("  store: redis://:***@redis:6379/0"), "\(rendered)")
        #expect(rendered.contains("  replicas: 2"))
        #expect(!"\(config.rateLimit.store)".contains("r3dis-pa55"))
        for yaml in ["rate_limit: { store: \"redis://:r3dis-pa55@redis:99999/0\" }",
                     "rate_limit: { store: \"redis://:r3dis-pa55@redis/x\" }",
                     "rate_limit: { store: \"http://:r3dis-pa55@redis\" }",
                     "rate_limit: { store: \"redis://:r3dis%zz-pa55@redis\" }",
                     "rate_limit: { store: \"redis://:r3dis-pa55@redis\", store_password: other }"] {
            let error = loadError(yaml)
            #expect(error?.key.hasPrefix("rate_limit.store") == true, "\(yaml)")
            #expect(error.map { !$0.description.contains("r3dis") } == true, "\(error?.description ?? "")")
        }
    }

    @Test func brokenValuesNameTheirKey() {
        #expect(loadError("rate_limit: { store: redis }")?.key == "rate_limit.store")
        #expect(loadError("rate_limit: { store: \"redis://\" }")?.key == "rate_limit.store")
        #expect(loadError("rate_limit: { store: \"redis://host:0\" }")?.key == "rate_limit.store")
        #expect(loadError("rate_limit: { store: [redis] }")?.key == "rate_limit.store")
        #expect(loadError("rate_limit: { replicas: 0 }")?.key == "rate_limit.replicas")
        #expect(loadError("rate_limit: { replicas: two }")?.key == "rate_limit.replicas")
        #expect(loadError("rate_limit: { store_password: x }")?.key == "rate_limit.store_password")
        #expect(loadError("rate_limit: { store: \"redis://h\", store_password: a, store_password_file: /b }")?.key == "rate_limit.store_password")
        #expect(loadError("rate_limit: { store: \"redis://h\", store_password_file: /nonexistent/redis-password }")?.key == "rate_limit.store_password_file")
        #expect(message("rate_limit: { replicas: 0 }") == "config: rate_limit.replicas: must be at least 1")
    }
}
