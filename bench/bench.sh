#!/usr/bin/env bash
# Benchmark: floriday-proxy against nginx doing the same job, on one machine, over loopback.
#
#   A  wrk ──HTTPS──▶ upstream                       (the upstream alone: the ceiling)
#   B  wrk ──HTTP──▶ nginx proxy ──HTTPS──▶ upstream  (nginx injecting a static token + API key)
#   C  wrk ──HTTP──▶ floriday-proxy ──HTTPS──▶ upstream (token from the sandbox IDM, cached)
#
# The upstream is nginx over TLS answering a fixed 1 KiB JSON body to GET and the size of the
# body it read to POST (nginx-upstream.conf.in). The identity server is `floriday-proxy sandbox`.
# For every connection count (16, 64, 256) and method (GET, 4 KiB POST) the three targets run
# back to back (their order rotates from step to step), each for DURATION seconds with wrk.
# Then: access logging on (floriday-proxy at log level info, nginx with an access log), RSS with
# 5,000 idle keep-alive client connections, and with LONG=1 a soak of 1,000,000 requests
# against floriday-proxy with RSS sampled every 2 s.
#
# Output: bench/results.md (also printed); raw numbers, configurations and logs in bench/out/.
#
# Environment:
#   PROXY_BIN         floriday-proxy binary (default: the release build of `swift build -c release`)
#   DURATION          seconds per wrk run (default 10)
#   CONNECTIONS       connection counts (default "16 64 256")
#   IDLE_CONNECTIONS  idle keep-alive connections for the memory check (default 5000)
#   LONG=1            also run the soak; LONG_REQUESTS requests (default 1000000)
#
# Every process this script starts is stopped on exit (trap), also on error or Ctrl-C.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BENCH="$ROOT/bench"
OUT="$BENCH/out"

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-"16 64 256"}
THREADS=2
POST_BYTES=4096
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-5000}
LONG=${LONG:-0}
LONG_REQUESTS=${LONG_REQUESTS:-1000000}
API_PATH=/suppliers-api-2024v2/trade-items
API_KEY=sandbox-api-key
CLK_TCK=$(getconf CLK_TCK)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Processes: every background process is recorded in PIDS and stopped by cleanup().

PIDS=()

cleanup() {
    local status=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # Give them up to 5 s to exit (nginx masters stop their workers), then SIGKILL.
    for _ in $(seq 50); do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive == 0 ]] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Stops one process this script started and waits for it.
stop() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
    local port=$1
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    die "nothing listens on port $port"
}

# An nginx master and its workers.
nginx_pids() {
    local master=$1
    echo "$master" $(ps -o pid= --ppid "$master")
}

