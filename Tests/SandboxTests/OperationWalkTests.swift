import Foundation
import JSON
import Testing

@testable import Sandbox

/// Every operation of every bundled description, straight against the sandbox's router.
/// (ProxyTests walks them again through the proxy.)
@Suite struct OperationWalkTests {
    let sandbox = makeSandbox()

    var token: String {
        sandbox.issueToken(clientID: "sandbox-client", scopes: SandboxClient.floridayScopes)
    }

    @Test func everyOperationAnswersWithABodyThatValidates() throws {
        let t = token
        var walked = 0
        for description in APICatalog.bundled.descriptions {
            let base = "/\(description.family)-\(description.version)"
            for operation in description.operations {
                let example = description.example(operation)
                let response = sandbox.callAPI(
                    base + example.target, method: example.method, token: t,
                    headers: example.contentType.map { [("Content-Type", $0)] } ?? [], body: example.body)
                let label = "\(operation.method) \(base)\(example.target)"
                guard response.status == operation.successStatus else {
                    Issue.record("\(label): \(response.status) \(String(decoding: response.body, as: UTF8.self))")
                    continue
                }
                try expectValid(response, operation, description, label)
                walked += 1
            }
        }
        #expect(walked == 269 + 166)
    }

    @Test func brokenParametersAndBodiesAre400sNamingTheField() throws {
        let t = token
        var checked = 0
        for description in APICatalog.bundled.descriptions {
            let base = "/\(description.family)-\(description.version)"
            for operation in description.operations {
                for example in description.brokenExamples(operation) {
                    let response = sandbox.callAPI(
                        base + example.target, method: example.method, token: t,
                        headers: example.contentType.map { [("Content-Type", $0)] } ?? [], body: example.body)
                    let label = "\(operation.method) \(base)\(example.target) breaking \(example.brokenField ?? "?")"
                    guard response.status == 400 else {
                        Issue.record("\(label): \(response.status) \(String(decoding: response.body, as: UTF8.self))")
                        continue
                    }
                    #expect(response.header("Content-Type") == "application/problem+json; charset=utf-8")
                    let problem = try jsonObject(response)
                    #expect(problem["title"] as? String == "One or more validation errors occurred.")
                    #expect(problem["status"] as? Int == 400)
                    let errors = try #require(problem["errors"] as? [String: [String]], "\(label)")
                    #expect(errors[try #require(example.brokenField)]?.isEmpty == false, "\(label): \(errors)")
                    checked += 1
                }
            }
        }
        // Most operations have a parameter or a body to break.
        #expect(checked > 400)
    }

    /// The body validates against the operation's declared response schema.
    func expectValid(_ response: SandboxResponse, _ operation: APIOperation, _ description: APIDescription, _ label: String) throws {
        guard let schema = operation.successSchema else {
            #expect(response.body.isEmpty, "\(label): \(String(decoding: response.body, as: UTF8.self))")
            return
        }
        #expect(response.header("Content-Type") == "application/json; charset=utf-8", "\(label)")
        let value = try JSONParser.parse(response.body)
        var errors = ValidationErrors()
        SchemaValidator(description: description).validate(value, schema, field: "", into: &errors)
        #expect(errors.isEmpty, "\(label): \(errors.json.serialized)")
    }
}
