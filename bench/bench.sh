#!/usr/bin/env bash
# Benchmark: floriday-proxy against nginx doing the same job, on one machine, over loopback.
#
#   A  wrk ──HTTPS──▶ upstream                         (the upstream alone: the ceiling)
#   B  wrk ──HTTP──▶ nginx proxy ──HTTPS──▶ upstream    (nginx injecting a static token + API key)
#   C  wrk ──HTTP──▶ floriday-proxy ──HTTPS──▶ upstream (token from the sandbox IDM, cached)
#   E  wrk ──HTTP──▶ floriday-proxy ──HTTPS h2──▶ upstream (the same, the upstream offering h2)
#   F  wrk ──HTTP──▶ nghttpx ──HTTPS h2──▶ upstream     (nghttpx, the peer that can do the same)
#
# nginx cannot speak HTTP/2 to its upstream, so B and C use the upstream's http/1.1-only port
# and E and F its h2 port (same nginx server). The upstream connections column counts the
# measured proxy's established TCP connections to the upstream port during the run (the most
# seen, `ss -p` every second): with h2, floriday-proxy needs about one per event loop.
#
# The upstream is nginx over TLS answering a fixed 1 KiB JSON body to GET and the size of the
# body it read to POST (nginx-upstream.conf.in). The identity server is `floriday-proxy sandbox`.
# For every connection count (16, 64, 256) and method (GET, 4 KiB POST) the targets run back
# to back, ROUNDS times; the order of all targets rotates from round to round and step to step,
# so no target always runs first or last. Every run is a fresh proxy process, warmed up for
# WARMUP seconds at the run's own load (its upstream connections open and handshaken), then
# measured for DURATION seconds with wrk. Per run: requests/s, p50/p99 latency, the proxy's
# peak RSS and CPU seconds per 10k requests, and the CPU other processes used meanwhile; the
# report shows each row's median over the rounds and how far the rounds spread.
# Then the paired comparisons (C against B, E against C: both processes running, short runs in
# turn, the median of the per-pair ratios); E against C at 256 connections in fresh pairs, with
# the upstream's two workers and with one; access logging on (floriday-proxy at log level info,
# nginx with an access log); RSS at
# rest and with 5,000 idle keep-alive client connections; 200 requests whose clients hang up
# early, after which the proxy must still answer; and with LONG=1 a soak of 1,000,000
# requests against floriday-proxy with its RSS sampled every 2 s.
# The rate budget's cost: GET at 64 connections through floriday-proxy with shaping on and a
# limit far above the load, once with in-process buckets (C-mem) and once with the buckets in
# a local redis-server (C-redis: one Lua script per request), against C without shaping.
#
# About 25 minutes on 2 cores (a few more with LONG=1). Output: bench/results.md (also printed); raw numbers,
# configurations and logs in bench/out/. See bench/NOTES.md for the method and the findings.
#
# Environment:
#   PROXY_BIN         floriday-proxy binary (default: the build of `swift build -c release`)
#   DURATION          seconds per measured wrk run (default 6)
#   ROUNDS            runs per target and row, the median reported (default 3)
#   WARMUP            seconds of load before each measured run, not counted (default 1)
#   PAIRS, PAIR_DURATION  the paired comparisons at 64 connections (C against B, E against C,
#                     both processes running, runs taking turns): pairs per comparison (default
#                     8) and seconds per run (default 3)
#   FRESH_PAIRS       E against C at 256 connections, every run a fresh process (where E's
#                     upstream connections land on nginx's workers recorded), and the same
#                     against a one-worker upstream: pairs per comparison (default 8; 0: none)
#   CONNECTIONS       connection counts (default "16 64 256")
#   IDLE_CONNECTIONS  idle keep-alive connections for the memory check (default 5000)
#   THREADLOOP_BIN    floriday-proxy built with -DEVENTLOOP_THREAD_DRIVEN (the event-loop design
#                     that was measured and not shipped, see NOTES.md); when set (`make bench`
#                     does), it runs as target D in every step of the main table
#   H2=0              leave out E and F (default: E always, F when nghttpx is installed)
#   LONG=1            also run the soak, LONG_REQUESTS requests (default 1000000)
#   RATE_BUDGET_ONLY=1  only the rate-budget runs (C, C-mem, C-redis at 64 connections), reported
#                     in bench/out/results-rate-budget.md (bench/results.md stays)
#
# Every process this script starts is stopped on exit (trap), also on error or Ctrl-C.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BENCH="$ROOT/bench"
OUT="$BENCH/out"