# utime + stime (clock ticks) summed over the given processes.
cpu_ticks() {
    local pid sum=0 line rest
    for pid in "$@"; do
        read -r line < "/proc/$pid/stat"
        rest=${line##*) }             # drop "pid (comm) ": the comm may contain spaces
        read -r -a f <<< "$rest"
        sum=$(( sum + f[11] + f[12] )) # fields 14 and 15 of stat(5)
    done
    echo "$sum"
}

# A /proc/PID/status field (kB) summed over the given processes: VmRSS now, VmHWM the peak.
status_kb() {
    local field=$1; shift
    local pid sum=0 value
    for pid in "$@"; do
        value=$(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$pid/status")
        sum=$(( sum + value ))
    done
    echo "$sum"
}

# ---------------------------------------------------------------------------------------------
# Preparation

for tool in nginx wrk curl openssl python3 ps; do
    command -v "$tool" >/dev/null || die "$tool is not installed (make bench-deps)"
done
[[ -f /usr/lib/nginx/modules/ngx_http_echo_module.so ]] ||
    die "nginx's echo module is missing (apt-get install libnginx-mod-http-echo; nginx-light pulls it in)"

if [[ -z ${PROXY_BIN:-} ]]; then
    PROXY_BIN="$(swift build -c release --show-bin-path)/floriday-proxy"
fi
[[ -x $PROXY_BIN ]] || die "no floriday-proxy binary at $PROXY_BIN (swift build -c release)"

# 5,000 idle client connections plus the upstream side need more than 1,024 descriptors.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(( $(ulimit -n) > IDLE_CONNECTIONS + 1000 )) || die "ulimit -n is $(ulimit -n): too low for $IDLE_CONNECTIONS connections"

rm -rf "$OUT"
mkdir -p "$OUT/tmp" "$OUT/wrk"

log "test CA and upstream certificate (P-256) in bench/out/"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$OUT/bench-ca.key" -out "$OUT/bench-ca.crt" -subj "/CN=floriday-proxy bench CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$OUT/upstream.key" -out "$OUT/upstream.csr" -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > "$OUT/upstream.ext"
openssl x509 -req -in "$OUT/upstream.csr" -CA "$OUT/bench-ca.crt" -CAkey "$OUT/bench-ca.key" -CAcreateserial \
    -days 2 -out "$OUT/upstream.crt" -extfile "$OUT/upstream.ext" 2>/dev/null

UPSTREAM_PORT=$(free_port)
SANDBOX_PORT=$(free_port)
B_PORT=$(free_port)
C_PORT=$(free_port)

# --- identity server: the sandbox (its API side is not used) ---
log "sandbox (IDM) on 127.0.0.1:$SANDBOX_PORT"
"$PROXY_BIN" sandbox --listen "127.0.0.1:$SANDBOX_PORT" --ca-out "$OUT/sandbox-ca.pem" \
    --token-lifetime 86400 > "$OUT/sandbox.log" 2>&1 &
PIDS+=($!)
wait_port "$SANDBOX_PORT"
for _ in $(seq 100); do [[ -s $OUT/sandbox-ca.pem ]] && break; sleep 0.05; done
# floriday-proxy's ca_file is one PEM file: both CAs, concatenated.
cat "$OUT/bench-ca.crt" "$OUT/sandbox-ca.pem" > "$OUT/ca-bundle.pem"

ISSUER="https://127.0.0.1:$SANDBOX_PORT/oauth2/ausSandbox"
# The token nginx (B) and wrk (A) send: a real one from the same IDM.
TOKEN=$(curl -sf --cacert "$OUT/sandbox-ca.pem" "$ISSUER/v1/token" \
    -d grant_type=client_credentials -d client_id=sandbox-client -d client_secret=sandbox-secret -d scope=role:app |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
[[ -n $TOKEN ]] || die "no token from the sandbox"

# --- upstream: nginx over TLS ---
GET_BODY=$(python3 -c 'p = "{\"tradeItemId\":\"bench-0001\",\"padding\":\""; s = "\"}"; print(p + "x" * (1024 - len(p) - len(s)) + s, end="")')
sed -e "s|@OUT@|$OUT|g" -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" -e "s|@GET_BODY@|$GET_BODY|" \
    "$BENCH/nginx-upstream.conf.in" > "$OUT/nginx-upstream.conf"
log "upstream nginx (TLS) on 127.0.0.1:$UPSTREAM_PORT"
nginx -p "$OUT" -c "$OUT/nginx-upstream.conf" -g 'daemon off;' > "$OUT/nginx-upstream.stdout" 2>&1 &
PIDS+=($!)
wait_port "$UPSTREAM_PORT"

# --- B: nginx as the proxy ---
start_nginx_proxy() {   # name port access_log; sets STARTED_PID (the master)
    local name=$1 port=$2 access_log=$3
    sed -e "s|@OUT@|$OUT|g" -e "s|@NAME@|$name|g" -e "s|@PORT@|$port|g" -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" \
        -e "s|@TOKEN@|$TOKEN|g" -e "s|@ACCESS_LOG@|$access_log|g" \
        "$BENCH/nginx-proxy.conf.in" > "$OUT/$name.conf"
    nginx -p "$OUT" -c "$OUT/$name.conf" -g 'daemon off;' > "$OUT/$name.stdout" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}
log "B: nginx proxy on 127.0.0.1:$B_PORT"
start_nginx_proxy nginx-proxy "$B_PORT" off
B_PID=$STARTED_PID
wait_port "$B_PORT"

# --- C: floriday-proxy ---
start_floriday_proxy() {   # name port level; sets STARTED_PID
    local name=$1 port=$2 level=$3
    cat > "$OUT/$name.yaml" <<EOF
# floriday-proxy for the benchmark (generated by bench.sh).
listen: 127.0.0.1:$port
admin_listen: "off"
api_url: https://127.0.0.1:$UPSTREAM_PORT
issuer_url: $ISSUER
ca_file: $OUT/ca-bundle.pem
shutdown_grace: 1s
limits:
  # Room for the idle-connection check ($IDLE_CONNECTIONS) plus wrk's connections.
  max_connections: 16384
  # The default: 64 connections to the API, 32 per event loop.
  max_upstream_connections: 64
log:
  level: $level
EOF
    FLORIDAY_CLIENT_ID=sandbox-client FLORIDAY_CLIENT_SECRET=sandbox-secret FLORIDAY_API_KEY=$API_KEY \
        "$PROXY_BIN" run --config "$OUT/$name.yaml" > "$OUT/$name.log" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}
log "C: floriday-proxy on 127.0.0.1:$C_PORT ($PROXY_BIN)"
start_floriday_proxy floriday-proxy "$C_PORT" warning
C_PID=$STARTED_PID
wait_port "$C_PORT"

# ---------------------------------------------------------------------------------------------
# Targets

A_URL="https://127.0.0.1:$UPSTREAM_PORT$API_PATH"
B_URL="http://127.0.0.1:$B_PORT$API_PATH"
C_URL="http://127.0.0.1:$C_PORT$API_PATH"

# Sets URL, HEADERS (wrk -H arguments) and MEASURED (pids whose CPU and RSS are reported).
select_target() {
    HEADERS=()
    MEASURED=()
    case $1 in
        A) URL=$A_URL; HEADERS=(-H "Authorization: Bearer $TOKEN" -H "X-Api-Key: $API_KEY") ;;
        B) URL=$B_URL; read -r -a MEASURED <<< "$(nginx_pids "$B_PID")" ;;
        C) URL=$C_URL; MEASURED=("$C_PID") ;;
        B-log) URL="http://127.0.0.1:$BLOG_PORT$API_PATH"; read -r -a MEASURED <<< "$(nginx_pids "$BLOG_PID")" ;;
        C-info) URL="http://127.0.0.1:$CINFO_PORT$API_PATH"; MEASURED=("$CINFO_PID") ;;
        *) die "unknown target $1" ;;
    esac
}

