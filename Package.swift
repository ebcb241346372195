// swift-tools-version:6.0
import PackageDescription

// Modules from the bottom up; a module knows nothing of those listed after it.
//   COpenSSL     system library (libssl-dev) plus a shim for OpenSSL's macros
//   CLinux       epoll and malloc_trim, which Swift's Glibc module leaves out
//   EventLoop    a loop per core: an epoll set driven by one Dispatch source; sockets, timers, DNS off the loop
//   TLS          OpenSSL over memory BIOs; a TLS byte stream over a socket
//   HTTP1        incremental HTTP/1.1 parser and serializer, on bytes
//   CNGHTTP2     system library (libnghttp2-dev)
//   HTTP2        an nghttp2 session on bytes: streams, flow control, frames out
//   HTTPServer   HTTP/1.1 and HTTP/2 (h2c) server connections with streaming bodies
//   Upstream     HTTPS client connections (HTTP/1.1, or h2 streams by ALPN) and the pool
//   Auth         OAuth2 client-credentials token provider
//   RateLimit    token buckets per API key and endpoint, from Floriday's published limits
//   CHiredis     system library (libhiredis-dev): the Redis client
//   Redis        hiredis's asynchronous context on the event loop; scripts; shared token buckets
//   Config       proxy.yaml + environment + *_FILE secrets, validated
//   Proxy        the pipeline: accept, rewrite, send, response (401 replay), log
//   Admin        /healthz, /readyz and /metrics (Prometheus) on their own listener
//   Sandbox      a stand-in for Floriday's IDM and API, for tests and the demo
//   floriday-proxy  the command line
// The modules every request passes through: in release builds they skip the run-time
// exclusivity checks (about 6 % of the instructions per request in a profile). Debug builds,
// and so the tests, keep them; the compiler's static checks stay on everywhere.
let hotPath: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

// Release links with lld and packs the relative relocations (DT_RELR, glibc 2.36+: Debian 12,
// Ubuntu 24.04). The executable stays position-independent, but the loader reads about 16 KiB
// of relocations at start-up instead of about 1.9 MiB (80,000 RELA entries, mostly Swift
// metadata), and those pages no longer sit in the resident set. bench/NOTES.md, "RSS at rest".
let releaseLinking: [LinkerSetting] = [
    .unsafeFlags(["-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs"],
                 .when(platforms: [.linux], configuration: .release)),
]

let package = Package(
    name: "floriday-proxy",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "floriday-proxy", targets: ["floriday-proxy"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
    ],
    targets: [
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"]), .brew(["openssl@3"])]
        ),
        .systemLibrary(name: "CNGHTTP2", pkgConfig: "libnghttp2", providers: [.apt(["libnghttp2-dev"])]),
        .systemLibrary(name: "CLinux"),
        // Debian's headers are in /usr/include/hiredis, on the default path: no pkg-config, whose
        // -D_FILE_OFFSET_BITS=64 SwiftPM refuses with a warning on every build.
        .systemLibrary(name: "CHiredis", providers: [.apt(["libhiredis-dev"])]),
        .target(name: "EventLoop", dependencies: ["CLinux"], swiftSettings: hotPath),
        .target(name: "TLS", dependencies: ["COpenSSL", "EventLoop"], swiftSettings: hotPath),
        .target(name: "HTTP1", swiftSettings: hotPath),
        .target(name: "JSON"),
        .target(name: "HTTP2", dependencies: ["CNGHTTP2", "HTTP1"], swiftSettings: hotPath),
        .target(name: "HTTPServer", dependencies: ["EventLoop", "TLS", "HTTP1", "HTTP2"], swiftSettings: hotPath),
        .target(name: "Upstream", dependencies: ["EventLoop", "TLS", "HTTP1", "HTTP2"], swiftSettings: hotPath),
        .target(name: "Auth", dependencies: ["EventLoop", "Upstream", "HTTP1", "JSON", .product(name: "Logging", package: "swift-log")]),
        .target(name: "RateLimit", dependencies: ["EventLoop"]),
        .target(name: "Redis", dependencies: ["CHiredis", "COpenSSL", "CLinux", "EventLoop", "TLS"]),
        .target(name: "Config", dependencies: ["Redis", .product(name: "Yams", package: "Yams")]),
        .target(name: "Proxy", dependencies: [
            "EventLoop", "HTTP1", "HTTPServer", "JSON", "Upstream", "Auth", "Config", "RateLimit", "Redis",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
        ], swiftSettings: hotPath),
        .target(name: "Admin", dependencies: [
            "EventLoop", "HTTP1", "HTTPServer", "JSON", "Upstream", "Auth", "Proxy",
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
        ]),
        // Floriday's Swagger descriptions, byte for byte as published: the sandbox serves every
        // operation in them.
        .target(name: "Sandbox", dependencies: ["EventLoop", "TLS", "HTTP1", "HTTPServer", "RateLimit", "JSON"],
                resources: [.copy("Resources/floriday-api")]),
        .executableTarget(name: "floriday-proxy", dependencies: [
            "EventLoop", "TLS", "HTTP1", "JSON", "Upstream", "Auth", "Config", "Proxy", "Admin", "Sandbox", "RateLimit",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], linkerSettings: releaseLinking),
        // Shared by the test targets: waiting by polling, running on a loop, seeded randomness.
        .target(name: "TestSupport", dependencies: ["EventLoop"], path: "Tests/TestSupport"),
        .testTarget(name: "EventLoopTests", dependencies: ["EventLoop", "TestSupport"]),
        .testTarget(name: "TLSTests", dependencies: ["TLS", "EventLoop", "TestSupport"]),
        .testTarget(name: "HTTP1Tests", dependencies: ["HTTP1"]),
        .testTarget(name: "JSONTests", dependencies: ["JSON"]),
        .testTarget(name: "RedisTests", dependencies: ["Redis", "EventLoop", "TLS", "TestSupport"]),
        .testTarget(name: "HTTP2Tests", dependencies: ["HTTP2", "HTTP1", "TestSupport"]),
        .testTarget(name: "ConfigTests", dependencies: ["Config", "Redis"]),
        .testTarget(name: "RateLimitTests", dependencies: ["RateLimit", "EventLoop", "TestSupport"]),
        .testTarget(name: "SandboxTests", dependencies: ["Sandbox", "HTTP1", "JSON"]),
        .testTarget(name: "ProxyTests", dependencies: [
            "EventLoop", "TLS", "HTTP1", "HTTP2", "HTTPServer", "JSON", "Upstream", "Auth", "Config", "Proxy", "Admin",
            "Sandbox", "RateLimit", "Redis", "TestSupport",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .testTarget(name: "AuthTests", dependencies: [
            "Auth", "EventLoop", "HTTP1", "HTTPServer", "TLS", "Upstream", "Sandbox", "TestSupport",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "UpstreamTests", dependencies: ["Upstream", "EventLoop", "HTTP1", "TLS", "Sandbox", "TestSupport"]),
        .testTarget(name: "HTTPServerTests", dependencies: [
            "HTTPServer", "EventLoop", "HTTP1", "Config", "Proxy", "Sandbox", "TestSupport",
            .product(name: "Logging", package: "swift-log"),
        ]),
    ]
)