DURATION=${DURATION:-6}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
CONNECTIONS=${CONNECTIONS:-"16 64 256"}
THREADS=2
POST_BYTES=4096
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-5000}
LONG=${LONG:-0}
LONG_REQUESTS=${LONG_REQUESTS:-1000000}
RATE_BUDGET_ONLY=${RATE_BUDGET_ONLY:-0}
API_PATH=/suppliers-api-2024v2/_sandbox/echo/trade-items
API_KEY=sandbox-api-key
CLK_TCK=$(getconf CLK_TCK)
LOG_PREFIX=bench

# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

# ---------------------------------------------------------------------------------------------
# Preparation

require_tools nginx wrk curl openssl python3 ps redis-server
find_proxy_bin
THREADLOOP_BIN=${THREADLOOP_BIN:-}
[[ -z $THREADLOOP_BIN || -x $THREADLOOP_BIN ]] || die "THREADLOOP_BIN=$THREADLOOP_BIN is not executable"
# perf (linux-perf) counts system calls and context switches per request; without it those
# columns stay empty.
H2=${H2:-1}
HAVE_NGHTTPX=0
if [[ $H2 == 1 ]] && command -v nghttpx >/dev/null; then HAVE_NGHTTPX=1; fi
[[ $H2 == 1 && $HAVE_NGHTTPX == 0 ]] && log "nghttpx is not installed (nghttp2-proxy, make bench-deps): no row F"
HAVE_PERF=0
if command -v perf >/dev/null && perf stat -e raw_syscalls:sys_enter,context-switches true >/dev/null 2>&1; then HAVE_PERF=1; fi

# 5,000 idle client connections (and their upstream side) need more than 1,024 descriptors.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(( $(ulimit -n) > IDLE_CONNECTIONS + 1000 )) || die "ulimit -n is $(ulimit -n): too low for $IDLE_CONNECTIONS connections"

# A fresh bench/out/ (profile.sh's results in bench/out/profile/ stay).
mkdir -p "$OUT"
find "$OUT" -mindepth 1 -maxdepth 1 ! -name profile -exec rm -rf {} +
mkdir -p "$OUT/tmp" "$OUT/wrk"
make_certificates
start_sandbox
if [[ $H2 == 1 ]]; then
    # The fresh-pairs comparison's second upstream: the same server with one worker process.
    start_upstream upstream-one-worker 1
    ONE_WORKER_PORT=$UPSTREAM_PORT
    ONE_WORKER_H2_PORT=$UPSTREAM_H2_PORT
fi
start_upstream
# The shared rate budget's Redis (C-redis): loopback, nothing persisted.
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$OUT/tmp" \
    --daemonize no --loglevel warning > "$OUT/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_port "$REDIS_PORT"

# --- the proxies under test: B (nginx) and C (floriday-proxy), and their logging variants ---
#
# Each measured run gets a fresh proxy process, primed with one checked GET and POST (so C has
# its token cached and both have an upstream connection open). So every row's peak RSS (VmHWM)
# and CPU are that run's own, and no run inherits damage from the one before: after every
# run the proxy is probed once more and the outcome goes into the report.

declare -A PID PORT

start_nginx_proxy() {   # target access_log
    local target=$1 access_log=$2 name=nginx-proxy
    [[ $access_log != off ]] && name=nginx-proxy-log
    PORT[$target]=$(free_port)
    write_nginx_proxy_config "$OUT/$name.conf" "$name" "${PORT[$target]}" "$access_log"
    nginx -p "$OUT" -c "$OUT/$name.conf" -g 'daemon off;' >> "$OUT/$name.stdout" 2>&1 &
    PID[$target]=$!
    PIDS+=("$!")
}

# Shaping on for the rate-budget runs: one bucket per key (scope: key) whose limit the load
# never reaches, so no request waits and only the cost of asking the buckets shows.
RATE_BUDGET_LIMIT="enabled: true, scope: key, rate: 10000000, burst: 10000000"

start_floriday_proxy() {   # target level [binary] [upstream port]
    local target=$1 level=$2 binary=${3:-$PROXY_BIN} upstream_port=${4:-$UPSTREAM_PORT} name=floriday-proxy rate_limit=""
    [[ $level != warning ]] && name=floriday-proxy-$level
    [[ $target == D ]] && name=floriday-proxy-threadloop
    [[ $target == E ]] && name=floriday-proxy-h2
    [[ $target == C1 ]] && name=floriday-proxy-one-worker-upstream
    [[ $target == E1 ]] && name=floriday-proxy-h2-one-worker-upstream
    [[ $target == C-mem ]] && { name=floriday-proxy-buckets-memory; rate_limit="{ $RATE_BUDGET_LIMIT, store: memory }"; }
    [[ $target == C-redis ]] && { name=floriday-proxy-buckets-redis; rate_limit="{ $RATE_BUDGET_LIMIT, store: \"redis://127.0.0.1:$REDIS_PORT/0\" }"; }
    PORT[$target]=$(free_port)
    write_proxy_config "$OUT/$name.yaml" "${PORT[$target]}" "$level" "$upstream_port" "${rate_limit:-}"
    "${PROXY_ENV[@]}" "$binary" run --config "$OUT/$name.yaml" >> "$OUT/$name.log" 2>&1 &
    PID[$target]=$!
    PIDS+=("$!")
}

