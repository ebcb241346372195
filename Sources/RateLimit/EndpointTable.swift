/// One operation of Floriday's API descriptions with its published limit (nil: none stated).
public struct PublishedOperation: Sendable, Equatable {
    /// `suppliers-api` or `customers-api`: the first path segment without its version.
    public var api: String
    public var method: String
    /// The path template below the base path, e.g. `/trade-items/{tradeItemId}/base-supply/{year}/{week}`.
    public var path: String
    public var rate: Double?
    public var burst: Double?

    public init(api: String, method: String, path: String, rate: Double?, burst: Double?) {
        self.api = api
        self.method = method
        self.path = path
        self.rate = rate
        self.burst = burst
    }
}

/// A token bucket's shape: `rate` tokens per second added, at most `burst` held.
public struct BucketLimit: Sendable, Equatable, CustomStringConvertible {
    public var rate: Double
    public var burst: Double

    public init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = burst
    }

    public func scaled(by factor: Double) -> BucketLimit { BucketLimit(rate: rate * factor, burst: burst) }

    public var description: String { "\(Self.format(rate))/s burst \(Self.format(burst))" }

    static func format(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }
}

/// A configured limit for the paths a glob matches (`rate_limit.endpoints`), checked before the
/// published table.
public struct EndpointRule: Sendable, Equatable {
    /// Upper-case methods; nil: any.
    public var methods: [String]?
    /// The whole path must match; `*` stands for any run of characters, `{name}` for one segment.
    public var path: String
    public var limit: BucketLimit

    public init(methods: [String]?, path: String, limit: BucketLimit) {
        self.methods = methods
        self.path = path
        self.limit = limit
    }
}

/// What a request path is, for rate limiting: one endpoint of the table, a configured rule, or
/// "other" (no template matches).
public struct Endpoint: Sendable, Equatable {
    /// Distinct per endpoint of one table: the bucket's identity beside the API key.
    public let id: Int
    /// For metrics and logs: `GET /suppliers-api-*/trade-items/base-supply`, a rule's glob, or `other`.
    public let name: String
    public let limit: BucketLimit
}

/// Classifies request paths by method and path template, with the version segment
/// (`suppliers-api-2026v1`) ignored, so a new API version keeps its limits until the table is
/// regenerated. Templates are held in a trie per API and method; a literal segment is
/// preferred to a `{parameter}` (`/trade-items/base-supply` is not `/trade-items/{tradeItemId}`).
/// Immutable once built.
public final class EndpointTable: Sendable {
    private struct Node: Sendable {
        var literals: [[UInt8]: Int] = [:]
        var parameter = -1
        var endpoint = -1
    }

    private let nodes: [Node]
    /// Root node per "api METHOD".
    private let roots: [String: Int]
    private let endpoints: [Endpoint]
    private let rules: [(rule: EndpointRule, pattern: [UInt8], endpoint: Endpoint)]
    public let other: Endpoint

    public init(operations: [PublishedOperation] = PublishedLimits.operations, rules: [EndpointRule] = [], defaultLimit: BucketLimit) {
        var nodes: [Node] = []
        var roots: [String: Int] = [:]
        var endpoints: [Endpoint] = []
        var ruleEntries: [(EndpointRule, [UInt8], Endpoint)] = []
        for rule in rules {
            let methods = rule.methods.map { $0.joined(separator: ",") + " " } ?? ""
            let endpoint = Endpoint(id: endpoints.count, name: methods + rule.path, limit: rule.limit)
            endpoints.append(endpoint)
            ruleEntries.append((rule, Array(rule.path.utf8), endpoint))
        }
        for operation in operations {
            let rootKey = operation.api + " " + operation.method
            var node: Int
            if let root = roots[rootKey] {
                node = root
            } else {
                node = nodes.count
                nodes.append(Node())
                roots[rootKey] = node
            }
            for segment in operation.path.split(separator: "/") {
                if segment.hasPrefix("{") {
                    if nodes[node].parameter < 0 {
                        nodes[node].parameter = nodes.count
                        nodes.append(Node())
                    }
                    node = nodes[node].parameter
                } else {
                    let key = Array(segment.utf8)
                    if let next = nodes[node].literals[key] {
                        node = next
                    } else {
                        nodes[node].literals[key] = nodes.count
                        nodes.append(Node())
                        node = nodes.count - 1
                    }
                }
            }
            guard nodes[node].endpoint < 0 else { continue }   // a duplicate keeps the first
            let limit = operation.rate.map { BucketLimit(rate: $0, burst: operation.burst ?? $0) } ?? defaultLimit
            nodes[node].endpoint = endpoints.count
            endpoints.append(Endpoint(id: endpoints.count, name: "\(operation.method) /\(operation.api)-*\(operation.path)", limit: limit))
        }
        other = Endpoint(id: endpoints.count, name: "other", limit: defaultLimit)
        self.nodes = nodes
        self.roots = roots
        self.endpoints = endpoints
        self.rules = ruleEntries
    }

