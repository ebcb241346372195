/// Finds the operation a request path names, as ASP.NET's endpoint routing would: a literal
/// segment beats a parameter at the same position (so `/trade-items/sync/5` is the sync
/// operation, not a get of the item `sync`), and the method takes part in the match, so a more
/// specific template that lacks the method yields to a less specific one that has it.
struct PathMatcher: Sendable {
    enum Match {
        /// The operation and its path parameters, percent-decoded.
        case found(APIOperation, pathParameters: [String: String])
        /// The path is known but not for this method; `allowed` lists the methods it has.
        case methodNotAllowed(allowed: [String])
        case notFound
    }

    private let operations: [APIOperation]

    init(_ description: APIDescription) {
        operations = description.operations
    }

    /// `path` is the part after the base path, raw as received, e.g. `/trade-items/abc`.
    func match(method: String, path: String) -> Match {
        let raw = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        // A trailing slash is tolerated, as by ASP.NET; empty segments elsewhere are not.
        let parts = raw.last == "" ? Array(raw.dropLast()) : Array(raw)
        guard !parts.contains(where: \.isEmpty) else { return .notFound }
        var decoded: [String] = []
        for part in parts {
            guard let text = FormEncoding.decodeComponent(part, plusIsSpace: false) else { return .notFound }
            decoded.append(text)
        }

        var candidates: [(operation: APIOperation, rank: [Bool])] = []
        for operation in operations where operation.segments.count == decoded.count {
            var rank: [Bool] = []
            var fits = true
            for (segment, value) in zip(operation.segments, decoded) {
                switch segment {
                case .literal(let literal):
                    // Literal segments compare case-insensitively, as ASP.NET routes do.
                    fits = literal.lowercased() == value.lowercased()
                    rank.append(true)
                case .parameter:
                    rank.append(false)
                }
                if !fits { break }
            }
            if fits { candidates.append((operation, rank)) }
        }
        guard !candidates.isEmpty else { return .notFound }
        // Most specific first: compare literal-ness segment by segment, left to right.
        candidates.sort { a, b in
            for (x, y) in zip(a.rank, b.rank) where x != y { return x }
            return false
        }
        if let hit = candidates.first(where: { $0.operation.method == method }) {
            var parameters: [String: String] = [:]
            for (segment, value) in zip(hit.operation.segments, decoded) {
                if case .parameter(let name) = segment { parameters[name] = value }
            }
            return .found(hit.operation, pathParameters: parameters)
        }
        let bestRank = candidates[0].rank
        let allowed = candidates.filter { $0.rank == bestRank }.map(\.operation.method)
        return .methodNotAllowed(allowed: Array(Set(allowed)).sorted())
    }
}
