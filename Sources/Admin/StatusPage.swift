import Proxy

/// The status page at `GET /` on the admin listener: one self-contained HTML document (styles
/// and the chart inline, no fonts, scripts or images from anywhere), so it works on a machine
/// without internet and on a phone. A few lines of inline script fetch `/?part=main` every
/// few seconds and swap the page's content in place; without scripts a meta refresh reloads it.
enum StatusPage {
    static let refreshSeconds = 5

    /// No resource from elsewhere, and nothing but this page's own inline style and script.
    static let contentSecurityPolicy = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

    static func document(_ snapshot: StatusSnapshot) -> [UInt8] {
        var html = HTML()
        html.raw("""
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>floriday-proxy · \(escape(snapshot.environment))</title>
        <noscript><meta http-equiv="refresh" content="\(refreshSeconds * 2)"></noscript>
        <style>\(style)</style>
        </head><body>
        <main id="status">
        """)
        main(snapshot, into: &html)
        html.raw("""
        </main>
        <script>\(script)</script>
        </body></html>

        """)
        return html.bytes
    }

    /// The part the script swaps in on each refresh.
    static func fragment(_ snapshot: StatusSnapshot) -> [UInt8] {
        var html = HTML()
        main(snapshot, into: &html)
        return html.bytes
    }

    private static func main(_ s: StatusSnapshot, into html: inout HTML) {
        // Header: what and where, ready or not.
        let readyBadge: String
        switch s.readiness {
        case .some(let r) where r.ready: readyBadge = "<span class=\"badge ok\" id=\"ready\">ready</span>"
        case .some(let r): readyBadge = "<span class=\"badge bad\" id=\"ready\" title=\"\(escape(r.detail ?? ""))\">not ready: \(escape(r.problem ?? "unknown"))</span>"
        case .none: readyBadge = "<span class=\"badge\" id=\"ready\">readiness not checked yet</span>"
        }
        html.raw("""
        <header><h1>floriday-proxy <small>\(escape(s.version))</small></h1>
        <p><span class="badge env">\(escape(s.environment))</span> \(readyBadge)
        <span class="muted">up \(duration(s.uptimeSeconds)) · updated <span id="updated">\(time(s.generatedAt, now: s.generatedAt))</span> UTC</span></p>
        <p class="muted">listening on \(escape(s.listen)) → <span id="upstream-url">\(escape(s.upstream.url))</span> (\(escape(s.upstream.httpProtocol)))</p>
        </header>
        <div class="cards">
        """)

        // Token: the state, never the token.
        let t = s.token
        html.raw("<section class=\"card\" id=\"token\"><h2>Access token</h2>")
        if t.valid {
            html.raw("<p class=\"state ok\" id=\"token-state\">valid</p><dl><dt>expires in</dt><dd id=\"token-expires\">\(duration(t.expiresInSeconds ?? 0))</dd>")
        } else if t.currentError != nil {
            html.raw("<p class=\"state bad\" id=\"token-state\">no valid token: fetches fail</p><dl>")
        } else {
            html.raw("<p class=\"state\" id=\"token-state\">none yet (fetched with the first request)</p><dl>")
        }
        if let last = t.lastFetch {
            html.raw("<dt>last fetch</dt><dd id=\"token-last-fetch\">\(time(last.time, now: s.generatedAt)) <span class=\"\(last.outcome == "success" ? "ok" : "bad")\">\(escape(last.outcome))</span></dd>")
        }
        if let success = t.lastSuccess {
            html.raw("<dt>last success</dt><dd>\(time(success, now: s.generatedAt))</dd>")
        }
        html.raw("<dt>fetches</dt><dd>\(t.fetches), \(t.failures) failed</dd></dl>")
        if let message = t.currentError {
            let retry = t.retryInSeconds.map { " Next attempt in about \($0) s." } ?? ""
            html.raw("<p class=\"reason\" id=\"token-error\"><b>\(escape(t.currentErrorKind ?? "error")):</b> \(escape(message))\(retry)</p>")
        }
        html.raw("</section>")

        // Upstream pool.
        let u = s.upstream
        let reuse = u.reuseRatio.map { percent($0) } ?? "–"
        html.raw("""
        <section class="card" id="pool"><h2>Upstream pool</h2><dl>
        <dt>connections open</dt><dd id="pool-open">\(u.connectionsOpen)</dd>
        <dt>TLS handshakes</dt><dd id="pool-handshakes">\(u.handshakes)</dd>
        <dt>requests sent</dt><dd>\(u.requests)</dd>
        <dt>on a reused connection</dt><dd id="pool-reuse">\(reuse)</dd>
        </dl></section>
        """)

        // Requests by status class.
        let r = s.requests
        html.raw("<section class=\"card\" id=\"requests\"><h2>Requests</h2><table class=\"classes\"><thead><tr><th></th>")
        for name in StatusSnapshot.statusClassNames.dropFirst() { html.raw("<th class=\"c\(name)\">\(name)</th>") }
        html.raw("</tr></thead><tbody>")
        for (label, counts, id) in [("last minute", r.lastMinute, "requests-minute"), ("last hour", r.lastHour, "requests-hour")] {
            html.raw("<tr id=\"\(id)\"><th>\(label)</th>")
            for index in 1..<5 { html.raw("<td>\(counts[index])</td>") }
            html.raw("</tr>")
        }
        html.raw("</tbody></table><p class=\"muted\">\(r.inFlight) in flight · \(r.total) since start</p></section>")

        // Retries after 401.
        let retries = s.retriesAfter401
        html.raw("""
        <section class="card" id="retries"><h2>Retries after 401</h2><dl>
        <dt>replayed</dt><dd id="retries-total">\(retries.total)</dd>
        <dt>then succeeded</dt><dd>\(retries.succeeded)</dd>
        <dt>then failed</dt><dd class="\(retries.failed > 0 ? "bad" : "")">\(retries.failed)</dd>
        </dl></section>
        </div>
        """)

        chart(r.recent, into: &html)

        // Organisations and rate shaping, where the proxy has them.
        if let organizations = s.organizations {
            html.raw("<section id=\"organizations\"><h2>Organisations</h2><table><thead><tr><th>organisation</th><th>waiting</th><th>429s</th></tr></thead><tbody>")
            for organization in organizations {
                html.raw("<tr class=\"organization\"><td>\(escape(organization.name))</td><td>\(organization.waiting)</td><td class=\"\(organization.tooManyRequests > 0 ? "bad" : "")\">\(organization.tooManyRequests)</td></tr>")
            }
            html.raw("</tbody></table></section>")
        }

        // Token fetch failures, with the IDM's reason.
        if !t.recentFailures.isEmpty {
            html.raw("<section id=\"token-failures\"><h2>Token fetch failures</h2><table><thead><tr><th>time (UTC)</th><th>outcome</th><th>reason</th></tr></thead><tbody>")
            for failure in t.recentFailures {
                html.raw("<tr class=\"token-failure\"><td>\(time(failure.time, now: s.generatedAt))</td><td>\(escape(failure.outcome))</td><td>\(escape(failure.reason ?? ""))</td></tr>")
            }
            html.raw("</tbody></table></section>")
        }

        // The last errors the proxy answered itself.
        html.raw("<section id=\"errors\"><h2>Last \(RecentProblems.capacity) proxy errors</h2>")
        if s.errors.isEmpty {
            html.raw("<p class=\"muted\" id=\"no-errors\">None since start.</p>")
        } else {
            html.raw("<div class=\"scroll\"><table><thead><tr><th>time (UTC)</th><th>status</th><th>problem type</th><th>method</th><th>path</th><th>request id</th></tr></thead><tbody>")
            for error in s.errors {
                html.raw("<tr class=\"error\"><td>\(time(error.time, now: s.generatedAt))</td><td>\(error.status)</td><td class=\"type\">\(escape(error.type))</td><td>\(escape(error.method))</td><td class=\"path\">\(escape(error.path))</td><td><code>\(escape(error.requestID))</code></td></tr>")
            }
            html.raw("</tbody></table></div>")
        }
        html.raw("</section><footer class=\"muted\">JSON: <a href=\"/status.json\">/status.json</a> · <a href=\"/metrics\">/metrics</a> · <a href=\"/readyz\">/readyz</a></footer>")
    }

