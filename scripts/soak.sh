#!/usr/bin/env bash
# Soak test: the release proxy in front of the sandbox under mixed load for SECONDS.
#
#   scripts/soak.sh [SECONDS]          default 300
#   scripts/soak.sh --churn [CYCLES]   connection churn instead (default 100,000 cycles;
#                                      scripts/churn_load.py says what a cycle is)
#
# Builds release, starts `floriday-proxy sandbox` and `floriday-proxy run` on free loopback
# ports, runs scripts/soak_load.py (keep-alive, fresh-connection, POST, aborting and slowloris
# clients, a token revocation every 20 s) while sampling the proxy's RSS and descriptors, then
# stops the proxy with SIGTERM. Exits non-zero when the load script finds a problem or the proxy
# does not stop cleanly. Loopback only; everything it starts is stopped on exit.
set -euo pipefail
churn_cycles=""
if [ "${1:-}" = "--churn" ]; then
    churn_cycles="${2:-100000}"
    set -- 300
fi
seconds="${1:-300}"
case "$seconds$churn_cycles" in ''|*[!0-9]*) echo "usage: $0 [SECONDS] | --churn [CYCLES]" >&2; exit 2 ;; esac

root="$(cd "$(dirname "$0")/.." && pwd)"
scratch="${SOAK_SCRATCH_PATH:-$root/.build}"
work="$(mktemp -d "${TMPDIR:-/tmp}/floriday-proxy-soak.XXXXXX")"
sandbox_pid=""
proxy_pid=""

cleanup() {
    local status=$?
    for pid in "$proxy_pid" "$sandbox_pid"; do
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    if [ "$status" -ne 0 ] && [ -f "$work/proxy.log" ]; then
        echo "--- last lines of the proxy's log ---" >&2
        tail -n 20 "$work/proxy.log" >&2 || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for_port() {
    local port=$1 what=$2
    for _ in $(seq 1 100); do
        if python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('127.0.0.1', $port)))" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "soak: $what did not start listening on 127.0.0.1:$port" >&2
    return 1
}

echo "soak: building release"
# As shipped (and as `make release` builds it).
swift build -c release --static-swift-stdlib --scratch-path "$scratch" --product floriday-proxy
binary="$(swift build -c release --static-swift-stdlib --scratch-path "$scratch" --show-bin-path)/floriday-proxy"

sandbox_port="$(free_port)"
proxy_port="$(free_port)"
admin_port="$(free_port)"
ca="$work/sandbox-ca.pem"

"$binary" sandbox --listen "127.0.0.1:$sandbox_port" --ca-out "$ca" >"$work/sandbox.log" 2>&1 &
sandbox_pid=$!
wait_for_port "$sandbox_port" sandbox
for _ in $(seq 1 50); do [ -s "$ca" ] && break; sleep 0.1; done

head_timeout=2
cat >"$work/proxy.yaml" <<EOF
listen: 127.0.0.1:$proxy_port
admin_listen: 127.0.0.1:$admin_port
api_url: https://127.0.0.1:$sandbox_port
issuer_url: https://127.0.0.1:$sandbox_port/oauth2/ausSandbox
ca_file: $ca
timeouts:
  request_head: ${head_timeout}s
  idle: 3s
shutdown_grace: 5s
# The load is far above Floriday's limits; shaping would only make it wait.
rate_limit: { enabled: false }
log:
  level: warning
EOF

FLORIDAY_CLIENT_ID=sandbox-client FLORIDAY_CLIENT_SECRET=sandbox-secret FLORIDAY_API_KEY=sandbox-api-key \
    "$binary" run --config "$work/proxy.yaml" >"$work/proxy.log" 2>&1 &
proxy_pid=$!
wait_for_port "$proxy_port" proxy

status=0
if [ -n "$churn_cycles" ]; then
    echo "soak: proxy pid $proxy_pid on 127.0.0.1:$proxy_port, sandbox on 127.0.0.1:$sandbox_port, $churn_cycles churn cycles"
    python3 "$root/scripts/churn_load.py" --proxy "127.0.0.1:$proxy_port" --pid "$proxy_pid" --cycles "$churn_cycles" || status=$?
else
    echo "soak: proxy pid $proxy_pid on 127.0.0.1:$proxy_port, sandbox on 127.0.0.1:$sandbox_port, ${seconds}s of load"
    python3 "$root/scripts/soak_load.py" --proxy "127.0.0.1:$proxy_port" --sandbox "127.0.0.1:$sandbox_port" \
        --ca "$ca" --pid "$proxy_pid" --seconds "$seconds" --head-timeout "$head_timeout" || status=$?
fi

# A clean stop: SIGTERM, exit 0 within the grace period.
kill -TERM "$proxy_pid"
stopped=""
for _ in $(seq 1 80); do
    if ! kill -0 "$proxy_pid" 2>/dev/null; then stopped=yes; break; fi
    sleep 0.1
done
if [ -z "$stopped" ]; then
    echo "soak: FAILED: the proxy did not exit within 8 s of SIGTERM" >&2
    status=1
else
    proxy_status=0
    wait "$proxy_pid" || proxy_status=$?
    proxy_pid=""
    if [ "$proxy_status" -ne 0 ]; then
        echo "soak: FAILED: the proxy exited with status $proxy_status after SIGTERM" >&2
        status=1
    fi
fi
crashes="$(grep -ciE 'fatal error|panic|sanitizer' "$work/proxy.log" || true)"
if [ "$crashes" != "0" ]; then
    echo "soak: FAILED: the proxy's log reports a crash" >&2
    status=1
fi
exit "$status"
