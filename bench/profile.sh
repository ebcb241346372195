#!/usr/bin/env bash
# Where floriday-proxy spends its time, in the benchmark's set-up (upstream nginx over TLS,
# the sandbox as IDM, token cached, GET of 1 KiB and 4 KiB POST).
#
# 1. callgrind: the proxy runs under valgrind while load_client.py sends REQUESTS GETs and
#    REQUESTS/5 POSTs (METHOD=POST: REQUESTS POSTs only, METHOD=GET: GETs only) over
#    CONNECTIONS keep-alive connections (default 8); then it is stopped (SIGTERM) and
#    callgrind_annotate lists the top functions by inclusive and by self cost (instructions,
#    user space only; valgrind serialises the threads, so waiting and thread hand-offs are
#    not in it).
# 2. perf, when the kernel allows it (software event cpu-clock; hardware counters are often
#    unavailable in VMs): sampled CPU time of the proxy under wrk (64 connections, GET),
#    kernel included, and context switches per request for floriday-proxy and for nginx.
#
# 3. strace -c, when installed: system calls per request for floriday-proxy and for nginx.
#
# Output in bench/out/profile/: callgrind.out, callgrind-summary.txt, callgrind-inclusive.txt,
# callgrind-self.txt, perf-self.txt, perf-children.txt, perf-stat.txt, syscalls.txt. Symbols
# are demangled when swift-demangle is on the PATH.
#
# Environment: PROXY_BIN (as for bench.sh), REQUESTS (default 5000), PERF_SECONDS (default 8),
# UPSTREAM (http1, the default: the upstream offers only http/1.1; h2: it offers h2 over ALPN,
# so the proxy's HTTP/2 upstream path is what is measured), CONNECTIONS and METHOD (callgrind's
# load, see 1.; CONNECTIONS=256 keeps as many requests in flight as the benchmark's largest step,
# which a proxy slowed down by valgrind serves with ~128 streams per upstream connection),
# CALLGRIND_ONLY=1 (stop after 1.).
set -euo pipefail

cd "$(dirname "$0")/.."
BENCH="$(pwd)/bench"
OUT="$BENCH/out/profile"
REQUESTS=${REQUESTS:-5000}
PERF_SECONDS=${PERF_SECONDS:-8}
UPSTREAM=${UPSTREAM:-http1}
CONNECTIONS=${CONNECTIONS:-8}
METHOD=${METHOD:-both}
case $METHOD in
    both) GETS=$REQUESTS POSTS=$(( REQUESTS / 5 )) ;;
    GET) GETS=$REQUESTS POSTS=0 ;;
    POST) GETS=0 POSTS=$REQUESTS ;;
    *) echo "METHOD must be both, GET or POST, not $METHOD" >&2; exit 1 ;;
esac
API_PATH=/suppliers-api-2024v2/_sandbox/echo/trade-items
API_KEY=sandbox-api-key
LOG_PREFIX=profile

# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

require_tools nginx curl openssl python3 valgrind callgrind_annotate objcopy cc
find_proxy_bin
rm -rf "$OUT"
mkdir -p "$OUT/tmp"
make_certificates
start_sandbox
start_upstream
case $UPSTREAM in
    http1) upstream_port=$UPSTREAM_PORT ;;
    h2) upstream_port=$UPSTREAM_H2_PORT ;;
    *) die "UPSTREAM must be http1 or h2, not $UPSTREAM" ;;
esac
log "upstream protocol: $UPSTREAM"

# Demangles Swift symbols when the toolchain's demangler is there.
demangle() {
    if command -v swift-demangle >/dev/null; then swift-demangle --simplified; else cat; fi
}

# --- 1. callgrind ---
# Valgrind 3.19 (Debian 12) cannot read the DWARF 5 debug info of Swift 6 binaries: it runs a
# copy without debug info (the symbol table stays, so the profile is per function, not per line).
objcopy --strip-debug "$PROXY_BIN" "$OUT/floriday-proxy.nodebug"
# And it needs valgrind-sigsuspend.c preloaded (see there).
cc -shared -fPIC -O2 -o "$OUT/valgrind-sigsuspend.so" "$BENCH/valgrind-sigsuspend.c"
port=$(free_port)
write_proxy_config "$OUT/floriday-proxy.yaml" "$port" warning "$upstream_port"
log "callgrind: starting floriday-proxy under valgrind on 127.0.0.1:$port"
"${PROXY_ENV[@]}" LD_PRELOAD="$OUT/valgrind-sigsuspend.so" valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
    --fair-sched=yes --instr-atstart=no \
    "$OUT/floriday-proxy.nodebug" run --config "$OUT/floriday-proxy.yaml" > "$OUT/callgrind-proxy.log" 2>&1 &