# One request per target and method, checked: the upstream answers 401 unless the credentials
# were injected, so a 200 here also proves the header rewrite. This first request through C
# makes it fetch and cache its token.
check_target() {
    local target=$1 code body
    select_target "$target"
    body=$(curl -s -k -o - -w '\n%{http_code}' "${HEADERS[@]}" "$URL")
    code=${body##*$'\n'}; body=${body%$'\n'*}
    [[ $code == 200 && ${#body} == 1024 ]] || die "$target GET: status $code, ${#body} bytes (log: bench/out/)"
    body=$(head -c "$POST_BYTES" /dev/zero | tr '\0' x |
        curl -s -k -o - -w '\n%{http_code}' "${HEADERS[@]}" -H 'Content-Type: application/json' --data-binary @- "$URL")
    code=${body##*$'\n'}; body=${body%$'\n'*}
    [[ $code == 200 && $body == *"\"bytes\":$POST_BYTES,"* ]] || die "$target POST: status $code, body $body"
}

# ---------------------------------------------------------------------------------------------
# Measurement

RESULTS="$OUT/results.tsv"
MEMORY="$OUT/memory.tsv"
printf 'section\tconns\tmethod\ttarget\trequests\tseconds\trps\tp50_us\tp99_us\tmax_us\terrors\tnon2xx\thwm_kb\tcpu_s_per_10k\n' > "$RESULTS"
printf 'target\tstate\trss_kb\thwm_kb\n' > "$MEMORY"

# Runs wrk once against a target; appends a row to results.tsv unless section is "warmup".
# Sets LAST_REQUESTS and LAST_RPS.
run_wrk() {   # section target conns method seconds
    local section=$1 target=$2 conns=$3 method=$4 seconds=$5
    select_target "$target"
    local post=0
    [[ $method == POST ]] && post=$POST_BYTES
    local before=0 output
    (( ${#MEASURED[@]} )) && before=$(cpu_ticks "${MEASURED[@]}")
    output=$(BENCH_POST_BYTES=$post timeout $(( seconds + 30 )) \
        wrk -t "$THREADS" -c "$conns" -d "${seconds}s" --timeout 5s -s "$BENCH/wrk-report.lua" "${HEADERS[@]}" "$URL")
    local after=0 hwm=-
    if (( ${#MEASURED[@]} )); then
        after=$(cpu_ticks "${MEASURED[@]}")
        hwm=$(status_kb VmHWM "${MEASURED[@]}")
    fi
    printf '%s\n' "$output" > "$OUT/wrk/$section-$target-$method-c$conns.txt"
    local line requests=0 duration_us=1 p50_us=0 p99_us=0 max_us=0 errors=0 non2xx=0 kv
    line=$(sed -n 's/^RESULT //p' <<< "$output")
    [[ -n $line ]] || die "wrk printed no result for $target $method c$conns"
    for kv in $line; do
        case ${kv%%=*} in
            requests) requests=${kv#*=} ;; duration_us) duration_us=${kv#*=} ;;
            p50_us) p50_us=${kv#*=} ;; p99_us) p99_us=${kv#*=} ;; max_us) max_us=${kv#*=} ;;
            errors) errors=${kv#*=} ;; non2xx) non2xx=${kv#*=} ;;
        esac
    done
    LAST_REQUESTS=$requests
    LAST_RPS=$(awk -v r="$requests" -v d="$duration_us" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
    local cpu=-
    if (( ${#MEASURED[@]} )) && (( requests > 0 )); then
        cpu=$(awk -v t=$(( after - before )) -v hz="$CLK_TCK" -v r="$requests" 'BEGIN { printf "%.3f", t / hz / r * 10000 }')
    fi
    if [[ $section != warmup ]]; then
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$section" "$conns" "$method" "$target" \
            "$requests" "$(awk -v d="$duration_us" 'BEGIN { printf "%.2f", d / 1e6 }')" "$LAST_RPS" \
            "$p50_us" "$p99_us" "$max_us" "$errors" "$non2xx" "$hwm" "$cpu" >> "$RESULTS"
    fi
    log "$(printf '%-7s %-6s %-4s c=%-3s %8s req/s  p50 %6s us  p99 %7s us  errors %s/%s' \
        "$section" "$target" "$method" "$conns" "$LAST_RPS" "$p50_us" "$p99_us" "$errors" "$non2xx")"
}

record_memory() {   # target state pids...
    local target=$1 state=$2; shift 2
    printf '%s\t%s\t%s\t%s\n' "$target" "$state" "$(status_kb VmRSS "$@")" "$(status_kb VmHWM "$@")" >> "$MEMORY"
}

for target in A B C; do check_target "$target"; done
sleep 2
record_memory C "at rest, token cached (fresh process, one request served)" "$C_PID"
read -r -a b_pids <<< "$(nginx_pids "$B_PID")"
record_memory B "at rest (fresh process, one request served)" "${b_pids[@]}"

log "warm-up: 3 s per target"
for target in A B C; do run_wrk warmup "$target" 64 GET 3; done

step=0
for conns in $CONNECTIONS; do
    for method in GET POST; do
        # Rotate the order so that no target always runs first (or last) in a step.
        case $(( step % 3 )) in
            0) order="A B C" ;; 1) order="B C A" ;; 2) order="C A B" ;;
        esac
        for target in $order; do run_wrk main "$target" "$conns" "$method" "$DURATION"; done
        step=$(( step + 1 ))
    done
done
record_memory C "at rest after the load steps" "$C_PID"

# --- access logging on: floriday-proxy at level info (stderr to a file), nginx with an access log ---
CINFO_PORT=$(free_port)
BLOG_PORT=$(free_port)
start_floriday_proxy floriday-proxy-info "$CINFO_PORT" info
CINFO_PID=$STARTED_PID
start_nginx_proxy nginx-proxy-log "$BLOG_PORT" "$OUT/nginx-proxy-access.log"
BLOG_PID=$STARTED_PID
wait_port "$CINFO_PORT"
wait_port "$BLOG_PORT"
check_target C-info
check_target B-log
run_wrk warmup C-info 64 GET 2
run_wrk warmup B-log 64 GET 2
run_wrk logging B-log 64 GET "$DURATION"
run_wrk logging C-info 64 GET "$DURATION"
stop "$CINFO_PID"
stop "$BLOG_PID"

# --- idle keep-alive connections ---
idle_check() {   # target port pids...
    local target=$1 port=$2; shift 2
    local pids=("$@") report="$OUT/idle-$target.txt"
    record_memory "$target" "before $IDLE_CONNECTIONS idle connections" "${pids[@]}"
    timeout 180 python3 "$BENCH/idle_conns.py" 127.0.0.1 "$port" "$IDLE_CONNECTIONS" 6 "$API_PATH" > "$report" 2>&1 &
    local holder=$!
    PIDS+=("$holder")
    for _ in $(seq 1200); do
        grep -q '^ready' "$report" 2>/dev/null && break
        kill -0 "$holder" 2>/dev/null || break
        sleep 0.1
    done
    grep -q '^ready' "$report" || die "idle connections to $target failed: $(cat "$report")"
    sleep 2
    record_memory "$target" "holding $IDLE_CONNECTIONS idle keep-alive connections" "${pids[@]}"
    wait "$holder" || die "idle connection holder for $target failed: $(cat "$report")"
    sleep 3
    record_memory "$target" "after they closed" "${pids[@]}"
}
log "memory: $IDLE_CONNECTIONS idle keep-alive connections to C, then to B"
idle_check C "$C_PORT" "$C_PID"
read -r -a b_pids <<< "$(nginx_pids "$B_PID")"
idle_check B "$B_PORT" "${b_pids[@]}"

# --- LONG=1: soak ---
SOAK="$OUT/soak-rss.tsv"
if [[ $LONG == 1 ]]; then
    log "soak: $LONG_REQUESTS GET requests against C at 64 connections, RSS every 2 s"
    printf 'seconds\trequests_done\trss_kb\n' > "$SOAK"
    soak_total=0
    soak_start=$(date +%s)
    sampler() {
        while kill -0 "$C_PID" 2>/dev/null; do
            printf '%s\t%s\n' "$(( $(date +%s) - soak_start ))" "$(status_kb VmRSS "$C_PID")" >> "$OUT/soak-samples.tsv"
            sleep 2
        done
    }
    : > "$OUT/soak-samples.tsv"
    sampler &
    SAMPLER_PID=$!
    PIDS+=("$SAMPLER_PID")
    while (( soak_total < LONG_REQUESTS )); do
        run_wrk soak C 64 GET 15
        soak_total=$(( soak_total + LAST_REQUESTS ))
        printf '%s\t%s\t%s\n' "$(( $(date +%s) - soak_start ))" "$soak_total" "$(status_kb VmRSS "$C_PID")" >> "$SOAK"
    done
    stop "$SAMPLER_PID"
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
    echo "wrk=$( (wrk -v 2>&1 || true) | head -1 | awk '{ print $1, $2 }')"
    echo "openssl=$(openssl version)"
    echo "swift=$(swift --version 2>/dev/null | head -1 || echo unknown)"
    echo "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git status --porcelain 2>/dev/null | grep -q . && echo ' (with uncommitted changes)')"
    echo "duration=$DURATION"
    echo "threads=$THREADS"
    echo "idle_connections=$IDLE_CONNECTIONS"
    echo "long=$LONG"
} > "$OUT/meta.env"

python3 "$BENCH/report.py" "$OUT" > "$BENCH/results.md"
cat "$BENCH/results.md"
log "written: bench/results.md (raw data in bench/out/)"