    /// Requests per second by status class, stacked, one column per second. Drawn from the
    /// counts as paths of unit-wide rectangles: a few kilobytes, no script.
    private static func chart(_ window: RequestWindow, into html: inout HTML) {
        let seconds = window.seconds
        let height = 100
        let peak = (0..<seconds).map { window.total(second: $0) }.max() ?? 0
        html.raw("<section id=\"chart\"><h2>Requests per second, last \(seconds / 60) minutes</h2>")
        html.raw("<svg id=\"requests-chart\" viewBox=\"0 0 \(seconds) \(height)\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"Requests per second by status class over the last \(seconds / 60) minutes; peak \(peak) per second\">")
        html.raw("<rect class=\"frame\" x=\"0\" y=\"0\" width=\"\(seconds)\" height=\"\(height)\"/>")
        if peak > 0 {
            var base = [Double](repeating: Double(height), count: seconds)
            // 2xx at the bottom, then 3xx, 4xx, 5xx; 1xx (interim answers) is not drawn.
            for statusClass in 2...5 {
                var d = ""
                for second in 0..<seconds {
                    let count = window.perSecond[statusClass - 1][second]
                    guard count > 0 else { continue }
                    let h = Double(count) * Double(height) / Double(peak)
                    base[second] -= h
                    d += "M\(second) \(format(base[second]))h1v\(format(h))h-1z"
                }
                if !d.isEmpty { html.raw("<path class=\"c\(statusClass)xx\" d=\"\(d)\"/>") }
            }
        }
        html.raw("</svg>")
        html.raw("<p class=\"axis muted\"><span>−\(seconds / 60) min</span><span id=\"chart-peak\">peak \(peak)/s</span><span>now</span></p>")
        html.raw("<p class=\"legend\"><span class=\"key c2xx\"></span>2xx <span class=\"key c3xx\"></span>3xx <span class=\"key c4xx\"></span>4xx <span class=\"key c5xx\"></span>5xx</p></section>")
    }