# (Re)starts a proxy target as a fresh process and primes it.
fresh() {   # target
    local target=$1
    [[ -n ${PID[$target]:-} ]] && stop "${PID[$target]}"
    case $target in
        B) start_nginx_proxy B off ;;
        B-log) start_nginx_proxy B-log "$OUT/nginx-proxy-access.log" ;;
        C) start_floriday_proxy C warning ;;
        C-info) start_floriday_proxy C-info info ;;
        D) start_floriday_proxy D warning "$THREADLOOP_BIN" ;;
        E) start_floriday_proxy E warning "$PROXY_BIN" "$UPSTREAM_H2_PORT" ;;
        C1) start_floriday_proxy C1 warning "$PROXY_BIN" "$ONE_WORKER_PORT" ;;
        E1) start_floriday_proxy E1 warning "$PROXY_BIN" "$ONE_WORKER_H2_PORT" ;;
        F) PORT[F]=$(free_port)
           start_nghttpx "${PORT[F]}" nghttpx
           PID[F]=$!
           PIDS+=("$!") ;;
        C-mem | C-redis) start_floriday_proxy "$target" warning ;;
    esac
    wait_port "${PORT[$target]}"
    check_target "$target"
    sleep 0.5
}

# ---------------------------------------------------------------------------------------------
# Targets

# Sets URL, HEADERS (wrk -H arguments) and MEASURED (pids whose CPU and RSS are reported).
select_target() {
    local target=$1
    HEADERS=()
    MEASURED=()
    EXTRA_MEASURED=()
    case $target in
        A) URL="https://127.0.0.1:$UPSTREAM_PORT$API_PATH"
           HEADERS=(-H "Authorization: Bearer $TOKEN" -H "X-Api-Key: $API_KEY") ;;
        B | B-log) URL="http://127.0.0.1:${PORT[$target]}$API_PATH"
           read -r -a MEASURED <<< "$(nginx_pids "${PID[$target]}")" ;;
        C | C-info | D | E | C1 | E1 | C-mem | C-redis) URL="http://127.0.0.1:${PORT[$target]}$API_PATH"
           MEASURED=("${PID[$target]}")
           if [[ $target == C-redis ]]; then EXTRA_MEASURED=("$REDIS_PID"); fi ;;
        # nghttpx forks its worker process from the one started.
        F) URL="http://127.0.0.1:${PORT[$target]}$API_PATH"
           read -r -a MEASURED <<< "$(nginx_pids "${PID[$target]}")" ;;
        *) die "unknown target $target" ;;
    esac
}

# One request per method, checked: the upstream answers 401 unless the credentials were
# injected, so a 200 here also proves the header rewrite. For C the first one fetches the token.
check_target() {
    local target=$1 code body
    select_target "$target"
    body=$(curl -s -k --max-time 10 -o - -w '\n%{http_code}' "${HEADERS[@]}" "$URL")
    code=${body##*$'\n'}; body=${body%$'\n'*}
    [[ $code == 200 && ${#body} == 1024 ]] || die "$target GET: status $code, ${#body} bytes (logs: bench/out/)"
    body=$(head -c "$POST_BYTES" /dev/zero | tr '\0' x |
        curl -s -k --max-time 10 -o - -w '\n%{http_code}' "${HEADERS[@]}" -H 'Content-Type: application/json' --data-binary @- "$URL")
    code=${body##*$'\n'}; body=${body%$'\n'*}
    [[ $code == 200 && $body == *"\"bytes\":$POST_BYTES,"* ]] || die "$target POST: status $code, body $body"
}

# After a run: does the target still answer? Four GETs at once, each on its own connection
# (new connections are spread over floriday-proxy's event loops, whose upstream pools are
# separate), 3 s limit each; the worst status goes into health.tsv.
probe_after() {   # label target
    local label=$1 target=$2 codes worst=200 code
    select_target "$target"
    codes=$(for _ in 1 2 3 4; do
        curl -s -k --max-time 3 -o /dev/null -w '%{http_code}\n' "${HEADERS[@]}" "$URL" &
    done; wait)
    for code in $codes; do [[ $code != 200 ]] && worst=$code; done
    printf '%s\t%s\t%s\n' "$label" "$target" "$worst" >> "$HEALTH"
    [[ $worst == 200 ]] || log "$target no longer answers after $label (status $worst; 000 = nothing within 3 s)"
}

# ---------------------------------------------------------------------------------------------
# Measurement

RESULTS="$OUT/results.tsv"
MEMORY="$OUT/memory.tsv"
HEALTH="$OUT/health.tsv"
printf 'section\tconns\tmethod\ttarget\trequests\tseconds\trps\tp50_us\tp99_us\tmax_us\terrors\tnon2xx\thwm_kb\tcpu_s_per_10k\tother_cpu_pct\tsyscalls_per_req\tcs_per_req\tupstream_conns\tround\n' > "$RESULTS"
printf 'target\tstate\trss_kb\thwm_kb\n' > "$MEMORY"
printf 'run\ttarget\tstatus\n' > "$HEALTH"
COUNTS="$OUT/counts.tsv"
printf 'section\tconns\tmethod\ttarget\tsyscalls_per_req\tcs_per_req\n' > "$COUNTS"

# The upstream port a target's proxy connects to (none for A: wrk is the client there).
upstream_port_of() {   # target
    case $1 in
        A) echo "" ;;
        E | F) echo "$UPSTREAM_H2_PORT" ;;
        C1) echo "$ONE_WORKER_PORT" ;;
        E1) echo "$ONE_WORKER_H2_PORT" ;;
        *) echo "$UPSTREAM_PORT" ;;
    esac
}

