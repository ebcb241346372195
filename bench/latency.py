#!/usr/bin/env python3
"""Median latency the proxy adds over a direct request to the same upstream.

Starts the sandbox (HTTPS, its own CA) and the proxy pointed at it, fetches a token for the
direct path, warms both paths up, then times GET requests on keep-alive connections,
alternating direct and proxied so both see the same machine load. Loopback only.

usage: latency.py BINARY [REQUESTS]
"""
import http.client, json, os, signal, socket, ssl, statistics, subprocess, sys, tempfile, time, urllib.parse

binary = sys.argv[1]
requests = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
workdir = tempfile.mkdtemp(prefix="floriday-proxy-latency-")
ca = os.path.join(workdir, "ca.pem")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


sandbox_port, proxy_port = free_port(), free_port()
procs = []
try:
    procs.append(subprocess.Popen([binary, "sandbox", "--listen", f"127.0.0.1:{sandbox_port}", "--ca-out", ca],
                                  stdout=subprocess.DEVNULL))
    wait_port(sandbox_port)
    while not os.path.exists(ca):
        time.sleep(0.05)
    base = f"https://127.0.0.1:{sandbox_port}"
    env = dict(os.environ, FLORIDAY_CLIENT_ID="sandbox-client", FLORIDAY_CLIENT_SECRET="sandbox-secret",
               FLORIDAY_API_KEY="sandbox-api-key", PROXY_LISTEN=f"127.0.0.1:{proxy_port}")
    config = os.path.join(workdir, "proxy.yaml")
    with open(config, "w") as f:
        f.write(f"api_url: {base}\nissuer_url: {base}/oauth2/ausSandbox\nca_file: {ca}\nlog: {{level: warning}}\n"
                "rate_limit: {enabled: false}\n")  # 3000 requests: far past one bucket
    procs.append(subprocess.Popen([binary, "run", "--config", config], env=env))
    wait_port(proxy_port)

    context = ssl.create_default_context(cafile=ca)
    idm = http.client.HTTPSConnection("127.0.0.1", sandbox_port, context=context)
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": "sandbox-client",
                                   "client_secret": "sandbox-secret", "scope": "role:app"})
    idm.request("POST", "/oauth2/ausSandbox/v1/token", form, {"Content-Type": "application/x-www-form-urlencoded"})
    token = json.loads(idm.getresponse().read())["access_token"]

    direct = http.client.HTTPSConnection("127.0.0.1", sandbox_port, context=context)
    proxied = http.client.HTTPConnection("127.0.0.1", proxy_port)
    direct_headers = {"Authorization": f"Bearer {token}", "X-Api-Key": "sandbox-api-key"}
    path = "/suppliers-api-2024v2/auth/key"

    def timed(conn, headers):
        start = time.perf_counter_ns()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        elapsed = time.perf_counter_ns() - start
        if response.status != 200:
            sys.exit(f"unexpected status {response.status}")
        return elapsed

    for _ in range(200):            # warm-up: token cached, connections and pools open
        timed(direct, direct_headers)
        timed(proxied, {})
    d, p = [], []
    for _ in range(requests):
        d.append(timed(direct, direct_headers))
        p.append(timed(proxied, {}))
    md, mp = statistics.median(d) / 1000, statistics.median(p) / 1000
    print(f"requests per path: {requests}")
    print(f"direct  median: {md:8.1f} µs   p99: {sorted(d)[int(len(d) * .99)] / 1000:8.1f} µs")
    print(f"proxied median: {mp:8.1f} µs   p99: {sorted(p)[int(len(p) * .99)] / 1000:8.1f} µs")
    print(f"added by the proxy (median): {mp - md:8.1f} µs  (goal: under 150 µs)")
    sys.exit(0 if mp - md < 150 else 1)
finally:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
