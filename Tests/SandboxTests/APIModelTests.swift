import Foundation
import Testing

@testable import Sandbox

/// The OpenAPI model, the path matcher, the validators, the body generator and the sync feeds,
/// each on the bundled descriptions.
let suppliers = APICatalog.bundled.description(family: "suppliers-api", version: "2026v1")!
let customers = APICatalog.bundled.description(family: "customers-api", version: "2026v1")!

@Suite struct OpenAPIModelTests {
    @Test func readsBothDescriptions() {
        #expect(suppliers.operations.count == 269)
        #expect(customers.operations.count == 166)
        #expect(APICatalog.bundled.description(family: "suppliers-api", version: "2024v2")?.version == "2026v1")
        #expect(APICatalog.bundled.description(family: "growers-api", version: "2026v1") == nil)
    }

    @Test func scopesAndRateLimitsFromSummaries() {
        #expect(APIDescription.scopes(inSummary: "catalog:read - Returns trade items.") == ["catalog:read"])
        #expect(APIDescription.scopes(inSummary: "sales-order:write, sticker:write - Add.") == ["sales-order:write", "sticker:write"])
        #expect(APIDescription.scopes(inSummary: "Retrieve the beeldbankId referring to the image.") == [])
        #expect(RateLimit.parse(summary: "supply:read - rate limit: 2.0 per second - burst limit: 200 - Returns") == RateLimit(perSecond: 2, burst: 200))
        #expect(RateLimit.parse(summary: "catalog:read - Returns trade items.") == nil)
        let sync = suppliers.operations.first { $0.pathTemplate == "/trade-items/sync/{sequenceNumber}" }
        #expect(sync?.rateLimit?.description == "2/s burst 200")
    }
}

@Suite struct PathMatcherTests {
    let matcher = PathMatcher(suppliers)

    @Test func literalBeatsParameter() {
        guard case .found(let op, let parameters) = matcher.match(method: "GET", path: "/trade-items/sync/5") else {
            Issue.record("no match"); return
        }
        #expect(op.pathTemplate == "/trade-items/sync/{sequenceNumber}")
        #expect(parameters == ["sequenceNumber": "5"])
        guard case .found(let get, _) = matcher.match(method: "GET", path: "/trade-items/current-max-sequence") else { return }
        #expect(get.pathTemplate == "/trade-items/current-max-sequence")
    }

    @Test func parametersArePercentDecodedAndTrailingSlashTolerated() {
        guard case .found(let op, let parameters) = matcher.match(method: "GET", path: "/trade-items/a%20b/") else {
            Issue.record("no match"); return
        }
        #expect(op.pathTemplate == "/trade-items/{tradeItemId}")
        #expect(parameters["tradeItemId"] == "a b")
    }

    @Test func unknownPathAndWrongMethod() {
        guard case .notFound = matcher.match(method: "GET", path: "/no-such-thing") else { Issue.record("matched"); return }
        guard case .notFound = matcher.match(method: "GET", path: "/trade-items//x") else { Issue.record("matched"); return }
        guard case .methodNotAllowed(let allowed) = matcher.match(method: "PATCH", path: "/trade-items/sync/5") else {
            Issue.record("not a 405"); return
        }
        #expect(allowed == ["GET"])
    }
}

@Suite struct ValidatorTests {
    @Test func formats() {
        #expect(SchemaValidator.isUUID("5b0d3c1e-8f7a-4e62-9d35-2c6a1f4b7e90"))
        #expect(!SchemaValidator.isUUID("5b0d3c1e8f7a4e629d352c6a1f4b7e90"))
        #expect(SchemaValidator.isDateTime("2026-03-01T12:00:00Z"))
        #expect(SchemaValidator.isDateTime("2026-03-01T12:00:00.123+01:00"))
        #expect(SchemaValidator.isDateTime("2026-03-01T12:00:00.000000+0000"))
        #expect(!SchemaValidator.isDateTime("2026-13-01T12:00:00Z"))
        #expect(!SchemaValidator.isDateTime("yesterday"))
    }

    @Test func bodyErrorsNameEachField() throws {
        let op = try #require(suppliers.operations.first { $0.method == "POST" && $0.pathTemplate == "/trade-items" })
        let validator = RequestValidator(description: suppliers)
        let body = Array(#"{"tradeItemId":"nope","isHiddenInCatalog":"yes"}"#.utf8)
        guard case .invalid(let errors) = validator.validate(op, pathParameters: [:], query: [], contentType: "application/json", body: body) else {
            Issue.record("valid"); return
        }
        let fields = Set(errors.fields.map(\.field))
        #expect(fields.contains("tradeItemId"))
        #expect(fields.contains("isHiddenInCatalog"))
        #expect(fields.contains("vbnProductCode"))  // required, missing
        guard case .unsupportedMediaType = validator.validate(op, pathParameters: [:], query: [], contentType: "text/plain", body: body) else {
            Issue.record("not 415"); return
        }
    }

    @Test func queryParametersAreTyped() throws {
        let op = try #require(suppliers.operations.first { $0.method == "GET" && $0.pathTemplate == "/trade-items" })
        let validator = RequestValidator(description: suppliers)
        guard case .invalid(let errors) = validator.validate(op, pathParameters: [:], query: [("page", "0"), ("includeDeleted", "maybe")], contentType: nil, body: []) else {
            Issue.record("valid"); return
        }
        #expect(errors.fields.map(\.field) == ["page", "includeDeleted"])
        guard case .valid = validator.validate(op, pathParameters: [:], query: [("limitResult", "1000"), ("INCLUDEDELETED", "True")], contentType: nil, body: []) else {
            Issue.record("invalid"); return
        }
    }
}

@Suite struct BodyGeneratorTests {
    let generator = BodyGenerator(description: suppliers)

    @Test func deterministicAndConsistentBetweenListAndGet() throws {
        let list = try #require(suppliers.operations.first { $0.method == "GET" && $0.pathTemplate == "/trade-items" })
        let get = try #require(suppliers.operations.first { $0.method == "GET" && $0.pathTemplate == "/trade-items/{tradeItemId}" })
        let items = try #require(generator.response(for: list, seed: "GET /trade-items", pathParameters: [:], limit: nil)?.arrayValue)
        #expect(items.count == 3)
        #expect(generator.response(for: list, seed: "GET /trade-items", pathParameters: [:], limit: nil)?.arrayValue == items)
        let id = try #require(items[2]["tradeItemId"]?.stringValue)
        let one = generator.response(for: get, seed: "GET /trade-items/" + id, pathParameters: ["tradeItemId": id], limit: nil)
        #expect(one == items[2])
        #expect(one?["sequenceNumber"]?.intValue == 3)
        #expect(generator.identifiers["TradeItem"] == "tradeItemId")
    }

    @Test func syncFeedsPageToTheirMaximum() throws {
        let feed = SyncFeed(template: "/trade-items/sync/{sequenceNumber}")
        #expect(feed == SyncFeed(template: "/trade-items/current-max-sequence"))
        #expect(SyncFeed(template: "/sales-strategies/sync/max-sequence-number")?.key == "/sales-strategies")
        #expect(SyncFeed(template: "/trade-items/{tradeItemId}") == nil)
        let size = try #require(feed?.size)
        #expect((20...60).contains(size))
        #expect(feed?.page(after: 0, limit: 7) == 1...7)
        #expect(feed?.page(after: size - 2, limit: 7) == (size - 1)...size)
        #expect(feed?.page(after: size, limit: 7) == nil)
    }
}