proxy=$!
PIDS+=("$proxy")
wait_port "$port" 120
curl -sf --max-time 60 -o /dev/null "http://127.0.0.1:$port$API_PATH" || die "first request through the proxy failed"
python3 "$BENCH/load_client.py" 127.0.0.1 "$port" $(( CONNECTIONS * 4 > 200 ? CONNECTIONS * 4 : 200 )) "$CONNECTIONS" "$API_PATH" >&2
# Steady state only: instrumentation starts after start-up and the warm-up requests (token
# fetched, the upstream connections for the clients open and TLS-handshaken), so the totals
# divide by the request count.
callgrind_control --instr=on "$proxy" > /dev/null 2>&1
log "callgrind: $GETS GET and $POSTS POST requests over $CONNECTIONS connections"
(( GETS == 0 )) || python3 "$BENCH/load_client.py" 127.0.0.1 "$port" "$GETS" "$CONNECTIONS" "$API_PATH" >&2
(( POSTS == 0 )) || python3 "$BENCH/load_client.py" 127.0.0.1 "$port" "$POSTS" "$CONNECTIONS" "$API_PATH" 4096 >&2
# SIGTERM: graceful stop; valgrind writes its output as the process exits (can take a while).
kill -TERM "$proxy"
for _ in $(seq 1200); do alive "$proxy" || break; sleep 0.1; done
alive "$proxy" && die "floriday-proxy under valgrind did not exit"
wait "$proxy" || true
forget "$proxy"
callgrind_annotate --inclusive=yes --threshold=98 "$OUT/callgrind.out" > "$OUT/tmp/inclusive.txt" 2>/dev/null
callgrind_annotate --inclusive=no --threshold=90 "$OUT/callgrind.out" > "$OUT/tmp/self.txt" 2>/dev/null
demangle < "$OUT/tmp/inclusive.txt" > "$OUT/callgrind-inclusive.txt"
demangle < "$OUT/tmp/self.txt" > "$OUT/callgrind-self.txt"
total=$(awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }' "$OUT/callgrind-self.txt")
echo "${total:-?} instructions for $GETS GET and $POSTS POST requests over $CONNECTIONS connections ($UPSTREAM upstream): $(( ${total:-0} / (GETS + POSTS) )) per request" > "$OUT/callgrind-summary.txt"
log "callgrind: $(cat "$OUT/callgrind-summary.txt")"
[[ ${CALLGRIND_ONLY:-0} == 1 ]] && exit 0

# --- 2. perf ---
if ! perf record -e cpu-clock -o "$OUT/tmp/probe.data" -- true >/dev/null 2>&1; then
    log "perf: not usable here (perf_event_paranoid or missing); skipped"
    exit 0
fi
require_tools wrk
port=$(free_port)
write_proxy_config "$OUT/floriday-proxy-perf.yaml" "$port" warning "$upstream_port"
"${PROXY_ENV[@]}" "$PROXY_BIN" run --config "$OUT/floriday-proxy-perf.yaml" > "$OUT/perf-proxy.log" 2>&1 &
proxy=$!
PIDS+=("$proxy")
wait_port "$port"
curl -sf -o /dev/null "http://127.0.0.1:$port$API_PATH" || die "first request through the proxy failed"

log "perf: sampling floriday-proxy for $PERF_SECONDS s under wrk (64 connections, GET)"
perf record -e cpu-clock -F 999 -g -p "$proxy" -o "$OUT/perf.data" -- sleep "$PERF_SECONDS" > "$OUT/tmp/perf-record.log" 2>&1 &
recorder=$!
PIDS+=("$recorder")
sleep 0.2
wrk -t 2 -c 64 -d "$(( PERF_SECONDS - 1 ))s" -s "$BENCH/wrk-report.lua" "http://127.0.0.1:$port$API_PATH" | grep '^RESULT' >&2
wait "$recorder" || true
forget "$recorder"
perf report -i "$OUT/perf.data" --no-children --sort dso,sym -g none --percent-limit 0.4 2>/dev/null | demangle > "$OUT/perf-self.txt"
perf report -i "$OUT/perf.data" --children --sort sym -g none --percent-limit 2 2>/dev/null | demangle > "$OUT/perf-children.txt"

