#!/usr/bin/env bash
# Clients generated from Floriday's descriptions by generators that are not this project's
# call every GET operation through the demo's proxy (sandbox behind it) and deserialise every
# answer with their own models, then run a sync loop to its end:
#   - floriday-supplier-client, the published Python client of the suppliers API (swagger-codegen);
#   - Python clients that openapi-generator (from PyPI, run on a JRE) generates from the bundled
#     suppliers and customers descriptions (pydantic models: strict types, formats, bounds).
# Needs python3-venv and a JRE (TEST_PACKAGES in the Makefile); PyPI for the packages below.
# Usage: scripts/generated-client-check.sh   (FLORIDAY_PROXY_BIN: the binary; default: the debug build)
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${FLORIDAY_PROXY_BIN:-$(swift build --show-bin-path)/floriday-proxy}
WORK=.build/generated-client-check
SPECS=Sources/Sandbox/Resources/floriday-api
mkdir -p "$WORK"

if [ ! -x "$WORK/venv/bin/python" ]; then
  python3 -m venv "$WORK/venv"
fi
"$WORK/venv/bin/pip" install -q --disable-pip-version-check \
  floriday-supplier-client==0.4.1 openapi-generator-cli==7.26.0 \
  'pydantic>=2.11' 'python-dateutil>=2.8.2' 'urllib3>=2,<3' 'typing-extensions>=4.7.1'

for family in suppliers customers; do
  rm -rf "$WORK/gen-$family"
  "$WORK/venv/bin/openapi-generator-cli" generate -g python -i "$SPECS/$family-api-2026v1.json" \
    -o "$WORK/gen-$family" --package-name "floriday_${family}_generated" --skip-validate-spec \
    --global-property apiTests=false,modelTests=false,apiDocs=false,modelDocs=false >"$WORK/gen-$family.log" 2>&1 \
    || { echo "openapi-generator failed for $family (see $WORK/gen-$family.log)"; exit 1; }
done

# The demo: sandbox and proxy on free loopback ports; its first lines name the proxy's address.
"$BIN" demo --listen 127.0.0.1:0 >"$WORK/demo.log" 2>&1 &
DEMO_PID=$!
trap 'kill "$DEMO_PID" 2>/dev/null || true; wait "$DEMO_PID" 2>/dev/null || true' EXIT
PROXY=""
for _ in $(seq 1 300); do
  PROXY=$(sed -n 's/^ *proxy: *\(http:\/\/[^ ]*\).*/\1/p' "$WORK/demo.log" | head -1)
  [ -n "$PROXY" ] && break
  kill -0 "$DEMO_PID" 2>/dev/null || { echo "the demo stopped:"; cat "$WORK/demo.log"; exit 1; }
  sleep 0.1
done
[ -n "$PROXY" ] || { echo "the demo did not print its proxy address within 30 s"; exit 1; }

status=0
run() {
  PYTHONPATH="$WORK/gen-suppliers:$WORK/gen-customers" "$WORK/venv/bin/python" scripts/generated_client/check.py "$@" || status=1
}
run --spec "$SPECS/suppliers-api-2026v1.json" --package floriday_supplier_client --base "$PROXY/suppliers-api-2026v1"
run --spec "$SPECS/suppliers-api-2026v1.json" --package floriday_suppliers_generated --base "$PROXY/suppliers-api-2026v1"
run --spec "$SPECS/customers-api-2026v1.json" --package floriday_customers_generated --base "$PROXY/customers-api-2026v1"
exit $status
