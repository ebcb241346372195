#!/usr/bin/env bash
# Static checks of the Kubernetes manifests (docker/kubernetes/), with no cluster:
#
#   bash docker/kubernetes/validate.sh
#
# Each overlay is rendered (render.py; when kubectl is installed, `kubectl kustomize` too,
# and the two must agree), then every object, and secret.example.yaml, is checked against
# the Kubernetes schemas (kubernetes-validate from PyPI, installed into a virtual
# environment under .build/ on first use; KUBERNETES_VERSION picks the schema version),
# then against the rules the deployment promises (non-root, probes, limits, ...). With
# FLORIDAY_PROXY_BIN naming a built floriday-proxy, each overlay's proxy.yaml is loaded
# with check-config.
#
# Needs /usr/bin/python3 with venv (Debian: python3-venv) and PyYAML (python3-yaml).
# Exits 0 when everything holds; otherwise prints one line per problem and exits 1.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root" || exit 2
k8s=docker/kubernetes
kubernetes_version=${KUBERNETES_VERSION:-1.30.0}
venv=${KUBERNETES_VALIDATE_VENV:-$root/.build/kubernetes-validate}
# Pinned: a new release may bring new schemas, and with them new findings.
validator_package="kubernetes-validate==1.37.0"

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok    $*"; }
problem() { failed=$((failed + 1)); echo "FAIL  $*"; }
note() { echo "skip  $*"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3 || true)
if [ -z "$python" ] || ! "$python" -c 'import yaml' 2>/dev/null; then
    echo "FAIL  python3 with PyYAML is needed (apt-get install -y python3-yaml)"
    exit 1
fi

# --- the schema validator ----------------------------------------------------------------
validator=$venv/bin/kubernetes-validate
if [ ! -x "$validator" ]; then
    if "$python" -m venv "$venv" >"$tmp/venv.log" 2>&1 &&
        "$venv/bin/pip" install --quiet --disable-pip-version-check "$validator_package" >>"$tmp/venv.log" 2>&1; then
        ok "installed $validator_package into $venv"
    else
        problem "could not install $validator_package into $venv (python3-venv missing, or no package index?):"
        sed 's/^/      /' "$tmp/venv.log"
        rm -rf "$venv"
    fi
fi