# Context switches and CPU per request: floriday-proxy (all threads), then nginx (master + workers).
nginx_port=$(free_port)
write_nginx_proxy_config "$OUT/nginx-proxy.conf" nginx-proxy "$nginx_port" off
nginx -p "$OUT" -c "$OUT/nginx-proxy.conf" -g 'daemon off;' > "$OUT/nginx-proxy.stdout" 2>&1 &
nginx_master=$!
PIDS+=("$nginx_master")
wait_port "$nginx_port"
curl -sf -o /dev/null "http://127.0.0.1:$nginx_port$API_PATH" || die "first request through nginx failed"
: > "$OUT/perf-stat.txt"
for target in floriday-proxy nginx; do
    if [[ $target == floriday-proxy ]]; then
        pids=$proxy url="http://127.0.0.1:$port$API_PATH"
    else
        pids=$(nginx_pids "$nginx_master" | tr ' ' ','); url="http://127.0.0.1:$nginx_port$API_PATH"
    fi
    perf stat -e task-clock,context-switches,cpu-migrations -p "$pids" -o "$OUT/tmp/stat-$target.txt" -- sleep "$PERF_SECONDS" &
    recorder=$!
    PIDS+=("$recorder")
    sleep 0.2
    result=$(wrk -t 2 -c 64 -d "$(( PERF_SECONDS - 1 ))s" -s "$BENCH/wrk-report.lua" "$url" | grep '^RESULT')
    wait "$recorder" || true
    forget "$recorder"
    requests=$(sed 's/.*requests=\([0-9]*\).*/\1/' <<< "$result")
    awk -v t="$target" -v r="$requests" '
        /task-clock/ { cpu = $1 } /context-switches/ { cs = $1 } /cpu-migrations/ { mig = $1 }
        END {
            gsub(",", "", cpu); gsub(",", "", cs); gsub(",", "", mig)
            printf "%-15s requests %8d  CPU %6.1f us/request  context switches %5.2f/request  migrations %d\n", t, r, cpu * 1000 / r, cs / r, mig
        }' "$OUT/tmp/stat-$target.txt" >> "$OUT/perf-stat.txt"
done
cat "$OUT/perf-stat.txt" >&2

# --- 3. system calls per request (strace -c), GET, 8 keep-alive connections ---
if command -v strace >/dev/null; then
    : > "$OUT/syscalls.txt"
    for target in floriday-proxy nginx; do
        if [[ $target == floriday-proxy ]]; then
            trace=(-p "$proxy") url_port=$port
        else
            trace=()
            for pid in $(ps -o pid= --ppid "$nginx_master"); do trace+=(-p "$pid"); done
            url_port=$nginx_port
        fi
        strace -c -f "${trace[@]}" -o "$OUT/tmp/strace-$target.txt" 2>/dev/null &
        tracer=$!
        PIDS+=("$tracer")
        sleep 1
        python3 "$BENCH/load_client.py" 127.0.0.1 "$url_port" 3000 8 "$API_PATH" >&2
        sleep 0.5
        kill -INT "$tracer"
        wait "$tracer" || true
        forget "$tracer"
        {
            echo "== $target: system calls per GET request (3000 requests, 8 connections)"
            # strace -c rows: % time, seconds, usecs/call, calls, [errors,] syscall
            awk '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $4 / 3000 >= 0.01 {
                     errors = ($5 ~ /^[0-9]+$/) ? $5 : 0
                     printf "  %-16s %5.2f%s\n", $NF, $4 / 3000, errors ? sprintf("  (%.2f failed)", errors / 3000) : ""
                 }' "$OUT/tmp/strace-$target.txt"
        } >> "$OUT/syscalls.txt"
    done
    cat "$OUT/syscalls.txt" >&2
fi
log "written: bench/out/profile/"