    // MARK: Formatting

    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text.unicodeScalars {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(character)
            }
        }
        return out
    }

    /// A time as the page shows it: the time of day (UTC) when it is today's, else date and
    /// minute; the full RFC 3339 form is in the element's `datetime`.
    static func time(_ time: WallTime, now: WallTime) -> String {
        let full = rfc3339(time)
        let sameDay = full.prefix(10) == rfc3339(now).prefix(10)
        let shown = sameDay ? String(full.dropFirst(11).dropLast()) : full.prefix(10) + " " + full.dropFirst(11).prefix(5)
        return "<time datetime=\"\(full)\">\(shown)</time>"
    }

    static func duration(_ seconds: Int) -> String {
        let seconds = max(0, seconds)
        if seconds < 60 { return "\(seconds) s" }
        if seconds < 3600 { return "\(seconds / 60) min \(seconds % 60) s" }
        if seconds < 86400 { return "\(seconds / 3600) h \(seconds % 3600 / 60) min" }
        return "\(seconds / 86400) d \(seconds % 86400 / 3600) h"
    }

    private static func percent(_ ratio: Double) -> String {
        "\(Int((ratio * 100).rounded())) %"
    }

    private static func format(_ value: Double) -> String {
        let rounded = (value * 100).rounded() / 100
        return rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
    }

    static let style = """
    :root{color-scheme:light dark;--ok:#1a7f37;--bad:#c62828;--warn:#b26a00;--muted:#6b7280;--line:#d0d7de;--card:#f6f8fa}
    @media (prefers-color-scheme:dark){:root{--ok:#3fb950;--bad:#f85149;--warn:#d29922;--muted:#9ca3af;--line:#30363d;--card:#161b22}}
    body{font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1100px;padding:12px}
    h1{font-size:1.4em;margin:.2em 0}h1 small{font-weight:normal;color:var(--muted);font-size:.6em}
    h2{font-size:1em;margin:0 0 .4em}
    header p{margin:.3em 0}
    .muted{color:var(--muted)}.ok{color:var(--ok)}.bad{color:var(--bad)}
    .badge{display:inline-block;padding:1px 8px;border-radius:10px;border:1px solid var(--line);font-size:.9em}
    .badge.ok{background:var(--ok);color:#fff;border-color:var(--ok)}.badge.bad{background:var(--bad);color:#fff;border-color:var(--bad)}
    .badge.env{text-transform:uppercase;letter-spacing:.05em}
    .cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(240px,1fr));gap:10px;margin:12px 0}
    .card{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:10px;margin:0}
    .state{font-weight:600;margin:0 0 .4em}.state.ok{color:var(--ok)}.state.bad{color:var(--bad)}
    dl{display:grid;grid-template-columns:auto 1fr;gap:2px 10px;margin:0}dt{color:var(--muted)}dd{margin:0}
    .reason{margin:.5em 0 0;font-size:.9em;overflow-wrap:anywhere}
    table{border-collapse:collapse;width:100%;font-size:.9em}th,td{text-align:left;padding:3px 6px;border-bottom:1px solid var(--line)}
    .classes td,.classes th{text-align:right}.classes th:first-child{text-align:left}
    .scroll{overflow-x:auto}td.path{overflow-wrap:anywhere}code{font-size:.9em}
    section{margin:12px 0}
    #requests-chart{width:100%;height:140px;display:block}
    .frame{fill:none;stroke:var(--line);stroke-width:1;vector-effect:non-scaling-stroke}
    .c2xx{fill:var(--ok);background:var(--ok)}.c3xx{fill:#0969da;background:#0969da}.c4xx{fill:var(--warn);background:var(--warn)}.c5xx{fill:var(--bad);background:var(--bad)}
    th.c2xx,th.c3xx,th.c4xx,th.c5xx{background:none}
    .axis{display:flex;justify-content:space-between;margin:2px 0;font-size:.8em}
    .legend{font-size:.85em;margin:0}.key{display:inline-block;width:10px;height:10px;margin:0 3px 0 10px;border-radius:2px}
    footer{margin:16px 0 4px;font-size:.85em}
    """

    /// Swaps in a fresh `<main>` every few seconds; counts the refreshes on the root element
    /// (tests read it) and says so when the proxy stops answering.
    static let script = """
    (function(){var n=0;var main=document.getElementById("status");
    function refresh(){fetch("/?part=main",{cache:"no-store"}).then(function(r){if(!r.ok)throw new Error(r.status);return r.text()})
    .then(function(t){main.innerHTML=t;n+=1;document.documentElement.setAttribute("data-refreshed",String(n));document.title=document.title.replace(/^\\(offline\\) /,"")})
    .catch(function(){if(document.title.indexOf("(offline)")!==0)document.title="(offline) "+document.title})}
    setInterval(refresh,\(refreshSeconds * 1000));})();
    """
}

/// Builds a document as bytes.
struct HTML {
    private(set) var bytes: [UInt8] = []
    init() { bytes.reserveCapacity(16 * 1024) }
    mutating func raw(_ text: String) { bytes.append(contentsOf: text.utf8) }
}