# Established TCP connections from the given processes to 127.0.0.1:port, counted every second
# until killed; the most seen is in `file`. Only the measured processes' sockets count: the
# proxies of earlier rows keep their idle upstream connections until they are restarted.
count_upstream_connections() {   # port file pids...
    local port=$1 file=$2 most=0 n pattern
    shift 2
    pattern="pid=($(IFS='|'; echo "$*")),"
    trap 'echo "$most" > "$file"; exit 0' TERM
    while :; do
        n=$(ss -Htnp state established "( dport = :$port )" 2>/dev/null | grep -cE "$pattern" || true)
        (( n > most )) && most=$n
        echo "$most" > "$file"
        sleep 1 & wait $!
    done
}

# Runs wrk once against a target; appends a row to results.tsv unless section is "warmup".
# Sets LAST_REQUESTS and LAST_RPS.
run_wrk() {   # section target conns method seconds
    local section=$1 target=$2 conns=$3 method=$4 seconds=$5
    select_target "$target"
    local post=0 before=0 after=0 hwm=- cpu=- output
    [[ $method == POST ]] && post=$POST_BYTES
    python3 "$BENCH/cpu_others.py" snapshot $$ "$OUT/tmp/others.snapshot"
    local upstream_port counter_pid="" upstream_conns=-
    upstream_port=$(upstream_port_of "$target")
    if [[ -n $upstream_port ]] && command -v ss >/dev/null; then
        rm -f "$OUT/tmp/upstream-conns"
        count_upstream_connections "$upstream_port" "$OUT/tmp/upstream-conns" "${MEASURED[@]}" &
        counter_pid=$!
        PIDS+=("$counter_pid")
    fi
    local started_ns ended_ns
    started_ns=$(date +%s%N)
    (( ${#MEASURED[@]} )) && before=$(cpu_ticks "${MEASURED[@]}")
    # Processes whose CPU is reported beside the proxy's (Redis in the rate-budget runs).
    local extra_before=0
    (( ${#EXTRA_MEASURED[@]} )) && extra_before=$(cpu_ticks "${EXTRA_MEASURED[@]}")
    # System calls and context switches of the measured processes (all their threads), counted
    # by the kernel (perf's tracepoint and software counter) in the separate run of
    # `count_system_calls`: counting costs the counted process CPU, and more the more often its
    # threads sleep and wake, so it never runs during a run whose CPU is reported.
    local perf_out="$OUT/tmp/perf.$target.$$" perf_pid=""
    rm -f "$perf_out"
    if [[ ${COUNTING:-0} == 1 ]] && (( ${#MEASURED[@]} )) && [[ $HAVE_PERF == 1 ]]; then
        perf stat -x, -e raw_syscalls:sys_enter,context-switches -p "$(IFS=,; echo "${MEASURED[*]}")" \
            -o "$perf_out" -- sleep "$seconds" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    output=$(BENCH_POST_BYTES=$post timeout $(( seconds + 30 )) \
        wrk -t "$THREADS" -c "$conns" -d "${seconds}s" --timeout 5s -s "$BENCH/wrk-report.lua" "${HEADERS[@]}" "$URL")
    [[ -n $perf_pid ]] && { wait "$perf_pid" 2>/dev/null || true; }
    if [[ -n $counter_pid ]]; then
        stop "$counter_pid"
        upstream_conns=$(cat "$OUT/tmp/upstream-conns" 2>/dev/null || echo -)
    fi
    if (( ${#MEASURED[@]} )); then
        after=$(cpu_ticks "${MEASURED[@]}")
        hwm=$(status_kb VmHWM "${MEASURED[@]}")
    fi
    local extra_after=0
    (( ${#EXTRA_MEASURED[@]} )) && extra_after=$(cpu_ticks "${EXTRA_MEASURED[@]}")
    # CPU that processes outside the benchmark used meanwhile, in % of the machine.
    local others
    others=$(python3 "$BENCH/cpu_others.py" delta $$ "$OUT/tmp/others.snapshot")
    ended_ns=$(date +%s%N)
    others=$(awk -v t="$others" -v hz="$CLK_TCK" -v ns=$(( ended_ns - started_ns )) -v n="$(nproc)" \
        'BEGIN { printf "%.1f", t / hz / (ns / 1e9) / n * 100 }')
    printf '%s\n' "$output" > "$OUT/wrk/${section//\//-}-$target-$method-c$conns${ROUND:+-r$ROUND}.txt"
    local line kv requests=0 duration_us=1 p50_us=0 p99_us=0 max_us=0 errors=0 non2xx=0
    line=$(sed -n 's/^RESULT //p' <<< "$output")
    [[ -n $line ]] || die "wrk printed no result for $target $method c=$conns"
    for kv in $line; do
        case ${kv%%=*} in
            requests) requests=${kv#*=} ;; duration_us) duration_us=${kv#*=} ;;
            p50_us) p50_us=${kv#*=} ;; p99_us) p99_us=${kv#*=} ;; max_us) max_us=${kv#*=} ;;
            errors) errors=${kv#*=} ;; non2xx) non2xx=${kv#*=} ;;
        esac
    done
    LAST_REQUESTS=$requests
    LAST_RPS=$(awk -v r="$requests" -v d="$duration_us" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
    local syscalls=- switches=-
    if [[ -s $perf_out ]] && (( requests > 0 )); then
        # perf counts over `seconds`, wrk's requests over its own (equal) duration.
        syscalls=$(awk -F, -v r="$requests" '$3 == "raw_syscalls:sys_enter" { printf "%.2f", $1 / r }' "$perf_out")
        switches=$(awk -F, -v r="$requests" '$3 == "context-switches" { printf "%.3f", $1 / r }' "$perf_out")
        [[ -n $syscalls ]] || syscalls=-
        [[ -n $switches ]] || switches=-
    fi
    if (( ${#MEASURED[@]} )) && (( requests > 0 )); then
        cpu=$(awk -v t=$(( after - before )) -v hz="$CLK_TCK" -v r="$requests" 'BEGIN { printf "%.3f", t / hz / r * 10000 }')
    fi
    LAST_SYSCALLS=$syscalls
    LAST_SWITCHES=$switches
    if [[ $section != warmup && $section != counting ]] && (( ${#EXTRA_MEASURED[@]} )) && (( requests > 0 )); then
        printf '%s\t%s\t%s\n' "$section" "$target" \
            "$(awk -v t=$(( extra_after - extra_before )) -v hz="$CLK_TCK" -v r="$requests" 'BEGIN { printf "%.3f", t / hz / r * 10000 }')" \
            >> "$OUT/extra-cpu.tsv"
    fi
    if [[ $section != warmup && $section != counting ]]; then
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$section" "$conns" "$method" "$target" \
            "$requests" "$(awk -v d="$duration_us" 'BEGIN { printf "%.2f", d / 1e6 }')" "$LAST_RPS" \
            "$p50_us" "$p99_us" "$max_us" "$errors" "$non2xx" "$hwm" "$cpu" "$others" "$syscalls" "$switches" "$upstream_conns" "$ROUND" >> "$RESULTS"
    fi
    log "$(printf '%-7s %-6s %-4s c=%-3s %8s req/s  p50 %6s us  p99 %7s us  errors %s/%s  CPU/10k %s s  syscalls/req %s  cs/req %s  upstream conns %s  others %s%%' \
        "$section" "$target" "$method" "$conns" "$LAST_RPS" "$p50_us" "$p99_us" "$errors" "$non2xx" "$cpu" "$syscalls" "$switches" "$upstream_conns" "$others")"
}

# Load that is not measured: the same connections and method as the run that follows, so the
# run starts in the steady state (client and upstream connections open, TLS handshakes done).
warm_up() {   # target conns method
    local target=$1 conns=$2 method=$3 post=0
    (( WARMUP > 0 )) || return 0
    select_target "$target"
    [[ $method == POST ]] && post=$POST_BYTES
    BENCH_POST_BYTES=$post timeout $(( WARMUP + 30 )) \
        wrk -t "$THREADS" -c "$conns" -d "${WARMUP}s" --timeout 5s -s "$BENCH/wrk-report.lua" "${HEADERS[@]}" "$URL" > /dev/null
}

# System calls and context switches per request at the run's load, counted with perf in a
# run of their own (COUNT_DURATION seconds, after the measured one, on the same process): its
# requests/s, latency and CPU are not reported, only the two counts (counts.tsv).
COUNT_DURATION=${COUNT_DURATION:-3}
count_system_calls() {   # section target conns method
    local section=$1 target=$2 conns=$3 method=$4
    [[ $HAVE_PERF == 1 && $target != A ]] || return 0
    COUNTING=1 run_wrk "counting" "$target" "$conns" "$method" "$COUNT_DURATION"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$section" "$conns" "$method" "$target" "$LAST_SYSCALLS" "$LAST_SWITCHES" >> "$COUNTS"
}

# One measured run: a fresh proxy process (every target but A), warmed up, wrk, then the
# health probe. In the first round, the system-call count follows the measured run.
measure() {   # section target conns method seconds
    local section=$1 target=$2 conns=$3 method=$4 seconds=$5
    [[ $target != A ]] && fresh "$target"
    warm_up "$target" "$conns" "$method"
    run_wrk "$section" "$target" "$conns" "$method" "$seconds"
    (( ROUND == 1 )) && count_system_calls "$section" "$target" "$conns" "$method"
    [[ $target != A ]] && probe_after "$section $method c=$conns" "$target"
    return 0
}

record_memory() {   # target state pids...
    local target=$1 state=$2
    shift 2
    printf '%s\t%s\t%s\t%s\n' "$target" "$state" "$(status_kb VmRSS "$@")" "$(status_kb VmHWM "$@")" >> "$MEMORY"
}

check_target A
log "warm-up: the upstream, 3 s"
run_wrk warmup A 64 GET 3

step=0
C_GET64_RPS=0
ROUND=1
(( RATE_BUDGET_ONLY )) && CONNECTIONS=""
TARGET_LIST=(A B C)
[[ -n $THREADLOOP_BIN ]] && TARGET_LIST+=(D)
# The HTTP/2 upstream rows, in the same steps: floriday-proxy, and nghttpx when installed.
[[ $H2 == 1 ]] && TARGET_LIST+=(E)
[[ $HAVE_NGHTTPX == 1 ]] && TARGET_LIST+=(F)
for conns in $CONNECTIONS; do
    for method in GET POST; do
        for (( ROUND = 1; ROUND <= ROUNDS; ROUND++ )); do
            # Rotate the order so that no target always runs first (or last): a slow phase of
            # the host falls on a different target each round.
            order=()
            for (( i = 0; i < ${#TARGET_LIST[@]}; i++ )); do
                order+=("${TARGET_LIST[(i + step + ROUND - 1) % ${#TARGET_LIST[@]}]}")
            done
            for target in "${order[@]}"; do
                measure main "$target" "$conns" "$method" "$DURATION"
                if [[ $target == C && $method == GET && $conns == 64 ]]; then C_GET64_RPS=$LAST_RPS; fi
            done
        done
        step=$(( step + 1 ))
    done
done
ROUND=1
[[ -n ${PID[B]:-} ]] && stop "${PID[B]}"
[[ -n ${PID[D]:-} ]] && stop "${PID[D]}"
[[ -n ${PID[E]:-} ]] && stop "${PID[E]}"
[[ -n ${PID[F]:-} ]] && stop "${PID[F]}"

# --- the rate budget's cost: no shaping (C), in-process buckets (C-mem), buckets in Redis (C-redis) ---
log "rate budget: GET at 64 connections, C then C-mem then C-redis, twice"
for ROUND in 1 2; do
    for target in C C-mem C-redis; do
        measure rate-budget "$target" 64 GET "$DURATION"
        stop "${PID[$target]}"
        PID[$target]=""
    done
done
ROUND=1
if grep -q 'rate_limit.store.down' "$OUT/floriday-proxy-buckets-redis.log" 2>/dev/null; then
    die "C-redis fell back to local buckets during the run: $(grep -m1 'rate_limit.store.down' "$OUT/floriday-proxy-buckets-redis.log")"
fi

if (( RATE_BUDGET_ONLY )); then LONG=0; fi
if (( ! RATE_BUDGET_ONLY )); then
# --- paired comparisons at 64 connections: two processes side by side, short runs in turn ---
#
# The host's own speed drifts within seconds (one process, the same load, 2 s windows: CPU per
# request anywhere between 0.26 and 0.39 s per 10k), so two rows of the main table, measured a
# minute apart, can differ by more than the two programs do. Here both processes run at once,
# warmed up, and take turns: PAIRS pairs of PAIR_DURATION-second runs, the order alternating
# within the pair; each pair's ratio compares two runs seconds apart, and the report gives the
# median of the ratios.
PAIRS=${PAIRS:-8}
PAIR_DURATION=${PAIR_DURATION:-3}
paired() {   # method first second: the ratio reported is second/first
    local method=$1 first=$2 second=$3 target
    [[ $second == E && $H2 != 1 ]] && return 0
    log "paired: $method at 64 connections, $second against $first, $PAIRS pairs of ${PAIR_DURATION} s"
    fresh "$first"
    fresh "$second"
    warm_up "$first" 64 "$method"
    warm_up "$second" 64 "$method"
    for (( ROUND = 1; ROUND <= PAIRS; ROUND++ )); do
        local order=("$first" "$second")
        (( ROUND % 2 == 0 )) && order=("$second" "$first")
        for target in "${order[@]}"; do
            run_wrk "paired-$second/$first" "$target" 64 "$method" "$PAIR_DURATION"
        done
    done
    ROUND=1
    stop "${PID[$first]}"; PID[$first]=""
    stop "${PID[$second]}"; PID[$second]=""
}
for method in GET POST; do
    paired "$method" B C
    paired "$method" C E
done

# --- E against C at 256 connections: fresh pairs ---
#
# With h2 the proxy carries 256 clients' requests on four upstream connections (two per loop),
# and nginx serves each connection from one worker process: which of the two workers accepted
# each connection decides how the upstream's work is split, and so E's tail (bench/NOTES.md).
# A long-lived E is one draw of that lottery; here every run is a fresh pair of processes:
# FRESH_PAIRS pairs, C and E each started, warmed up and measured for PAIR_DURATION seconds in
# turn (order alternating), with where E's connections landed recorded. The same against a
# second upstream with one worker, where the placement cannot matter: what is left is the
# proxy's own difference between the two protocols.
FRESH_PAIRS=${FRESH_PAIRS:-8}
PLACEMENT="$OUT/placement.tsv"
printf 'section\tmethod\tround\ttarget\tplacement\n' > "$PLACEMENT"
fresh_pairs() {   # method first second: the ratio reported is second/first
    local method=$1 first=$2 second=$3 target
    log "fresh pairs: $method at 256 connections, $second against $first, $FRESH_PAIRS pairs of ${PAIR_DURATION} s"
    for (( ROUND = 1; ROUND <= FRESH_PAIRS; ROUND++ )); do
        local order=("$first" "$second")
        (( ROUND % 2 == 0 )) && order=("$second" "$first")
        for target in "${order[@]}"; do
            fresh "$target"
            warm_up "$target" 256 "$method"
            run_wrk "fresh-$second/$first" "$target" 256 "$method" "$PAIR_DURATION"
            printf '%s\t%s\t%s\t%s\t%s\n' "fresh-$second/$first" "$method" "$ROUND" "$target" \
                "$(upstream_placement "$(upstream_port_of "$target")" "${PID[$target]}")" >> "$PLACEMENT"
            probe_after "fresh pair $method c=256" "$target"
            stop "${PID[$target]}"; PID[$target]=""
        done
    done
    ROUND=1
}
if [[ $H2 == 1 ]] && (( FRESH_PAIRS > 0 )); then
    for method in GET POST; do fresh_pairs "$method" C E; done
    fresh_pairs POST C1 E1
fi

# --- access logging on: floriday-proxy at level info (stderr to a file), nginx with an access log ---
log "access logging on: GET at 64 connections"
measure logging B-log 64 GET "$DURATION"
measure logging C-info 64 GET "$DURATION"
stop "${PID[B-log]}"
stop "${PID[C-info]}"

# --- memory at rest and with idle keep-alive connections ---
idle_check() {   # target pids...
    local target=$1
    shift
    local pids=("$@") report="$OUT/idle-$target.txt" holder
    record_memory "$target" "at rest: fresh process, one GET and one POST served$([[ $target == C ]] && echo ', token cached')" "${pids[@]}"
    timeout 180 python3 "$BENCH/idle_conns.py" 127.0.0.1 "${PORT[$target]}" "$IDLE_CONNECTIONS" 4 "$API_PATH" > "$report" 2>&1 &
    holder=$!
    PIDS+=("$holder")
    for _ in $(seq 1200); do
        grep -q '^ready' "$report" 2>/dev/null && break
        alive "$holder" || break
        sleep 0.1
    done
    grep -q '^ready' "$report" || die "idle connections to $target failed: $(cat "$report")"
    sleep 1
    record_memory "$target" "holding $IDLE_CONNECTIONS idle keep-alive connections" "${pids[@]}"
    wait "$holder" || die "idle connection holder for $target failed: $(cat "$report")"
    forget "$holder"
    sleep 2
    record_memory "$target" "after they closed" "${pids[@]}"
    probe_after "idle connections" "$target"
}
log "memory: $IDLE_CONNECTIONS idle keep-alive connections to C, then to B"
for target in C B; do
    fresh "$target"
    sleep 2
    select_target "$target"
    idle_check "$target" "${MEASURED[@]}"
    stop "${PID[$target]}"
done

# --- client aborts: requests whose client disconnects before the response ---
ABORTS=200
log "client aborts: $ABORTS abandoned requests to C, then to B"
for target in C B; do
    fresh "$target"
    timeout 60 python3 "$BENCH/abort_clients.py" 127.0.0.1 "${PORT[$target]}" "$ABORTS" "$API_PATH" > "$OUT/aborts-$target.txt"
    sleep 1
    probe_after "$ABORTS client-aborted requests" "$target"
    stop "${PID[$target]}"
done

fi

# --- LONG=1: soak ---
# LONG_REQUESTS GET requests at 64 connections against one fresh process whose RSS is sampled
# every 2 s: wrk runs sized from the rate C reached in the main table, repeated until enough.
if [[ $LONG == 1 ]]; then
    (( C_GET64_RPS > 0 )) || C_GET64_RPS=5000
    log "soak: >= $LONG_REQUESTS GET requests against C at 64 connections, RSS every 2 s"
    fresh C
    soak_start=$(date +%s)
    sampler() {
        while alive "${PID[C]}"; do
            printf '%s\t%s\n' "$(( $(date +%s) - soak_start ))" "$(status_kb VmRSS "${PID[C]}")"
            sleep 2
        done
    }
    sampler > "$OUT/soak-samples.tsv" &
    SAMPLER_PID=$!
    PIDS+=("$SAMPLER_PID")
    soak_total=0
    soak_rate=$C_GET64_RPS
    while (( soak_total < LONG_REQUESTS )); do
        soak_seconds=$(( (LONG_REQUESTS - soak_total) * 11 / 10 / soak_rate + 5 ))
        (( soak_seconds > 600 )) && soak_seconds=600
        run_wrk soak C 64 GET "$soak_seconds"
        soak_total=$(( soak_total + LAST_REQUESTS ))
        (( LAST_RPS > 0 )) && soak_rate=$LAST_RPS
    done
    stop "$SAMPLER_PID"
    probe_after soak C
    stop "${PID[C]}"
fi

# ---------------------------------------------------------------------------------------------
# Report

{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "cores=$(nproc)"
    echo "cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "memory=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel=$(uname -sr)"
    echo "os=$(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "nginx=$(nginx -v 2>&1 | sed 's/^nginx version: //')"
    echo "nghttpx=$( (nghttpx --version 2>/dev/null || echo none) | head -1)"
    echo "wrk=$( (wrk -v 2>&1 || true) | head -1 | awk '{ print $1, $2 }')"
    echo "openssl=$(openssl version)"
    echo "swift=$(swift --version 2>/dev/null | head -1 || echo unknown)"
    echo "binary=$PROXY_BIN (built $(date -u -r "$PROXY_BIN" '+%Y-%m-%d %H:%M UTC'))"
    echo "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git status --porcelain -- Sources Package.swift Package.resolved 2>/dev/null | grep -q . && echo ' (with uncommitted changes to Sources/)')"
    echo "duration=$DURATION"
    echo "rounds=$ROUNDS"
    echo "pairs=${PAIRS:-0}"
    echo "pair_duration=${PAIR_DURATION:-0}"
    echo "fresh_pairs=${FRESH_PAIRS:-0}"
    echo "warmup=$WARMUP"
    echo "threads=$THREADS"
    echo "idle_connections=$IDLE_CONNECTIONS"
    echo "long=$LONG"
    echo "redis=$(redis-server --version | awk '{ print $3 }' | sed 's/^v=//')"
} > "$OUT/meta.env"

# A partial run (RATE_BUDGET_ONLY=1) does not replace the full results.
REPORT=$BENCH/results.md
(( RATE_BUDGET_ONLY )) && REPORT=$OUT/results-rate-budget.md
python3 "$BENCH/report.py" "$OUT" > "$REPORT"
cat "$REPORT"
log "written: ${REPORT#"$ROOT/"} (raw data in bench/out/)"
