#!/usr/bin/env bash
# Static checks of the container packaging (docker/), for machines without a Docker
# engine: nothing is built or started.
#
#   bash docker/validate.sh
#
# Needs docker-compose 1.29 (Debian: apt-get install docker-compose; its `config`
# command needs no engine) or the `docker compose` v2 plugin, and python3 (which
# docker-compose 1.29 brings along). Uses hadolint and shellcheck when installed.
# With FLORIDAY_PROXY_BIN naming a built floriday-proxy, also loads the configuration
# files with it (check-config).
#
# Exits 0 when everything holds; otherwise prints one line per problem and exits 1.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 2
docker_dir=docker
compose_file=$docker_dir/docker-compose.yml
dockerfile=$docker_dir/Dockerfile
env_example=$docker_dir/.env.example

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok    $*"; }
problem() { failed=$((failed + 1)); echo "FAIL  $*"; }
note() { echo "skip  $*"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for f in "$dockerfile" "$compose_file" "$env_example" "$docker_dir/proxy.container.yaml" \
    "$docker_dir/proxy.sandbox.yaml" "$docker_dir/proxy.replicas.yaml" "$docker_dir/haproxy.cfg" \
    "$docker_dir/smoke.sh" .dockerignore README.md; do
    if [ -f "$f" ]; then ok "$f exists"; else problem "$f is missing"; fi
done

# --- docker-compose.yml -----------------------------------------------------------

# Variables come from .env.example, not from a developer's own docker/.env, and none
# of the shell's FLORIDAY_* / PROXY_* variables leak in.
compose_env=(env -u FLORIDAY_ENVIRONMENT -u FLORIDAY_CLIENT_ID -u FLORIDAY_CLIENT_SECRET
    -u FLORIDAY_API_KEY -u PROXY_LISTEN -u COMPOSE_PROFILES -u COMPOSE_FILE
    -u COMPOSE_PROJECT_NAME)

compose_tools=()
if command -v docker-compose >/dev/null 2>&1; then
    compose_tools+=("docker-compose")
fi
if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
    compose_tools+=("docker compose")
fi
if [ ${#compose_tools[@]} -eq 0 ]; then
    problem "no Compose: install docker-compose (apt-get install -y docker-compose) or the docker compose plugin"
fi

resolved=""
for tool in "${compose_tools[@]}"; do
    read -r -a cmd <<<"$tool"
    version=$("${cmd[@]}" version --short 2>/dev/null || true)
    for profile_args in "" "--profile sandbox" "--profile replicas"; do
        read -r -a pargs <<<"$profile_args"
        label="$tool ${version:+($version) }${profile_args:+$profile_args }config"
        if out=$("${compose_env[@]}" "${cmd[@]}" --env-file "$root/$env_example" -f "$compose_file" \
            "${pargs[@]}" config -q 2>&1) && [ -z "$out" ]; then
            ok "$label: valid"
        else
            problem "$label: ${out:-failed}"
        fi
    done
    if [ -z "$resolved" ]; then
        resolved=$tmp/resolved.yml
        "${compose_env[@]}" "${cmd[@]}" --env-file "$root/$env_example" -f "$compose_file" \
            --profile sandbox --profile replicas config >"$resolved" 2>/dev/null || resolved=""
    fi
done

# --- the rest needs python3 (with PyYAML for the resolved Compose file) -------------

python=""
for candidate in /usr/bin/python3 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import yaml' 2>/dev/null; then
        python=$candidate
        break
    fi
done
if [ -z "$python" ]; then
    for candidate in /usr/bin/python3 python3; do
        if command -v "$candidate" >/dev/null 2>&1; then python=$candidate; break; fi
    done
fi

if [ -z "$python" ]; then
    problem "python3 not found: the Dockerfile, .dockerignore and .env.example checks need it"
else
    # Prints "ok ..." / "FAIL ..." lines; counted below.
    "$python" - "$root" "${resolved:-}" >"$tmp/checks.txt" 2>&1 <<'PYTHON'
import glob, os, re, sys

root, resolved = sys.argv[1], sys.argv[2]
os.chdir(root)

def ok(msg): print("ok    " + msg)
def fail(msg): print("FAIL  " + msg)

# --- Dockerfile --------------------------------------------------------------------
text = open("docker/Dockerfile").read()
# Join continuation lines; drop comments and blank lines (also inside a continued one).
logical, current = [], ""
for raw in text.splitlines():
    line = raw.strip()
    if not line or line.startswith("#"):
        continue
    if line.endswith("\\"):
        current += line[:-1] + " "
        continue
    logical.append(current + line)
    current = ""
instructions = [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if " " in l else "") for l in logical]

args = {}
stages = []  # one list of instructions per FROM
for ins, rest in instructions:
    if ins == "ARG" and not stages:
        name, _, value = rest.partition("=")
        args[name.strip()] = value.strip().strip('"')
    if ins == "FROM":
        stages.append([])
    if stages:
        stages[-1].append((ins, rest))

def expand(s):
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), s)

