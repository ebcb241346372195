import JSON
import Proxy

/// `/status.json`: the status page's data for scripts. Field names are documented in the
/// README; absent values are `null`, never left out, so a script can tell "none" from a typo.
extension StatusSnapshot {
    static let statusClassNames = ["1xx", "2xx", "3xx", "4xx", "5xx"]

    var json: [UInt8] {
        var out = JSONWriter()
        out.object {
            $0.field("version", version)
            $0.field("generatedAt", rfc3339(generatedAt))
            $0.field("uptimeSeconds", uptimeSeconds)
            $0.field("environment", environment)
            $0.field("listen", listen)
            $0.field("ready") { w in
                if let readiness {
                    w.object {
                        $0.field("ready", readiness.ready)
                        $0.field("checkedAt", rfc3339(readiness.checkedAt))
                        $0.field("problem", readiness.problem)
                        $0.field("detail", readiness.detail)
                    }
                } else {
                    w.null()
                }
            }
            $0.field("token") { w in
                w.object {
                    $0.field("valid", token.valid)
                    $0.field("expiresInSeconds", token.expiresInSeconds)
                    $0.field("fetches", token.fetches)
                    $0.field("failures", token.failures)
                    $0.field("lastFetch") { w in Self.write(token.lastFetch, to: &w) }
                    $0.field("lastSuccessAt", token.lastSuccess.map(rfc3339))
                    $0.field("error") { w in
                        if let message = token.currentError {
                            w.object {
                                $0.field("kind", token.currentErrorKind)
                                $0.field("reason", message)
                                $0.field("retryInSeconds", token.retryInSeconds)
                            }
                        } else {
                            w.null()
                        }
                    }
                    $0.field("recentFailures") { w in
                        w.array(token.recentFailures) { w, fetch in Self.write(fetch, to: &w) }
                    }
                }
            }
            $0.field("upstream") { w in
                w.object {
                    $0.field("url", upstream.url)
                    $0.field("protocol", upstream.httpProtocol)
                    $0.field("connectionsOpen", upstream.connectionsOpen)
                    $0.field("handshakes", upstream.handshakes)
                    $0.field("requests", upstream.requests)
                    $0.field("reusedConnectionRequests", upstream.reusedRequests)
                    $0.field("reuseRatio", upstream.reuseRatio)
                }
            }
            $0.field("requests") { w in
                w.object {
                    $0.field("inFlight", requests.inFlight)
                    $0.field("total", requests.total)
                    $0.field("lastMinute") { w in Self.writeClasses(requests.lastMinute, to: &w) }
                    $0.field("lastHour") { w in Self.writeClasses(requests.lastHour, to: &w) }
                    $0.field("perSecond") { w in
                        w.object {
                            $0.field("seconds", requests.recent.seconds)
                            for (index, name) in Self.statusClassNames.enumerated() {
                                $0.field(name) { w in w.array(requests.recent.perSecond[index]) { w, count in w.number(count) } }
                            }
                        }
                    }
                }
            }
            $0.field("retriesAfter401") { w in
                w.object {
                    $0.field("total", retriesAfter401.total)
                    $0.field("succeeded", retriesAfter401.succeeded)
                    $0.field("failed", retriesAfter401.failed)
                }
            }
            $0.field("errors") { w in
                w.array(errors) { w, error in
                    w.object {
                        $0.field("at", rfc3339(error.time))
                        $0.field("type", error.type)
                        $0.field("status", error.status)
                        $0.field("method", error.method)
                        $0.field("path", error.path)
                        $0.field("requestId", error.requestID)
                    }
                }
            }
            if let organizations {
                $0.field("organizations") { w in
                    w.array(organizations) { w, organization in
                        w.object {
                            $0.field("name", organization.name)
                            $0.field("waiting", organization.waiting)
                            $0.field("tooManyRequests", organization.tooManyRequests)
                        }
                    }
                }
            }
        }
        return out.bytes
    }

    private static func write(_ fetch: TokenFetchHistory.Fetch?, to w: inout JSONWriter) {
        guard let fetch else { return w.null() }
        w.object {
            $0.field("at", rfc3339(fetch.time))
            $0.field("outcome", fetch.outcome)
            $0.field("reason", fetch.reason)
        }
    }

    private static func writeClasses(_ counts: [Int], to w: inout JSONWriter) {
        w.object {
            for (index, name) in statusClassNames.enumerated() { $0.field(name, counts[index]) }
        }
    }
}

/// A small JSON writer: objects and arrays by closures, strings escaped by `jsonString`.
struct JSONWriter {
    private(set) var bytes: [UInt8] = []
    private var needsComma = false

    mutating func object(_ body: (inout JSONWriter) -> Void) {
        bytes.append(UInt8(ascii: "{"))
        needsComma = false
        body(&self)
        bytes.append(UInt8(ascii: "}"))
        needsComma = true
    }

    mutating func array<T>(_ items: [T], _ body: (inout JSONWriter, T) -> Void) {
        bytes.append(UInt8(ascii: "["))
        for (index, item) in items.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            needsComma = false
            body(&self, item)
        }
        bytes.append(UInt8(ascii: "]"))
        needsComma = true
    }

    mutating func field(_ name: String, _ body: (inout JSONWriter) -> Void) {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
        bytes.append(contentsOf: jsonString(name).utf8)
        bytes.append(UInt8(ascii: ":"))
        needsComma = false
        body(&self)
        needsComma = true
    }

    mutating func field(_ name: String, _ value: String?) { field(name) { w in value.map { w.string($0) } ?? w.null() } }
    mutating func field(_ name: String, _ value: Int?) { field(name) { w in value.map { w.number($0) } ?? w.null() } }
    mutating func field(_ name: String, _ value: Bool) { field(name) { w in w.raw(value ? "true" : "false") } }
    mutating func field(_ name: String, _ value: Double?) {
        field(name) { w in
            guard let value, value.isFinite else { return w.null() }
            w.raw(String((value * 1000).rounded() / 1000))
        }
    }

    mutating func string(_ value: String) { raw(jsonString(value)) }
    mutating func number(_ value: Int) { raw(String(value)) }
    mutating func null() { raw("null") }
    mutating func raw(_ text: String) { bytes.append(contentsOf: text.utf8) }
}
