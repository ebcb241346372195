import Testing
@testable import Config

struct DurationAndSizeTests {
    @Test(arguments: [
        ("500ms", Duration.milliseconds(500)),
        ("5s", .seconds(5)),
        ("2m", .seconds(120)),
        ("1h", .seconds(3600)),
        ("1m30s", .seconds(90)),
        ("1h2m3s4ms", .milliseconds(3_723_004)),
        ("1.5s", .milliseconds(1500)),
        ("0.25h", .seconds(900)),
        ("0s", .zero),
        ("250us", .microseconds(250)),
        ("10ns", .nanoseconds(10)),
        ("-5s", .seconds(-5)),
    ])
    func parsesDurations(text: String, expected: Duration) {
        #expect(parseDuration(text) == expected)
    }

    @Test(arguments: ["", "5", "0", "30", "s", "5 s", "5sec", "5S", "1.s", ".s", "1m30", "5s ", "-", "ms5", "1d", "99999999999999h"])
    func rejectsDurations(text: String) {
        #expect(parseDuration(text) == nil)
    }

    @Test(arguments: [
        (Duration.zero, "0s"), (.milliseconds(500), "500ms"), (.seconds(5), "5s"), (.seconds(60), "1m"),
        (.seconds(75), "75s"), (.seconds(90), "90s"), (.seconds(3600), "1h"), (.seconds(5400), "90m"),
        (.milliseconds(1500), "1500ms"), (.seconds(3723), "3723s"), (.seconds(3601), "1h1s"), (.seconds(-20), "-20s"),
    ])
    func formatsDurations(duration: Duration, expected: String) {
        #expect(formatDuration(duration) == expected)
        #expect(parseDuration(expected) == duration)
    }

    @Test(arguments: [
        ("0", 0), ("512", 512), ("512B", 512), ("64KiB", 65_536), ("32MiB", 33_554_432), ("1GiB", 1_073_741_824),
        ("64KB", 64_000), ("1MB", 1_000_000), ("2GB", 2_000_000_000), ("8 KiB", 8192),
    ])
    func parsesSizes(text: String, expected: Int) {
        #expect(parseByteSize(text) == expected)
    }

    @Test(arguments: ["", "KiB", "1.5MiB", "-1", "64kib", "64K", "64 ", " 64", "12XB", "1e6", "99999999999GiB"])
    func rejectsSizes(text: String) {
        #expect(parseByteSize(text) == nil)
    }

    @Test(arguments: [(8192, "8KiB"), (65_536, "64KiB"), (33_554_432, "32MiB"), (1 << 30, "1GiB"), (1000, "1000"), (0, "0"), (1536, "1536")])
    func formatsSizes(bytes: Int, expected: String) {
        #expect(formatByteSize(bytes) == expected)
        #expect(parseByteSize(expected) == bytes)
    }
}