froms = [expand([w for w in rest.split() if not w.startswith("--")][0]) for ins, rest in instructions if ins == "FROM"]
if len(froms) >= 2:
    ok("Dockerfile is multi-stage: " + " -> ".join(froms))
else:
    fail("Dockerfile: expected a build stage and a run stage, found FROM " + ", ".join(froms))

# The run stage must match the build image's distribution (glibc, OpenSSL 3).
codenames = {"bookworm": ("debian:bookworm", "debian:12"), "jammy": ("ubuntu:jammy", "ubuntu:22.04"),
             "noble": ("ubuntu:noble", "ubuntu:24.04"), "bullseye": ("debian:bullseye", "debian:11")}
if len(froms) >= 2:
    build, run = froms[0], froms[-1]
    tag = build.split(":", 1)[1] if ":" in build else ""
    m = re.match(r"6(\.\d+)*(-slim)?-(\w+)$", tag)
    if not build.startswith("swift:") or not m:
        fail(f"Dockerfile: build image {build}: expected the official swift:6.x-<distribution> image")
    elif m.group(3) not in codenames:
        fail(f"Dockerfile: build image {build}: unknown distribution {m.group(3)}")
    elif not run.startswith(codenames[m.group(3)]):
        fail(f"Dockerfile: run image {run} does not match the build image {build} "
             f"(expected {' or '.join(codenames[m.group(3)])}...)")
    else:
        ok(f"Dockerfile: run image {run} matches build image {build}")

final = stages[-1] if stages else []
def final_ins(name): return [rest for ins, rest in final if ins == name]

users = final_ins("USER")
if users and users[-1].split(":")[0] not in ("root", "0"):
    ok(f"Dockerfile: runs as USER {users[-1]}")
else:
    fail("Dockerfile: the run stage needs a USER that is not root")

healthchecks = final_ins("HEALTHCHECK")
if healthchecks and not healthchecks[-1].upper().startswith("NONE"):
    ok("Dockerfile: HEALTHCHECK " + healthchecks[-1].split("CMD", 1)[-1].strip())
else:
    fail("Dockerfile: the run stage needs a HEALTHCHECK")

exposed = [p.split("/")[0] for rest in final_ins("EXPOSE") for p in rest.split()]
if "8080" in exposed:
    ok("Dockerfile: EXPOSE " + " ".join(exposed))
else:
    fail("Dockerfile: the run stage must EXPOSE 8080")

entry = final_ins("ENTRYPOINT")
if entry and "floriday-proxy" in entry[-1]:
    ok("Dockerfile: ENTRYPOINT " + entry[-1])
else:
    fail("Dockerfile: ENTRYPOINT must be floriday-proxy")

cmd = final_ins("CMD")
config_dest = [rest.split()[-1] for rest in final_ins("COPY") if "proxy.container.yaml" in rest]
if cmd and config_dest and config_dest[0] in cmd[-1]:
    ok(f"Dockerfile: CMD uses the copied configuration {config_dest[0]}")