# --- render every overlay ------------------------------------------------------------------
overlays=()
for dir in "$k8s"/overlays/*/; do overlays+=("$(basename "$dir")"); done
if [ ${#overlays[@]} -lt 2 ]; then problem "expected overlays for staging and live, found: ${overlays[*]:-none}"; fi

rendered=()
for overlay in "${overlays[@]}"; do
    out=$tmp/$overlay.yaml
    if err=$("$python" "$k8s/render.py" "$k8s/overlays/$overlay" 2>&1 >"$out"); then
        ok "overlays/$overlay rendered ($(grep -c '^kind:' "$out") objects)"
        rendered+=("$out")
    else
        problem "overlays/$overlay: $err"
        continue
    fi
    if command -v kubectl >/dev/null 2>&1; then
        if kubectl kustomize "$k8s/overlays/$overlay" >"$tmp/$overlay.kubectl.yaml" 2>"$tmp/kubectl.err"; then
            if diff=$("$python" "$k8s/render.py" --compare "$tmp/$overlay.kubectl.yaml" "$k8s/overlays/$overlay"); then
                ok "overlays/$overlay: kubectl kustomize renders the same objects"
            else
                problem "overlays/$overlay: kubectl kustomize differs: $diff"
            fi
        else
            problem "overlays/$overlay: kubectl kustomize: $(cat "$tmp/kubectl.err")"
        fi
    else
        note "overlays/$overlay: kubectl not installed; rendered by render.py only"
    fi
done

# --- schemas -------------------------------------------------------------------------------
if [ -x "$validator" ]; then
    for file in "${rendered[@]}" "$k8s/secret.example.yaml"; do
        label=${file#"$tmp/"}
        if out=$("$validator" --strict --quiet -k "$kubernetes_version" "$file" 2>&1) && [ -z "$out" ]; then
            ok "$label: valid against the Kubernetes $kubernetes_version schemas (strict)"
        else
            problem "$label: $out"
        fi
    done
    # The validator must be able to fail: a misspelt field is refused.
    sed 's/^  replicas:/  replica:/' "$tmp/${overlays[0]}.yaml" >"$tmp/broken.yaml"
    if "$validator" --strict --quiet -k "$kubernetes_version" "$tmp/broken.yaml" >/dev/null 2>&1; then
        problem "kubernetes-validate accepted a Deployment with a misspelt field"
    else
        ok "kubernetes-validate refuses a misspelt field"
    fi
fi

# --- what the deployment promises ----------------------------------------------------------
"$python" - "${rendered[@]}" >"$tmp/rules.txt" 2>&1 <<'PYTHON'
import re, sys, yaml

def ok(msg): print("ok    " + msg)
def fail(msg): print("FAIL  " + msg)

def seconds(duration):
    total = 0
    for value, unit in re.findall(r"(\d+)(ms|s|m|h)", duration or ""):
        total += int(value) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total

for path in sys.argv[1:]:
    name = path.rsplit("/", 1)[-1].removesuffix(".yaml")
    objects = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(open(path)) if o}
    def check(cond, msg):
        (ok if cond else fail)(f"{name}: {msg}")
    dep = objects.get(("Deployment", "floriday-proxy"))
    if dep is None:
        fail(f"{name}: no Deployment floriday-proxy")
        continue
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    (c,) = [c for c in pod["containers"] if c["name"] == "floriday-proxy"]
    security = c.get("securityContext", {})
    check(spec.get("replicas", 1) >= 2, f"{spec.get('replicas', 1)} replicas")
    check(pod.get("securityContext", {}).get("runAsNonRoot") is True, "pods run as non-root")
    check(security.get("readOnlyRootFilesystem") is True, "read-only root filesystem")
    check(security.get("allowPrivilegeEscalation") is False, "no privilege escalation")
    check(security.get("capabilities", {}).get("drop") == ["ALL"], "every capability dropped")
    resources = c.get("resources", {})
    check(all(k in resources.get(kind, {}) for kind in ("requests", "limits") for k in ("cpu", "memory")),
          "CPU and memory requests and limits")
    check(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", "liveness on /healthz")
    check(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", "readiness on /readyz")
    config = objects.get(("ConfigMap", "floriday-proxy-config"), {}).get("data", {}).get("proxy.yaml", "")
    grace = seconds((yaml.safe_load(config) or {}).get("shutdown_grace", "20s"))
    pause = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pause = int(pause[1]) if pause[:1] == ["sleep"] and len(pause) == 2 else None
    check(pause is not None, f"preStop pauses ({pause} s) before SIGTERM")
    check(pause is not None and pod.get("terminationGracePeriodSeconds", 30) > pause + grace,
          f"terminationGracePeriodSeconds {pod.get('terminationGracePeriodSeconds', 30)} > preStop {pause} s + shutdown_grace {grace:g} s")
    selector = spec["selector"]["matchLabels"]
    pdb = objects.get(("PodDisruptionBudget", "floriday-proxy"))
    check(pdb is not None and pdb["spec"]["selector"]["matchLabels"] == selector, "a PodDisruptionBudget selects the pods")
    service = objects.get(("Service", "floriday-proxy"))
    check(service is not None and service["spec"]["selector"] == selector, "the Service selects the pods")
    policy = objects.get(("NetworkPolicy", "floriday-proxy"))
    proxy_rules = [r for r in (policy or {}).get("spec", {}).get("ingress", [])
                   if any(p.get("port") == 8080 for p in r.get("ports", []))]
    check(policy is not None and policy["spec"]["podSelector"]["matchLabels"] == selector and proxy_rules and
          all(f.get("podSelector", {}).get("matchLabels") == {"floriday-proxy/client": "true"}
              for r in proxy_rules for f in r.get("from", [])),
          "the NetworkPolicy admits only pods labelled floriday-proxy/client to port 8080")
    rate_limit = (yaml.safe_load(config) or {}).get("rate_limit") or {}
    check(rate_limit.get("replicas", 1) == spec.get("replicas", 1),
          f"rate_limit.replicas {rate_limit.get('replicas', 1)} = the Deployment's {spec.get('replicas', 1)} replicas")
    store = str(rate_limit.get("store", "memory"))
    check(store.startswith("redis://floriday-proxy-redis:") == (("Deployment", "floriday-proxy-redis") in objects),
          f"rate_limit.store ({store}) is the Redis of ../../redis exactly when the overlay includes it")
    if ("Deployment", "floriday-proxy-redis") in objects:
        rpod = objects[("Deployment", "floriday-proxy-redis")]["spec"]["template"]["spec"]
        check(rpod.get("securityContext", {}).get("runAsNonRoot") is True and
              all(x.get("securityContext", {}).get("readOnlyRootFilesystem") for x in rpod["containers"]),
              "Redis runs as non-root with a read-only root filesystem")
        check(("NetworkPolicy", "floriday-proxy-redis") in objects, "a NetworkPolicy guards Redis")
    secret_refs = {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
    check(secret_refs == {"floriday-proxy-credentials"}, "credentials come from the Secret floriday-proxy-credentials")
    open(path.removesuffix(".yaml") + ".proxy.yaml", "w").write(config)
PYTHON
cat "$tmp/rules.txt"
passed=$((passed + $(grep -c '^ok ' "$tmp/rules.txt")))
failed=$((failed + $(grep -c '^FAIL ' "$tmp/rules.txt")))
if ! grep -q '^\(ok\|FAIL\) ' "$tmp/rules.txt"; then problem "the rule checks did not run"; fi

# --- each overlay's proxy.yaml, loaded by the real binary (optional) ------------------------
if [ -n "${FLORIDAY_PROXY_BIN:-}" ]; then
    for overlay in "${overlays[@]}"; do
        config=$tmp/$overlay.proxy.yaml
        [ -s "$config" ] || { problem "overlays/$overlay: no proxy.yaml in the ConfigMap"; continue; }
        if out=$(env -i PATH=/usr/bin:/bin FLORIDAY_CLIENT_ID=x FLORIDAY_CLIENT_SECRET=x FLORIDAY_API_KEY=x \
            "$FLORIDAY_PROXY_BIN" check-config --config "$config" 2>&1); then
            ok "overlays/$overlay: proxy.yaml passes check-config"
        else
            problem "overlays/$overlay: proxy.yaml: $out"
        fi
    done
else
    note "proxy.yaml not loaded (set FLORIDAY_PROXY_BIN to a built floriday-proxy to do so)"
fi

echo "kubernetes: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
