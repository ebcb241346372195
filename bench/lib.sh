# Shared by bench.sh and profile.sh: process bookkeeping, /proc readers, and the set-up of
# the test CA, the sandbox (IDM), the upstream nginx and floriday-proxy configurations.
# The caller sets BENCH, OUT, API_KEY and LOG_PREFIX (the tag of log lines) before sourcing it.

log() { printf '[%s %s] %s\n' "$LOG_PREFIX" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Processes: every background process is recorded in PIDS and stopped by cleanup().

PIDS=()

# True while the process runs (an exited child that was not waited for yet is a zombie: not alive).
alive() {
    local line
    read -r line 2>/dev/null < "/proc/$1/stat" || return 1
    line=${line##*) }
    [[ ${line:0:1} != Z ]]
}

cleanup() {
    local status=$? pid running
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # Up to 5 s to exit (nginx masters stop their workers), then SIGKILL.
    for _ in $(seq 50); do
        running=0
        for pid in "${PIDS[@]}"; do alive "$pid" && running=1; done
        [[ $running == 0 ]] && break
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

# Stops one process this script started, waits for it and forgets it.
stop() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget "$pid"
}

# Drops a pid that has already exited (and been waited for) from PIDS.
forget() {
    local pid=$1 p kept=()
    for p in "${PIDS[@]}"; do [[ $p != "$pid" ]] && kept+=("$p"); done
    PIDS=("${kept[@]}")
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {   # port [seconds, default 10]
    local port=$1 tries=$(( ${2:-10} * 20 ))
    for _ in $(seq "$tries"); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    die "nothing listens on port $port"
}

# An nginx (or nghttpx) master and its workers.
nginx_pids() {
    local master=$1
    echo "$master" $(ps -o pid= --ppid "$master")
}

# utime + stime (clock ticks) summed over the given processes.
cpu_ticks() {
    local pid sum=0 line rest f
    for pid in "$@"; do
        read -r line < "/proc/$pid/stat"
        rest=${line##*) }               # drop "pid (comm) ": the comm may contain spaces
        read -r -a f <<< "$rest"
        sum=$(( sum + f[11] + f[12] ))  # fields 14 and 15 of proc(5)'s stat
    done
    echo "$sum"
}

# A /proc/PID/status field (kB) summed over the given processes: VmRSS now, VmHWM the peak.
status_kb() {
    local field=$1 pid sum=0 value
    shift
    for pid in "$@"; do
        value=$(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$pid/status")
        sum=$(( sum + value ))
    done
    echo "$sum"
}

# ---------------------------------------------------------------------------------------------
# Set-up

require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool is not installed (make bench-deps)"
    done
}

# PROXY_BIN, or the release build's binary.
find_proxy_bin() {
    if [[ -z ${PROXY_BIN:-} ]]; then
        PROXY_BIN="$(swift build -c release --show-bin-path)/floriday-proxy"
    fi
    [[ -x $PROXY_BIN ]] || die "no floriday-proxy binary at $PROXY_BIN (swift build -c release)"
}

# Test CA (bench-ca.crt) and the upstream's certificate for localhost and 127.0.0.1, P-256.
make_certificates() {
    log "test CA and upstream certificate (P-256) in bench/out/"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -keyout "$OUT/bench-ca.key" -out "$OUT/bench-ca.crt" -subj "/CN=floriday-proxy bench CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$OUT/upstream.key" -out "$OUT/upstream.csr" -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > "$OUT/upstream.ext"
    openssl x509 -req -in "$OUT/upstream.csr" -CA "$OUT/bench-ca.crt" -CAkey "$OUT/bench-ca.key" -CAcreateserial \
        -days 2 -out "$OUT/upstream.crt" -extfile "$OUT/upstream.ext" 2>/dev/null
}

# The identity server: `floriday-proxy sandbox` (its API side is not used). Sets SANDBOX_PORT,
# ISSUER and TOKEN (a real token from it, for nginx and for direct requests), and writes
# ca-bundle.pem: the test CA and the sandbox's CA in one PEM file (floriday-proxy's ca_file).
start_sandbox() {
    SANDBOX_PORT=$(free_port)
    log "sandbox (IDM) on 127.0.0.1:$SANDBOX_PORT"
    "$PROXY_BIN" sandbox --listen "127.0.0.1:$SANDBOX_PORT" --ca-out "$OUT/sandbox-ca.pem" \
        --token-lifetime 86400 > "$OUT/sandbox.log" 2>&1 &
    PIDS+=("$!")
    wait_port "$SANDBOX_PORT"
    for _ in $(seq 100); do [[ -s $OUT/sandbox-ca.pem ]] && break; sleep 0.05; done
    cat "$OUT/bench-ca.crt" "$OUT/sandbox-ca.pem" > "$OUT/ca-bundle.pem"
    ISSUER="https://127.0.0.1:$SANDBOX_PORT/oauth2/ausSandbox"
    TOKEN=$(curl -sf --cacert "$OUT/sandbox-ca.pem" "$ISSUER/v1/token" \
        -d grant_type=client_credentials -d client_id=sandbox-client -d client_secret=sandbox-secret -d scope=role:app |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
    [[ -n $TOKEN ]] || die "no token from the sandbox"
}

# The upstream: nginx over TLS (nginx-upstream.conf.in), one worker per core unless told.
# Sets UPSTREAM_PORT (ALPN http/1.1 only) and UPSTREAM_H2_PORT (ALPN h2 and http/1.1), the same
# server on two ports; `name` keeps a second instance's files apart.
start_upstream() {   # [name] [workers]: sets UPSTREAM_PORT and UPSTREAM_H2_PORT
    local name=${1:-upstream} workers=${2:-$(nproc)}
    [[ -f /usr/lib/nginx/modules/ngx_http_echo_module.so ]] ||
        die "nginx's echo module is missing (apt-get install libnginx-mod-http-echo; nginx-light pulls it in)"
    UPSTREAM_PORT=$(free_port)
    UPSTREAM_H2_PORT=$(free_port)
    local body
    body=$(python3 -c 'p = "{\"tradeItemId\":\"bench-0001\",\"padding\":\""; s = "\"}"; print(p + "x" * (1024 - len(p) - len(s)) + s, end="")')
    sed -e "s|@OUT@|$OUT|g" -e "s|@NAME@|$name|g" -e "s|@WORKERS@|$workers|g" -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" \
        -e "s|@UPSTREAM_H2_PORT@|$UPSTREAM_H2_PORT|g" -e "s|@GET_BODY@|$body|" \
        "$BENCH/nginx-upstream.conf.in" > "$OUT/nginx-$name.conf"
    log "$name nginx (TLS, $workers worker(s)) on 127.0.0.1:$UPSTREAM_PORT (http/1.1) and 127.0.0.1:$UPSTREAM_H2_PORT (h2)"
    nginx -p "$OUT" -c "$OUT/nginx-$name.conf" -g 'daemon off;' > "$OUT/nginx-$name.stdout" 2>&1 &
    PIDS+=("$!")
    wait_port "$UPSTREAM_PORT"
    wait_port "$UPSTREAM_H2_PORT"
}

# How one process's established connections to 127.0.0.1:port fall on the worker processes of
# the server there: the number per worker, largest first ("3+1"); "-" when it has none.
upstream_placement() {   # port pid
    local port=$1 pid=$2 local_ports
    local_ports=$(ss -Htnp state established "( dport = :$port )" 2>/dev/null |
        awk -v p="pid=$pid," 'index($0, p) { n = split($3, a, ":"); printf " %s", a[n] }')
    if [[ -z $local_ports ]]; then echo "-"; return; fi
    # The server's side of each of those connections names the worker that holds it.
    ss -Htnp state established "( sport = :$port )" 2>/dev/null |
        awk -v ports="$local_ports " '{ n = split($4, a, ":"); if (index(ports, " " a[n] " ") && match($0, /pid=[0-9]+/)) print substr($0, RSTART + 4, RLENGTH - 4) }' |
        sort | uniq -c | awk '{ print $1 }' | sort -rn | paste -sd+
}

# Writes a floriday-proxy configuration for the upstream and the sandbox.
write_proxy_config() {   # file port level [upstream port, default UPSTREAM_PORT] [rate_limit]
    local file=$1 port=$2 level=$3 upstream_port=${4:-$UPSTREAM_PORT} rate_limit=${5:-"{ enabled: false }"}
    cat > "$file" <<EOF
# floriday-proxy for the benchmark (generated by bench/lib.sh).
listen: 127.0.0.1:$port
admin_listen: "off"
api_url: https://127.0.0.1:$upstream_port
issuer_url: $ISSUER
# One PEM file: the bench CA (upstream) and the sandbox CA (IDM), concatenated.
ca_file: $OUT/ca-bundle.pem
shutdown_grace: 1s
limits:
  # Room for the idle-connection check plus the load generator's connections.
  max_connections: 16384
  # The default: 64 connections to the API (32 per event loop on 2 cores).
  max_upstream_connections: 64
# The benchmark measures the proxy, not Floriday's rate limits (except the rate-budget runs).
rate_limit: $rate_limit
log:
  level: $level
EOF
}

# nghttpx (nghttp2-proxy) as the proxy with an HTTP/2 TLS backend: HTTP/1.1 from the clients,
# the static token and API key added, h2 over TLS to UPSTREAM_H2_PORT, certificate checked
# against the bench CA. One process, one worker thread per core. Sets $! to its pid.
start_nghttpx() {   # port name
    local port=$1 name=$2
    nghttpx --frontend="127.0.0.1,$port;no-tls" \
        --backend="127.0.0.1,$UPSTREAM_H2_PORT;;proto=h2;tls;sni=localhost" \
        --cacert="$OUT/bench-ca.crt" --workers="$(nproc)" --no-ocsp --no-via \
        --add-request-header="authorization: Bearer $TOKEN" --add-request-header="x-api-key: $API_KEY" \
        --backend-keep-alive-timeout=75s \
        --errorlog-file="$OUT/$name-error.log" --pid-file="$OUT/$name.pid" > "$OUT/$name.stdout" 2>&1 &
}

# Writes the configuration of nginx as the proxy (nginx-proxy.conf.in).
write_nginx_proxy_config() {   # file name port access_log
    local file=$1 name=$2 port=$3 access_log=$4
    sed -e "s|@OUT@|$OUT|g" -e "s|@WORKERS@|$(nproc)|g" -e "s|@NAME@|$name|g" -e "s|@PORT@|$port|g" \
        -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" -e "s|@TOKEN@|$TOKEN|g" -e "s|@ACCESS_LOG@|$access_log|g" \
        "$BENCH/nginx-proxy.conf.in" > "$file"
}

# Prefix for starting floriday-proxy with the sandbox's credentials: `"${PROXY_ENV[@]}" "$PROXY_BIN" run ...`
# (env execs the program, so $! is the proxy's own pid).
PROXY_ENV=(env FLORIDAY_CLIENT_ID=sandbox-client FLORIDAY_CLIENT_SECRET=sandbox-secret FLORIDAY_API_KEY="$API_KEY")
