#!/usr/bin/env python3
"""Renders bench/out/ (written by bench.sh) as the Markdown of bench/results.md, on stdout.

usage: report.py OUT_DIR
"""
import csv
import os
import sys

out = sys.argv[1]


def read_tsv(name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


meta = {}
with open(os.path.join(out, "meta.env")) as f:
    for line in f:
        key, _, value = line.rstrip("\n").partition("=")
        meta[key] = value

rows = read_tsv("results.tsv")
# System calls and context switches per request come from a counting run of their own (perf
# attached), not from the runs whose CPU is reported; results of older runs carry them inline.
counts = {(c["section"], c["conns"], c["method"], c["target"]): c for c in read_tsv("counts.tsv")}
for r in rows:
    c = counts.get((r["section"], r["conns"], r["method"], r["target"]))
    if c:
        r["syscalls_per_req"], r["cs_per_req"] = c["syscalls_per_req"], c["cs_per_req"]
memory = read_tsv("memory.tsv")
health = read_tsv("health.tsv")

TARGETS = {
    "A": "A upstream direct (TLS)",
    "B": "B nginx proxy",
    "C": "C floriday-proxy",
    "B-log": "B nginx proxy, access_log on",
    "C-info": "C floriday-proxy, log level info",
    "D": "D floriday-proxy, loop thread in epoll_wait (not shipped)",
    "E": "E floriday-proxy, h2 upstream",
    "F": "F nghttpx, h2 upstream",
    "C1": "C floriday-proxy (upstream with one worker)",
    "E1": "E floriday-proxy, h2 upstream (upstream with one worker)",
    "C-mem": "C floriday-proxy, shaping, buckets in process",
    "C-redis": "C floriday-proxy, shaping, buckets in Redis",
}


def num(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def ms(us):
    v = num(us)
    return "—" if v is None else f"{v / 1000:.2f}"


def mib(kb):
    v = num(kb)
    return "—" if v is None else f"{v / 1024:.1f}"


def plain(value, digits=3):
    v = num(value)
    return "—" if v is None else f"{v:.{digits}f}"


def ratio(c, b, digits=2):
    c, b = num(c), num(b)
    if c is None or b is None or b == 0:
        return "—"
    return f"{c / b:.{digits}f}"


def errors(row):
    e, s = int(row["errors"]), int(row["non2xx"])
    return "0" if e == 0 and s == 0 else f"{e} io, {s} non-2xx"


HEADER = ("| conns | method | target | req/s | p50 ms | p99 ms | max RSS MiB | CPU s / 10k req | syscalls / req | ctx switches / req | upstream conns | errors | other load |\n"
          "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")


def conns(row):
    v = num(row.get("upstream_conns"))
    return "—" if v is None else f"{int(v)}"


def line(row):
    return (f"| {row['conns']} | {row['method']} | {TARGETS[row['target']]} | {int(float(row['rps'])):,} | "
            f"{ms(row['p50_us'])} | {ms(row['p99_us'])} | {mib(row['hwm_kb'])} | {plain(row['cpu_s_per_10k'])} |"
            f" {plain(row.get('syscalls_per_req'), 1)} | {plain(row.get('cs_per_req'), 2)} | {conns(row)} | {errors(row)} |"
            f" {plain(row.get('other_cpu_pct'), 0)}% |")


def ratio_line(c, b):
    return (f"| | | **C/B** | **{ratio(c['rps'], b['rps'])}** | **{ratio(c['p50_us'], b['p50_us'])}** | "
            f"**{ratio(c['p99_us'], b['p99_us'])}** | **{ratio(c['hwm_kb'], b['hwm_kb'])}** | "
            f"**{ratio(c['cpu_s_per_10k'], b['cpu_s_per_10k'])}** | **{ratio(c.get('syscalls_per_req'), b.get('syscalls_per_req'))}** |"
            f" **{ratio(c.get('cs_per_req'), b.get('cs_per_req'))}** | | | |")


print("# Benchmark results: floriday-proxy against nginx")
print()
print("Written by bench/bench.sh; method, profile and suggested changes in bench/NOTES.md.")
print()
binary = meta.get("binary", "")
built = binary[binary.find("(") + 1:binary.rfind(")")] if "(" in binary else "unknown"
print(f"- Date: {meta.get('date')}; checkout at commit {meta.get('commit')}; floriday-proxy binary {built}")
print(f"- Machine: {meta.get('cores')} cores ({meta.get('cpu')}), {meta.get('memory')}, {meta.get('os')}, {meta.get('kernel')}")
print(f"- Versions: {meta.get('swift')}; nginx {meta.get('nginx')}; {meta.get('nghttpx', 'nghttpx —')}; {meta.get('wrk')}; {meta.get('openssl')}")
warmup = f" after {meta['warmup']} s of warm-up at the same load" if meta.get("warmup", "0") != "0" else ""
repeated = f"{meta['rounds']} rounds per row, " if meta.get("rounds", "1") != "1" else ""
print(f"- Load: wrk, {meta.get('threads')} threads, {meta.get('duration')} s per run{warmup}, keep-alive; {repeated}"
      "the targets interleaved (order rotating). GET answers 1 KiB of JSON; POST sends 4 KiB.")
print("- Everything (wrk, upstream nginx, the proxy under test, the IDM) shares the same cores over loopback:"
      " req/s measures the whole system, CPU s / 10k req the proxy alone.")
print("- floriday-proxy at log level warning and nginx with `access_log off` in this table (logging: see below).")
print("- B, C, E and F run as a fresh process for every row (primed with one GET and one POST; C's and E's token cached)."
      " max RSS: that process's VmHWM at the end of the run; for nginx the sum over master + 2 workers"
      " (shared pages counted per process). CPU: utime + stime of the same processes during the run."
      " A has no proxy process.")
print("- syscalls / req and ctx switches / req: counted by perf (all threads of the measured processes) in a"
      " separate 3 s run at the same load right after the row's first measured run; counting slows the counted"
      " process, so it is never attached while CPU is measured.")
print("- other load: CPU used meanwhile by processes outside the benchmark (not niced), in % of the machine"
      " (a lower bound); rows with more than a few % were measured on a busy machine.")
print()
runs = [r for r in rows if r["section"] == "main"]
rounds = max((int(r.get("round") or 1) for r in runs), default=1)


def median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def median_row(group):
    """One row for a target's runs of a step: each column's median, errors summed."""
    if len(group) == 1:
        return group[0]
    row = dict(group[0])
    for field in ("rps", "p50_us", "p99_us", "max_us", "hwm_kb", "cpu_s_per_10k", "other_cpu_pct",
                  "syscalls_per_req", "cs_per_req", "upstream_conns", "seconds"):
        m = median(num(r.get(field)) for r in group)
        row[field] = "-" if m is None else str(m)
    for field in ("requests", "errors", "non2xx"):
        row[field] = str(sum(int(r[field]) for r in group))
    return row


steps = []
for r in runs:
    key = (r["conns"], r["method"])
    if key not in steps:
        steps.append(key)
main = []
for key in steps:
    for t in TARGETS:
        group = [r for r in runs if (r["conns"], r["method"]) == key and r["target"] == t]
        if group:
            main.append(median_row(group))
if rounds > 1:
    print(f"Each row: the median of {rounds} runs (column by column; errors summed); the runs one by one are below.")
    print()
print(HEADER)
for key in steps:
    by_target = {r["target"]: r for r in main if (r["conns"], r["method"]) == key}
    for t in ("A", "B", "C", "D", "E", "F"):
        if t in by_target:
            print(line(by_target[t]))
    if "B" in by_target and "C" in by_target:
        print(ratio_line(by_target["C"], by_target["B"]))
    if "B" in by_target and "D" in by_target:
        print(ratio_line(by_target["D"], by_target["B"]).replace("**C/B**", "**D/B**"))
    if "C" in by_target and "E" in by_target:
        print(ratio_line(by_target["E"], by_target["C"]).replace("**C/B**", "**E/C**"))
    if "F" in by_target and "E" in by_target:
        print(ratio_line(by_target["E"], by_target["F"]).replace("**C/B**", "**E/F**"))
print()
print("E/C: the HTTP/2 upstream against the HTTP/1.1 one (same proxy, same upstream server); E/F: floriday-proxy"
      " against nghttpx, both with an h2 upstream. upstream conns: the most established connections from the"
      " measured proxy to the upstream seen during the run (`ss -p`, every second).")
print()
print("C/B: below 1 is better for floriday-proxy in every column except req/s."
      " At 256 connections nginx's `keepalive 64` (an idle cache per worker, not a cap) makes it open and close"
      " upstream TLS connections all the time, which is most of its drop there (bench/NOTES.md).")

if rounds > 1:
    print()
    print("## The rounds one by one")
    print()
    print(f"Every target ran {rounds} times per row, each time as a fresh process, the order of the targets rotating"
          " from round to round; the table above shows the medians. Here each round's value, in the order the rounds ran:"
          " how far they spread is how far a single run can be trusted on this machine.")
    print()
    print("| conns | method | target | req/s | p99 ms | CPU s / 10k req |")
    print("|---:|---|---|---|---|---|")
    for key in steps:
        for t in TARGETS:
            group = sorted((r for r in runs if (r["conns"], r["method"]) == key and r["target"] == t),
                           key=lambda r: int(r.get("round") or 1))
            if len(group) < 2:
                continue
            rps = " / ".join(f"{int(float(r['rps'])):,}" for r in group)
            p99 = " / ".join(ms(r["p99_us"]) for r in group)
            cpu = " / ".join(plain(r["cpu_s_per_10k"]) for r in group)
            print(f"| {key[0]} | {key[1]} | {TARGETS[t]} | {rps} | {p99} | {cpu} |")

def comparisons(prefix):
    """The comparisons of the sections named prefix + "second/first", in the order they ran:
    (section, method, first, second, pairs), a pair being {target: row} of one round in which
    both ran."""
    section_rows = [r for r in rows if r["section"].startswith(prefix)]
    keys = []
    for r in section_rows:
        if (r["section"], r["method"]) not in keys:
            keys.append((r["section"], r["method"]))
    for section, method in keys:
        second, first = section[len(prefix):].split("/")
        by_round = {}
        for r in section_rows:
            if (r["section"], r["method"]) == (section, method):
                by_round.setdefault(int(r.get("round") or 1), {})[r["target"]] = r
        pairs = [by_round[k] for k in sorted(by_round) if first in by_round[k] and second in by_round[k]]
        yield section, method, first, second, pairs


def pair_ratios(pairs, first, second, field):
    """second/first of `field` for each pair, in order; None where either value is missing."""
    values = []
    for pair in pairs:
        a, b = num(pair[first].get(field)), num(pair[second].get(field))
        values.append(b / a if a and b is not None else None)
    return values


def median_ratio(pairs, first, second, field):
    return median(pair_ratios(pairs, first, second, field))


paired = list(comparisons("paired-"))
if paired:
    print()
    print("## Paired comparisons (64 connections)")
    print()
    print(f"Both processes running at once, warmed up, taking turns: {meta.get('pairs')} pairs of {meta.get('pair_duration')} s runs,"
          " the order alternating within the pair. The host's speed drifts within seconds, so a ratio of two runs taken"
          " seconds apart says more than two rows of the table above, measured a minute or more apart; the median of the"
          " per-pair ratios is the figure, min–max its spread. CPU and p99: below 1 favours the second program.")
    print()
    print("| method | second / first | CPU s / 10k req: first, second (medians) | CPU ratio median (min–max) | req/s ratio | p99 ratio |")
    print("|---|---|---|---|---:|---:|")
    for section, method, first, second, pairs in paired:
        cpu = [v for v in pair_ratios(pairs, first, second, "cpu_s_per_10k") if v is not None]
        first_cpu = median(num(pair[first]["cpu_s_per_10k"]) for pair in pairs)
        second_cpu = median(num(pair[second]["cpu_s_per_10k"]) for pair in pairs)
        spread = f" ({min(cpu):.2f}–{max(cpu):.2f})" if cpu else ""
        print(f"| {method} | **{second}/{first}** ({TARGETS[second]} / {TARGETS[first]}) | {plain(first_cpu)}, {plain(second_cpu)} |"
              f" **{plain(median(cpu), 2)}**{spread} | {plain(median_ratio(pairs, first, second, 'rps'), 2)} |"
              f" {plain(median_ratio(pairs, first, second, 'p99_us'), 2)} |")

fresh = list(comparisons("fresh-"))
if fresh:
    placements = {(p["section"], p["method"], int(p["round"]), p["target"]): p["placement"] for p in read_tsv("placement.tsv")}
    print()
    print("## E against C at 256 connections, fresh pairs")
    print()
    print(f"{meta.get('fresh_pairs')} pairs per row; in each, C and E (order alternating) each started as a fresh process,"
          f" warmed up and measured for {meta.get('pair_duration')} s. With h2 the 256 clients' requests travel on four"
          " upstream connections, and nginx serves each connection from the worker process that accepted it; the last"
          " column shows how E's connections fell on the upstream's workers in each pair (\"3+1\": three on one worker,"
          " one on the other), with that pair's p99 ratio. The last row uses a second upstream, the same server with one"
          " worker, where the placement cannot matter. Ratios are E/C per pair; the median is the figure.")
    print()
    print("| upstream | method | p99 E/C median (min–max) | pairs with E's p99 lower | req/s E/C | CPU per request E/C | E's connections per upstream worker: p99 E/C of that pair |")
    print("|---|---|---:|---:|---:|---:|---|")
    ONE_WORKER_TARGETS = ("C1", "E1")
    for section, method, first, second, pairs in fresh:
        p99 = pair_ratios(pairs, first, second, "p99_us")
        valid = [v for v in p99 if v is not None]
        lower = sum(1 for v in valid if v < 1)
        spread = f" ({min(valid):.2f}–{max(valid):.2f})" if valid else ""
        placed = ", ".join(f"{placements.get((section, method, int(pair[second].get('round') or 1), second), '?')}: {plain(v, 2)}"
                           for pair, v in zip(pairs, p99))
        upstream = "one worker" if second in ONE_WORKER_TARGETS else f"{meta.get('cores', '2')} workers"
        print(f"| {upstream} | {method} | **{plain(median(valid), 2)}**{spread} | {lower} of {len(valid)} |"
              f" {plain(median_ratio(pairs, first, second, 'rps'), 2)} | {plain(median_ratio(pairs, first, second, 'cpu_s_per_10k'), 2)} | {placed} |")

# After every run the proxy got one more GET (3 s limit); a failure means the run left it broken.
if health:
    print()
    print("## Does the proxy still answer after a run?")
    print()
    print("After each run (and after 200 requests whose clients disconnected before the response), four GETs at once"
          " on new connections, 3 s limit each; a run that left the proxy unable to answer shows here.")
    print()
    for t in ("B", "C", "D", "E", "F", "C1", "E1", "B-log", "C-info"):
        probes = [h for h in health if h["target"] == t]
        if not probes:
            continue
        failed = [h for h in probes if h["status"] != "200"]
        if failed:
            detail = "; ".join(f"{h['run']} (got {h['status'] if h['status'] not in ('', '000') else 'no answer'})" for h in failed)
            print(f"- {TARGETS[t]}: **no answer after {len(failed)} of {len(probes)} runs**: {detail}.")
        else:
            print(f"- {TARGETS[t]}: answered after every run ({len(probes)}).")

logging_rows = {r["target"]: r for r in rows if r["section"] == "logging"}
if logging_rows:
    print()
    print("## With access logging (GET, 64 connections)")
    print()
    print("floriday-proxy at `log.level: info` (one access line per request, text format, stderr to a file);"
          " nginx B with `access_log` to a file (combined format). Separate processes, run after the main table.")
    print()
    print(HEADER)
    for t in ("B-log", "C-info"):
        if t in logging_rows:
            print(line(logging_rows[t]))
    if "B-log" in logging_rows and "C-info" in logging_rows:
        print(ratio_line(logging_rows["C-info"], logging_rows["B-log"]))
    base = {r["target"]: r for r in main if r["conns"] == "64" and r["method"] == "GET"}
    if "C" in base and "C-info" in logging_rows:
        c, ci = base["C"], logging_rows["C-info"]
        print()
        print(f"Logging at info costs floriday-proxy {plain(num(ci['cpu_s_per_10k']) - num(c['cpu_s_per_10k']))} CPU s per 10k requests"
              f" ({ratio(ci['cpu_s_per_10k'], c['cpu_s_per_10k'])}× the warning-level figure) and changes req/s by a factor of"
              f" {ratio(ci['rps'], c['rps'])}.")

budget = [r for r in rows if r["section"] == "rate-budget"]
if budget:
    extra = {}
    for raw in open(os.path.join(out, "extra-cpu.tsv")) if os.path.exists(os.path.join(out, "extra-cpu.tsv")) else []:
        parts = raw.split()
        if len(parts) == 3 and parts[0] == "rate-budget":
            extra.setdefault(parts[1], []).append(float(parts[2]))
    print()
    print("## The rate budget's cost (GET, 64 connections)")
    print()
    print("floriday-proxy without shaping (C), with shaping on and the buckets in the process (C-mem), and with them in a"
          f" redis-server {meta.get('redis', '')} on loopback (C-redis: one EVALSHA per request)."
          " Shaping is on with one bucket per key (`scope: key`) and a limit the load never reaches, so no request waits:"
          " what shows is the cost of asking. Each row a fresh process; the three in turn, twice.")
    print()
    print(HEADER)
    for r in budget:
        print(line(r))
    def mean(target, field):
        values = [num(r[field]) for r in budget if r["target"] == target and num(r[field]) is not None]
        return sum(values) / len(values) if values else None
    if all(mean(t, "rps") for t in ("C", "C-mem", "C-redis")):
        print()
        print("Means of the two rounds:")
        print()
        print("| target | req/s | p50 ms | p99 ms | proxy CPU s / 10k req | Redis CPU s / 10k req |")
        print("|---|---:|---:|---:|---:|---:|")
        for t in ("C", "C-mem", "C-redis"):
            redis_cpu = sum(extra[t]) / len(extra[t]) if extra.get(t) else None
            print(f"| {TARGETS[t]} | {mean(t, 'rps'):,.0f} | {mean(t, 'p50_us') / 1000:.2f} | {mean(t, 'p99_us') / 1000:.2f} |"
                  f" {plain(mean(t, 'cpu_s_per_10k'))} | {plain(redis_cpu)} |")
        c_mem, c_redis = mean("C-mem", "cpu_s_per_10k"), mean("C-redis", "cpu_s_per_10k")
        print()
        print(f"Buckets in Redis against buckets in the process: {plain(c_redis - c_mem)} proxy CPU s per 10k requests"
              f" ({(c_redis - c_mem) / 10000 * 1e6:.0f} µs per request)"
              + (f", plus {plain(sum(extra['C-redis']) / len(extra['C-redis']))} s in Redis" if extra.get('C-redis') else "")
              + f"; p50 {(mean('C-redis', 'p50_us') - mean('C-mem', 'p50_us')) / 1000:+.2f} ms,"
              f" p99 {(mean('C-redis', 'p99_us') - mean('C-mem', 'p99_us')) / 1000:+.2f} ms;"
              f" req/s × {mean('C-redis', 'rps') / mean('C-mem', 'rps'):.2f}."
              " On a shared machine wrk, nginx and Redis compete with the proxy for the same cores.")

if memory:
    print()
    print("## Memory")
    print()
    print(f"RSS of the proxy process(es): at rest, and with {meta.get('idle_connections')} idle keep-alive client connections"
          " (each has sent one GET and read the whole response; all open at once).")
    print()
    print("| target | state | RSS MiB | peak (VmHWM) MiB |")
    print("|---|---|---:|---:|")
    for m in memory:
        print(f"| {TARGETS[m['target']]} | {m['state']} | {mib(m['rss_kb'])} | {mib(m['hwm_kb'])} |")
    for t in ("C", "B"):
        before = [m for m in memory if m["target"] == t and m["state"].startswith("at rest")]
        held = [m for m in memory if m["target"] == t and m["state"].startswith("holding")]
        if before and held:
            n = int(meta.get("idle_connections", "0") or 0)
            delta = num(held[0]["rss_kb"]) - num(before[0]["rss_kb"])
            if n:
                print()
                print(f"{TARGETS[t]}: {delta / 1024:.1f} MiB for {n} idle connections = {delta * 1024 / n / 1024:.1f} KiB per connection.")

if meta.get("long") == "1":
    samples = []
    path = os.path.join(out, "soak-samples.tsv")
    if os.path.exists(path):
        with open(path) as f:
            for raw in f:
                parts = raw.split()
                if len(parts) == 2:
                    samples.append((int(parts[0]), int(parts[1])))
    soak_rows = [r for r in rows if r["section"] == "soak"]
    if soak_rows and samples:
        total = sum(int(r["requests"]) for r in soak_rows)
        seconds = sum(float(r["seconds"]) for r in soak_rows)
        errs = sum(int(r["errors"]) + int(r["non2xx"]) for r in soak_rows)
        warm = [s for s in samples if s[0] >= 10] or samples
        first, last = warm[0][1], warm[-1][1]
        low, high = min(s[1] for s in warm), max(s[1] for s in warm)
        growth = last - first
        flat = abs(growth) <= max(2048, 0.05 * first)
        print()
        print("## Soak (LONG=1)")
        print()
        runs = f" ({len(soak_rows)} wrk runs)" if len(soak_rows) > 1 else ""
        print(f"{total:,} GET requests against one floriday-proxy process at 64 connections in {seconds:.0f} s{runs}"
              f" ({total / seconds:,.0f} req/s), {errs} errors; RSS sampled every 2 s ({len(samples)} samples).")
        print()
        print("| | RSS MiB |")
        print("|---|---:|")
        print(f"| first sample | {samples[0][1] / 1024:.1f} |")
        print(f"| after 10 s warm-up | {first / 1024:.1f} |")
        print(f"| min / max after warm-up | {low / 1024:.1f} / {high / 1024:.1f} |")
        print(f"| last sample | {last / 1024:.1f} |")
        print()
        verdict = "flat" if flat else "NOT flat"
        print(f"After warm-up RSS changed by {growth / 1024:+.1f} MiB: **{verdict}** (flat = within 2 MiB or 5%)."
              " Samples: bench/out/soak-samples.tsv.")