    /// The endpoint of `method` on `path` (the request target without query is fine with it too).
    public func classify(method: String, path target: some Collection<UInt8>) -> Endpoint {
        let path = Array(target.prefix { $0 != UInt8(ascii: "?") })
        for entry in rules where entry.rule.methods?.contains(method) ?? true {
            if Self.glob(entry.pattern, path) { return entry.endpoint }
        }
        var segments = path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropFirst()
        guard path.first == UInt8(ascii: "/"), let first = segments.first,
              let dash = first.lastIndex(of: UInt8(ascii: "-")), dash > first.startIndex, dash + 1 < first.endIndex,
              let root = roots[String(decoding: first[..<dash], as: UTF8.self) + " " + method]
        else { return other }
        segments = segments.dropFirst()
        let found = match(node: root, segments[...])
        return found >= 0 ? endpoints[found] : other
    }

    /// Depth-first, literal before parameter; at most one branch point per segment.
    private func match(node: Int, _ segments: ArraySlice<ArraySlice<UInt8>>) -> Int {
        guard let segment = segments.first else { return nodes[node].endpoint }
        let rest = segments.dropFirst()
        if let next = nodes[node].literals[Array(segment)] {
            let found = match(node: next, rest)
            if found >= 0 { return found }
        }
        if nodes[node].parameter >= 0 && !segment.isEmpty {
            return match(node: nodes[node].parameter, rest)
        }
        return -1
    }

    /// `*` matches any run of bytes, `{…}` any run without `/`; everything else itself.
    static func glob(_ pattern: [UInt8], _ path: [UInt8]) -> Bool {
        // Rewrites `{…}` to a one-segment wildcard (0x01), then an iterative glob with
        // single-star backtracking.
        var compiled: [UInt8] = []
        var index = 0
        while index < pattern.count {
            if pattern[index] == UInt8(ascii: "{"), let close = pattern[index...].firstIndex(of: UInt8(ascii: "}")) {
                compiled.append(0x01)
                index = close + 1
            } else {
                compiled.append(pattern[index])
                index += 1
            }
        }
        return globMatch(compiled[...], path[...])
    }

    private static func globMatch(_ pattern: ArraySlice<UInt8>, _ path: ArraySlice<UInt8>) -> Bool {
        guard let head = pattern.first else { return path.isEmpty }
        switch head {
        case UInt8(ascii: "*"):
            var rest = path
            while true {
                if globMatch(pattern.dropFirst(), rest) { return true }
                guard !rest.isEmpty else { return false }
                rest = rest.dropFirst()
            }
        case 0x01:
            var rest = path
            guard let first = rest.first, first != UInt8(ascii: "/") else { return false }
            while let byte = rest.first, byte != UInt8(ascii: "/") {
                rest = rest.dropFirst()
                if globMatch(pattern.dropFirst(), rest) { return true }
            }
            return false
        default:
            guard path.first == head else { return false }
            return globMatch(pattern.dropFirst(), path.dropFirst())
        }
    }
}
