/// Expands `${NAME}`, `${NAME:-default}` and `$$` in the text of a YAML scalar, before the
/// scalar is read as a string, number, duration or boolean.
///
/// - `${NAME}` of an undefined variable expands to the empty string. An empty value counts
///   as "not set": the key's environment fallback or default applies, and a credential that
///   ends up empty is reported as missing (with how to set it) rather than as an undefined
///   variable. So `client_id: ${FLORIDAY_CLIENT_ID}` also works when only
///   `FLORIDAY_CLIENT_ID_FILE` is set.
/// - `${NAME:-default}` uses `default` when the variable is undefined or empty; `$$` in
///   the default is a `$` too.
/// - `$$` is a literal `$`; a `$` not followed by `{` or `$` is kept as is.
/// - References do not nest, and a default cannot contain `}`.
func expandVariables(_ text: String, environment: [String: String]) -> Result<String, ExpansionProblem> {
    guard text.contains("$") else { return .success(text) }
    var result = ""
    var rest = Substring(text)
    while let dollar = rest.firstIndex(of: "$") {
        result += rest[..<dollar]
        let afterDollar = rest[rest.index(after: dollar)...]
        switch afterDollar.first {
        case "$":
            result += "$"
            rest = afterDollar.dropFirst()
        case "{":
            let body = afterDollar.dropFirst()
            guard let close = body.firstIndex(of: "}") else { return .failure(.unterminated) }
            let reference = body[..<close]
            rest = body[body.index(after: close)...]

            var name = reference
            var fallback: Substring?
            if let separator = reference.firstRange(of: ":-") {
                name = reference[..<separator.lowerBound]
                fallback = reference[separator.upperBound...]
            }
            guard isVariableName(name), fallback?.contains("${") != true else {
                return .failure(.invalidReference)
            }
            let value = environment[String(name)] ?? ""
            if let fallback, value.isEmpty {
                result += fallback.replacing("$$", with: "$")
            } else {
                result += value
            }
        default:
            result += "$"
            rest = afterDollar
        }
    }
    result += rest
    return .success(result)
}

enum ExpansionProblem: Error {
    case unterminated, invalidReference

    /// Says nothing about the value itself, which may be a secret.
    var text: String {
        let usage = "write ${NAME} or ${NAME:-default}, and $$ for a literal $"
        switch self {
        case .unterminated: return "has a \"${\" without its closing \"}\"; \(usage)"
        case .invalidReference: return "has an invalid variable reference; \(usage)"
        }
    }
}

private func isVariableName(_ name: Substring) -> Bool {
    guard let first = name.unicodeScalars.first, first.isASCII,
          first == "_" || first.properties.isAlphabetic
    else { return false }
    return name.unicodeScalars.allSatisfy {
        $0.isASCII && ($0 == "_" || $0.properties.isAlphabetic || ("0"..."9").contains($0))
    }
}
