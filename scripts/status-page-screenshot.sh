#!/usr/bin/env bash
# Takes docs/status-page.png, the README's picture of the status page: the sandbox and the
# proxy on loopback, some traffic, a few refused requests and a token fetch the IDM refuses,
# then headless Chromium (Debian: apt-get install chromium) photographs GET / on the admin port.
#   bash scripts/status-page-screenshot.sh [OUTPUT.png]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/status-page.png}
bin=${FLORIDAY_PROXY_BIN:-$(swift build --show-bin-path)/floriday-proxy}
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "chromium not found: apt-get install chromium" >&2; exit 1; }
[ -x "$bin" ] || { echo "$bin not built: swift build" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sandbox_port=$(free_port); proxy_port=$(free_port); admin_port=$(free_port)
"$bin" sandbox --listen "127.0.0.1:$sandbox_port" --ca-out "$work/ca.pem" >"$work/sandbox.log" 2>&1 &
pids+=($!)
cat >"$work/proxy.yaml" <<EOF
listen: 127.0.0.1:$proxy_port
admin_listen: 127.0.0.1:$admin_port
environment: staging
api_url: https://localhost:$sandbox_port
issuer_url: https://localhost:$sandbox_port/oauth2/ausSandbox
ca_file: $work/ca.pem
client_id: sandbox-client
client_secret: sandbox-secret
api_key: sandbox-api-key
log: {level: warning}
EOF
wait_for() { for _ in $(seq 100); do curl -fsS -o /dev/null "$@" 2>/dev/null && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }
for _ in $(seq 100); do [ -s "$work/ca.pem" ] && break; sleep 0.1; done
wait_for "https://localhost:$sandbox_port/_sandbox/stats" --cacert "$work/ca.pem"
"$bin" run --config "$work/proxy.yaml" >"$work/proxy.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$admin_port/healthz"

api="http://127.0.0.1:$proxy_port"
control="https://localhost:$sandbox_port/_sandbox"
# A minute and a half of traffic, with a few refused requests among it.
for round in $(seq 150); do
  for _ in $(seq $((round % 7 + 3))); do curl -s -o /dev/null "$api/suppliers-api-2024v2/trade-items?limit=2"; done
  [ $((round % 23)) = 0 ] && curl -s -o /dev/null -X TRACE "$api/suppliers-api-2024v2/trade-items"
  # A few seconds in which the API itself answers 503.
  [ "$round" = 110 ] && curl -s -o /dev/null --cacert "$work/ca.pem" -X POST "$control/configure?apiFailure=503"
  [ "$round" = 113 ] && curl -s -o /dev/null --cacert "$work/ca.pem" -X POST "$control/configure?apiFailure=none"
  sleep 0.5
done
# The IDM starts refusing the client; the token is revoked; the next requests cannot get one.
curl -s -o /dev/null --cacert "$work/ca.pem" -X POST "$control/configure?idmFailure=invalid_client"
curl -s -o /dev/null --cacert "$work/ca.pem" -X POST "$control/revoke"
for _ in 1 2 3; do curl -s -o /dev/null "$api/suppliers-api-2024v2/sales-orders"; sleep 1; done
curl -s -o /dev/null "http://127.0.0.1:$admin_port/readyz"

mkdir -p "$(dirname "$out")"
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1100,1050 \
  --screenshot="$out" "http://127.0.0.1:$admin_port/" 2>/dev/null
echo "wrote $out"
