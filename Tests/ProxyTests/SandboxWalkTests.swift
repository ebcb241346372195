import Config
import Foundation
import JSON
import Testing

@testable import Sandbox

/// Every operation of both 2026v1 descriptions through the proxy against the sandbox: valid
/// requests answer the declared success status with a body that validates against the
/// declared response schema; broken ones get a 400 naming the broken field; a token without
/// an operation's scope gets 403.
@Suite struct SandboxWalkTests {
    @Test func everyOperationThroughTheProxy() throws {
        let h = try Harness { $0.scopes = SandboxClient.floridayScopes }
        let client = try h.client()
        var walked = 0
        for description in APICatalog.bundled.descriptions {
            let base = "/\(description.family)-\(description.version)"
            for operation in description.operations {
                let example = description.example(operation)
                let response = try client.request(
                    example.method, base + example.target,
                    headers: example.contentType.map { [("Content-Type", $0)] } ?? [],
                    body: example.body.isEmpty && example.method == "GET" ? nil : example.body)
                let label = "\(example.method) \(base)\(example.target)"
                guard response.status == operation.successStatus else {
                    Issue.record("\(label): \(response.status) \(response.bodyString)")
                    continue
                }
                if let schema = operation.successSchema {
                    let value = try JSONParser.parse(response.body)
                    var errors = ValidationErrors()
                    SchemaValidator(description: description).validate(value, schema, field: "", into: &errors)
                    #expect(errors.isEmpty, "\(label): \(errors.json.serialized)")
                } else {
                    #expect(response.body.isEmpty, "\(label)")
                }
                for broken in description.brokenExamples(operation) {
                    let refused = try client.request(
                        broken.method, base + broken.target,
                        headers: broken.contentType.map { [("Content-Type", $0)] } ?? [],
                        body: broken.body.isEmpty && broken.method == "GET" ? nil : broken.body)
                    #expect(refused.status == 400, "\(broken.method) \(broken.target)")
                    let errors = refused.json["errors"] as? [String: [String]] ?? [:]
                    #expect(errors[broken.brokenField ?? ""] != nil, "\(broken.target): \(refused.bodyString)")
                }
                walked += 1
            }
        }
        #expect(walked == 269 + 166)
    }

    @Test func aTokenWithoutTheScopeIs403() throws {
        // The proxy's default scopes lack `contract:read`.
        let h = try Harness()
        let response = try h.client().request("GET", "/customers-api-2026v1/contracts/current-max-sequence")
        #expect(response.status == 403)
        #expect(response.header("WWW-Authenticate") == #"Bearer error="insufficient_scope", scope="contract:read""#)
        let allowed = try h.client().request("GET", "/customers-api-2026v1/trade-items/current-max-sequence")
        #expect(allowed.status == 200)
    }

    @Test func aSyncLoopEndsAndAgreesWithCurrentMaxSequence() throws {
        let h = try Harness()
        let client = try h.client()
        let maximum = Int(try client.request("GET", "/suppliers-api-2026v1/trade-items/current-max-sequence").bodyString)
        var sequence = 0
        var pages = 0
        var ids: [String] = []
        while pages < 100 {
            let page = try client.request("GET", "/suppliers-api-2026v1/trade-items/sync/\(sequence)?limitResult=7").json
            pages += 1
            let results = page["results"] as? [[String: Any]] ?? []
            #expect(page["maximumSequenceNumber"] as? Int == maximum)
            ids += results.compactMap { $0["tradeItemId"] as? String }
            guard let last = results.last?["sequenceNumber"] as? Int else { break }
            sequence = last
            if sequence >= (page["maximumSequenceNumber"] as? Int ?? 0) { break }
        }
        #expect(sequence == maximum)
        #expect(ids.count == maximum)
        #expect(pages == ((maximum ?? 0) + 6) / 7)
        // The list's items are the feed's first records, and a get of one answers the same item.
        let list = try JSONSerialization.jsonObject(with: Data(try client.request("GET", "/suppliers-api-2026v1/trade-items").body)) as? [[String: Any]] ?? []
        #expect(list.compactMap { $0["tradeItemId"] as? String } == Array(ids.prefix(list.count)))
        let one = try client.request("GET", "/suppliers-api-2026v1/trade-items/\(ids[1])")
        #expect(one.json["tradeItemId"] as? String == ids[1])
        #expect(one.json["sequenceNumber"] as? Int == 2)
        let canonical = { (object: Any) in try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) }
        #expect(try canonical(one.json) == canonical(list[1]))
    }
}
