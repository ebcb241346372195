import Foundation
import RateLimit
import Testing

/// The generated table against the Swagger descriptions it was made from.
@Suite struct PublishedLimitsTests {
    static let apiDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Sources/Sandbox/Resources/floriday-api")

    /// Operations per (rate, burst) as the descriptions state them, read here independently
    /// of the generator.
    static func swaggerCounts(_ file: String) throws -> [String: Int] {
        let data = try Data(contentsOf: apiDirectory.appendingPathComponent(file))
        let spec = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let paths = try #require(spec["paths"] as? [String: [String: Any]])
        let pattern = try NSRegularExpression(pattern: "rate limit: ([0-9.]+) per second - burst limit: ([0-9]+)")
        var counts: [String: Int] = [:]
        for (_, operations) in paths {
            for (method, operation) in operations where ["get", "put", "post", "delete", "patch"].contains(method) {
                let summary = (operation as? [String: Any])?["summary"] as? String ?? ""
                var key = "none"
                if let match = pattern.firstMatch(in: summary, range: NSRange(summary.startIndex..., in: summary)) {
                    let rate = Double(summary[Range(match.range(at: 1), in: summary)!])!
                    let burst = Double(summary[Range(match.range(at: 2), in: summary)!])!
                    key = "\(rate)/\(burst)"
                }
                counts[key, default: 0] += 1
            }
        }
        return counts
    }

    static func tableCounts(_ api: String) -> [String: Int] {
        var counts: [String: Int] = [:]
        for operation in PublishedLimits.operations where operation.api == api {
            let key = operation.rate.map { "\($0)/\(operation.burst!)" } ?? "none"
            counts[key, default: 0] += 1
        }
        return counts
    }

    @Test func theTableCountsTheSameOperationsPerLimitAsTheSwagger() throws {
        let suppliers = try Self.swaggerCounts("suppliers-api-2026v1.json")
        let customers = try Self.swaggerCounts("customers-api-2026v1.json")
        #expect(Self.tableCounts("suppliers-api") == suppliers)
        #expect(Self.tableCounts("customers-api") == customers)
        // What the 2026v1 descriptions state (the issue's summary of them).
        #expect(suppliers == ["3.4/1000.0": 58, "2.0/200.0": 12, "10.0/1000.0": 5, "1.0/20.0": 1, "1.0/60.0": 1, "1.0/200.0": 1, "none": 191])
        #expect(customers == ["3.4/1000.0": 99, "none": 67])
        #expect(PublishedLimits.operations.count == 269 + 166)
    }

    @Test func theNamedLowAndHighLimitsAreWhereTheIssueSaysTheyAre() {
        let table = EndpointTable(defaultLimit: BucketLimit(rate: 3.4, burst: 1000))
        func limit(_ method: String, _ path: String) -> BucketLimit { table.classify(method: method, path: Array(path.utf8)).limit }
        #expect(limit("GET", "/suppliers-api-2026v1/trade-items/base-supply?year=2026&week=3") == BucketLimit(rate: 1, burst: 20))
        #expect(limit("PUT", "/suppliers-api-2026v1/trade-items/0f3c/base-supply/2026/12") == BucketLimit(rate: 10, burst: 1000))
        #expect(limit("GET", "/suppliers-api-2026v1/trade-items/sync/42") == BucketLimit(rate: 2, burst: 200))
    }
}
