// swift-tools-version:6.0
import PackageDescription

// libFuzzer target for the HTTP/1.1 parsers. Sources/HTTP1 is a symlink to the main package's
// module, so the fuzzer always exercises the code that ships. Build and run with ./run.sh.
let package = Package(
    name: "floriday-proxy-fuzz",
    targets: [
        .target(name: "HTTP1", path: "Sources/HTTP1"),
        // libFuzzer's driver, started from the entry point SwiftPM gives executables on Linux.
        .target(name: "FuzzerEntry", path: "Sources/FuzzerEntry"),
        .executableTarget(name: "HTTP1Fuzz", dependencies: ["HTTP1", "FuzzerEntry"], path: "Sources/HTTP1Fuzz"),
    ]
)
