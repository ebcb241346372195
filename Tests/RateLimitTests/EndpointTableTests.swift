import RateLimit
import Testing

@Suite struct EndpointTableTests {
    static let operations = [
        PublishedOperation(api: "suppliers-api", method: "GET", path: "/trade-items/{tradeItemId}", rate: 3.4, burst: 1000),
        PublishedOperation(api: "suppliers-api", method: "GET", path: "/trade-items/base-supply", rate: 1, burst: 20),
        PublishedOperation(api: "suppliers-api", method: "GET", path: "/trade-items/sync/{sequenceNumber}", rate: 2, burst: 200),
        PublishedOperation(api: "suppliers-api", method: "GET", path: "/trade-items/current-max-sequence", rate: nil, burst: nil),
        PublishedOperation(api: "customers-api", method: "GET", path: "/trade-items/{tradeItemId}", rate: 3.4, burst: 1000),
    ]
    static let fallback = BucketLimit(rate: 5, burst: 50)
    let table = EndpointTable(operations: Self.operations, defaultLimit: Self.fallback)

    func classify(_ method: String, _ path: String) -> Endpoint { table.classify(method: method, path: Array(path.utf8)) }

    @Test func aLiteralSegmentWinsOverAParameter() {
        #expect(classify("GET", "/suppliers-api-2026v1/trade-items/base-supply").limit == BucketLimit(rate: 1, burst: 20))
        #expect(classify("GET", "/suppliers-api-2026v1/trade-items/abc").name == "GET /suppliers-api-*/trade-items/{tradeItemId}")
        #expect(classify("GET", "/suppliers-api-2026v1/trade-items/sync/17").limit == BucketLimit(rate: 2, burst: 200))
    }

    @Test func theVersionSegmentIsIgnoredButTheAPIFamilyIsNot() {
        let now = classify("GET", "/suppliers-api-2026v1/trade-items/base-supply")
        let later = classify("GET", "/suppliers-api-2027v2/trade-items/base-supply?week=1")
        #expect(now == later)
        #expect(classify("GET", "/customers-api-2026v1/trade-items/x") != classify("GET", "/suppliers-api-2026v1/trade-items/x"))
    }

    @Test func anOperationWithoutAPublishedLimitHasItsOwnEndpointWithTheDefault() {
        let endpoint = classify("GET", "/suppliers-api-2026v1/trade-items/current-max-sequence")
        #expect(endpoint.limit == Self.fallback)
        #expect(endpoint != table.other)
    }

    @Test func unknownPathsMethodsAndShapesAreOther() {
        #expect(classify("POST", "/suppliers-api-2026v1/trade-items/abc") == table.other)
        #expect(classify("GET", "/suppliers-api-2026v1/nothing-here") == table.other)
        #expect(classify("GET", "/suppliers-api-2026v1/trade-items/") == table.other)
        #expect(classify("GET", "/suppliers-api-2026v1/trade-items/a/b") == table.other)
        #expect(classify("GET", "/elsewhere") == table.other)
        #expect(classify("GET", "") == table.other)
        #expect(classify("GET", "suppliers-api-2026v1/trade-items/a") == table.other)
        #expect(table.other.limit == Self.fallback)
    }

    @Test func configuredRulesComeFirstWithGlobsAndParameters() {
        let rules = [
            EndpointRule(methods: ["GET"], path: "/suppliers-api-*/trade-items/base-supply", limit: BucketLimit(rate: 7, burst: 7)),
            EndpointRule(methods: nil, path: "/suppliers-api-*/things/{id}/parts", limit: BucketLimit(rate: 9, burst: 9)),
        ]
        let table = EndpointTable(operations: Self.operations, rules: rules, defaultLimit: Self.fallback)
        #expect(table.classify(method: "GET", path: Array("/suppliers-api-2026v1/trade-items/base-supply".utf8)).limit.rate == 7)
        #expect(table.classify(method: "PUT", path: Array("/suppliers-api-2026v1/trade-items/base-supply".utf8)) == table.other)
        #expect(table.classify(method: "PATCH", path: Array("/suppliers-api-x/things/12/parts".utf8)).limit.rate == 9)
        #expect(table.classify(method: "PATCH", path: Array("/suppliers-api-x/things/1/2/parts".utf8)) == table.other)
    }
}