else:
    fail("Dockerfile: CMD must name the configuration copied from docker/proxy.container.yaml")

# .dockerignore, with Docker's rules: patterns are matched against the path and each
# of its parent folders ('*' stays within one path segment, '**' crosses them); the
# last matching pattern wins, '!' re-includes.
rules = []
if os.path.exists(".dockerignore"):
    for line in open(".dockerignore"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rx, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                rx += "(?:.*/)?"; i += 3
            elif pattern.startswith("**", i):
                rx += ".*"; i += 2
            else:
                rx += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i])); i += 1
        rules.append((negate, re.compile(rx + r"\Z")))

def ignored(path):
    parts = path.split("/")
    result = False
    for negate, rx in rules:
        if any(rx.match("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            result = not negate
    return result

# Every COPY source from the build context must exist and reach the build.
for stage in stages:
    for ins, rest in stage:
        if ins not in ("COPY", "ADD"):
            continue
        words = [w for w in rest.split() if not w.startswith("--")]
        if any(w.startswith("--from") for w in rest.split()):
            continue
        # A source with a wildcard may match nothing (Package.resolved* is optional),
        # but each COPY must copy something.
        sources = words[:-1]
        copied = reported = False
        for src in sources:
            wildcard = any(ch in src for ch in "*?[")
            found = sorted(glob.glob(src)) if wildcard else ([src] if os.path.exists(src) else [])
            if not found and not wildcard:
                fail(f"Dockerfile: COPY {src}: no such file or folder in the repository")
                reported = True
            for f in found:
                if ignored(os.path.normpath(f)):
                    fail(f"Dockerfile: COPY {f}: excluded by .dockerignore")
                    reported = True
                else:
                    copied = True
                    ok(f"Dockerfile: COPY {f} exists and is in the build context")
        if not copied and not reported:
            fail(f"Dockerfile: COPY {rest}: nothing to copy")

# Credentials must never reach the build context.
for secret in ("docker/.env", "docker/secrets/floriday_client_secret", ".env"):
    if ignored(secret):
        ok(f".dockerignore keeps {secret} out of the build context")
    else:
        fail(f".dockerignore: {secret} would be sent with the build context")

# --- .env.example, README and docker-compose.yml --------------------------------------
readme = open("README.md").read()
env_vars = []
for line in open("docker/.env.example"):
    m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)=", line)
    if m:
        env_vars.append(m.group(1))
if not env_vars:
    fail("docker/.env.example sets no variables")
for var in env_vars:
    if re.search(r"(?<![A-Za-z0-9_])" + re.escape(var) + r"(?![A-Za-z0-9_])", readme):
        ok(f".env.example: {var} is documented in README.md")
    else:
        fail(f".env.example: {var} is not documented in README.md")

compose_text = open("docker/docker-compose.yml").read()
compose_uncommented = "\n".join(l.split(" #")[0] for l in compose_text.splitlines() if not l.lstrip().startswith("#"))
used = sorted(set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", compose_uncommented)))
for var in used:
    if var in env_vars:
        ok(f"docker-compose.yml: ${{{var}}} is in .env.example")
    else:
        fail(f"docker-compose.yml: ${{{var}}} is not in .env.example")

try:
    import yaml
except ImportError:
    yaml = None
if resolved and yaml:
    config = yaml.safe_load(open(resolved))
    services = config.get("services", {})
    for name, profiles in (("floriday-proxy", None), ("sandbox", ["sandbox", "replicas"]),
                           ("floriday-proxy-sandbox", ["sandbox"]), ("floriday-proxy-replica", ["replicas"])):
        svc = services.get(name)
        if svc is None:
            fail(f"docker-compose.yml: no service {name}")
            continue
        if svc.get("profiles") != profiles:
            fail(f"docker-compose.yml: {name}: profiles {svc.get('profiles')}, expected {profiles}")
        else:
            ok(f"docker-compose.yml: {name} " + (f"in profile {profiles[0]}" if profiles else "in the default profile"))
        if "ports" in svc:
            fail(f"docker-compose.yml: {name} publishes ports by default; keep it on the Compose network")
        build = svc.get("build") or {}
        context = build.get("context", "")
        dockerfile_path = os.path.join(context, build.get("dockerfile", "Dockerfile"))
        if os.path.realpath(context) == os.path.realpath(root) and os.path.isfile(dockerfile_path):
            ok(f"docker-compose.yml: {name} is built from docker/Dockerfile with the repository as context")
        else:
            fail(f"docker-compose.yml: {name}: build context {context!r}, Dockerfile {dockerfile_path!r}")
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("/") and not os.path.exists(source):
                fail(f"docker-compose.yml: {name}: mounted file {source} does not exist")
            elif source.startswith("/"):
                ok(f"docker-compose.yml: {name}: mounted file {os.path.relpath(source, root)} exists")
    # The replicas profile: scaled replicas (so no fixed container name or host port),
    # Redis and a load balancer that checks each replica's /readyz.
    replica = services.get("floriday-proxy-replica", {})
    if "container_name" in replica:
        fail("docker-compose.yml: floriday-proxy-replica has a container_name, so it cannot be scaled")
    for name in ("redis", "load-balancer"):
        svc = services.get(name)
        if svc is None:
            fail(f"docker-compose.yml: no service {name} in profile replicas")
        elif svc.get("profiles") != ["replicas"] or "ports" in svc:
            fail(f"docker-compose.yml: {name}: expected profile replicas and no published ports")
        elif not (svc.get("read_only") and svc.get("cap_drop") == ["ALL"]):
            fail(f"docker-compose.yml: {name}: expected the hardening of the other services")
        else:
            ok(f"docker-compose.yml: {name} in profile replicas, hardened, no published ports")
    haproxy_cfg = open("docker/haproxy.cfg").read()
    if re.search(r"server-template \S+ \d+ floriday-proxy-replica:8080", haproxy_cfg) and "uri /readyz" in haproxy_cfg:
        ok("haproxy.cfg: finds the replicas by name and checks their /readyz")
    else:
        fail("haproxy.cfg: expected a server-template for floriday-proxy-replica:8080 checked on /readyz")
    proxy = services.get("floriday-proxy-sandbox", {})
    if (proxy.get("depends_on") or {}).get("sandbox", {}).get("condition") == "service_healthy":
        ok("docker-compose.yml: floriday-proxy-sandbox waits for a healthy sandbox")
    else:
        fail("docker-compose.yml: floriday-proxy-sandbox must depend on sandbox being healthy")
    if "healthcheck" in services.get("sandbox", {}):
        ok("docker-compose.yml: sandbox has its own health check (no admin listener)")
    else:
        fail("docker-compose.yml: sandbox needs a health check of its own: the image's asks the admin listener")
else:
    print("skip  resolved Compose file not checked (no Compose, or PyYAML missing)")

# The sandbox service and the sandbox proxy's file must agree on address, issuer and CA.
sandbox_yaml = open("docker/proxy.sandbox.yaml").read()
sandbox_svc = re.search(r"^  sandbox:\n(?:(?:    .*)?\n)*", compose_text, re.M)
sandbox_svc = sandbox_svc.group(0) if sandbox_svc else ""
for flag in ("--listen 0.0.0.0:8443", "--hostname sandbox", "--ca-out /shared/sandbox-ca.pem"):
    if flag in " ".join(sandbox_svc.split()):
        ok(f"docker-compose.yml: sandbox runs with {flag}")
    else:
        fail(f"docker-compose.yml: the sandbox service must run with {flag}")
for line in ("api_url: https://sandbox:8443", "issuer_url: https://sandbox:8443/oauth2/ausSandbox",
             "ca_file: /shared/sandbox-ca.pem"):
    if re.search("^" + re.escape(line) + r"\s*$", sandbox_yaml, re.M):
        ok(f"proxy.sandbox.yaml: {line}")
    else:
        fail(f"proxy.sandbox.yaml: expected '{line}'")
PYTHON
    status=$?
    cat "$tmp/checks.txt"
    passed=$((passed + $(grep -c '^ok ' "$tmp/checks.txt")))
    failed=$((failed + $(grep -c '^FAIL ' "$tmp/checks.txt")))
    if [ $status -ne 0 ] && ! grep -q '^FAIL ' "$tmp/checks.txt"; then
        problem "the checks themselves failed (python exit $status)"
    fi
fi

# --- the configuration files, loaded by the real binary (optional) ---------------------

if [ -n "${FLORIDAY_PROXY_BIN:-}" ]; then
    if [ ! -x "$FLORIDAY_PROXY_BIN" ]; then
        problem "FLORIDAY_PROXY_BIN=$FLORIDAY_PROXY_BIN is not an executable"
    else
        # As in the image: credentials from the environment (placeholders here).
        if out=$(env -i PATH=/usr/bin:/bin FLORIDAY_CLIENT_ID=x FLORIDAY_CLIENT_SECRET=x FLORIDAY_API_KEY=x \
            "$FLORIDAY_PROXY_BIN" check-config --config "$docker_dir/proxy.container.yaml" 2>&1); then
            ok "floriday-proxy check-config docker/proxy.container.yaml"
        else
            problem "floriday-proxy check-config docker/proxy.container.yaml: $out"
        fi
        if out=$(env -i PATH=/usr/bin:/bin "$FLORIDAY_PROXY_BIN" check-config --config "$docker_dir/proxy.sandbox.yaml" 2>&1); then
            ok "floriday-proxy check-config docker/proxy.sandbox.yaml"
        else
            problem "floriday-proxy check-config docker/proxy.sandbox.yaml: $out"
        fi
        if out=$(env -i PATH=/usr/bin:/bin "$FLORIDAY_PROXY_BIN" check-config --config "$docker_dir/proxy.replicas.yaml" 2>&1); then
            ok "floriday-proxy check-config docker/proxy.replicas.yaml"
        else
            problem "floriday-proxy check-config docker/proxy.replicas.yaml: $out"
        fi
    fi
else
    note "configuration files not loaded (set FLORIDAY_PROXY_BIN to a built floriday-proxy to do so)"
fi

# --- linters, when installed ------------------------------------------------------------

if command -v haproxy >/dev/null 2>&1; then
    if out=$(haproxy -c -f "$docker_dir/haproxy.cfg" 2>&1); then
        ok "haproxy -c docker/haproxy.cfg"
    else
        problem "haproxy -c docker/haproxy.cfg:"$'\n'"$out"
    fi
else
    note "haproxy not installed: docker/haproxy.cfg not checked"
fi

if command -v hadolint >/dev/null 2>&1; then
    # DL3008 (pin apt package versions): not pinned on purpose, so that a rebuild picks
    # up Debian's security updates.
    if out=$(hadolint --ignore DL3008 "$dockerfile" 2>&1); then
        ok "hadolint docker/Dockerfile"
    else
        problem "hadolint docker/Dockerfile:"$'\n'"$out"
    fi
else
    note "hadolint not installed"
fi

for script in "$docker_dir/smoke.sh" "$docker_dir/validate.sh"; do
    if out=$(bash -n "$script" 2>&1); then ok "bash -n $script"; else problem "bash -n $script: $out"; fi
done
if command -v shellcheck >/dev/null 2>&1; then
    if out=$(shellcheck "$docker_dir/smoke.sh" "$docker_dir/validate.sh" 2>&1); then
        ok "shellcheck docker/*.sh"
    else
        problem "shellcheck:"$'\n'"$out"
    fi
else
    note "shellcheck not installed"
fi

echo "docker: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
