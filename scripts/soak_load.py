#!/usr/bin/env python3
"""Mixed load against a running floriday-proxy in front of the sandbox, for scripts/soak.sh.

Runs for --seconds with these clients at once:
  keep-alive    one connection each, GET after GET
  fresh         a new connection for every GET
  post          POST bodies (Content-Length and chunked, 1 KiB to 256 KiB), echo checked
  aborted       start a 5 MB download, read 64 KiB, close (half of them with a RST)
  slowloris     send a request head one byte at a time; the proxy must answer 408
and every --revoke-every seconds revokes every token at the sandbox, so requests in flight
get 401 from the API: the proxy must fetch a new token and retry, clients still see 200.

Every 5 s it samples the proxy's RSS (/proc/PID/status VmRSS) and open descriptors
(/proc/PID/fd). At the end it checks: no unexpected status or error, memory flat after
warm-up, descriptors back to the baseline. Prints a summary; exits 1 on failure.
Only loopback addresses are used; every loop is bounded by the deadline.
"""

import argparse
import collections
import http.client
import json
import os
import random
import socket
import ssl
import struct
import sys
import threading
import time

API_PATHS = [
    "/suppliers-api-2024v2/auth/key",
    "/customers-api-2024v2/identities",
    "/suppliers-api-2024v2/_sandbox/echo/trade-items?limit=2",
    "/suppliers-api-2024v2/_sandbox/echo/x/y?z=1",
]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.unexpected = collections.Counter()
        self.examples = {}

    def ok(self, kind, what):
        with self.lock:
            self.counts[(kind, what)] += 1

    def bad(self, kind, what, detail=""):
        with self.lock:
            self.counts[(kind, what)] += 1
            self.unexpected[(kind, what)] += 1
            self.examples.setdefault((kind, what), detail[:300])


def proc_sample(pid):
    rss = None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
    except OSError:
        return None, None
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        fds = None
    return rss, fds


def keepalive_client(host, port, deadline, stats):
    conn = None
    while time.time() < deadline:
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=15)
            path = random.choice(API_PATHS)
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            if response.status == 200:
                stats.ok("keep-alive", 200)
            else:
                stats.bad("keep-alive", response.status, body.decode("utf-8", "replace"))
            if response.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except Exception as error:  # noqa: BLE001 - every failure is counted
            stats.bad("keep-alive", type(error).__name__, str(error))
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.05)
    if conn is not None:
        conn.close()


def fresh_client(host, port, deadline, stats):
    while time.time() < deadline:
        conn = http.client.HTTPConnection(host, port, timeout=15)
        try:
            conn.request("GET", random.choice(API_PATHS))
            response = conn.getresponse()
            body = response.read()
            if response.status == 200:
                stats.ok("fresh", 200)
            else:
                stats.bad("fresh", response.status, body.decode("utf-8", "replace"))
        except Exception as error:  # noqa: BLE001
            stats.bad("fresh", type(error).__name__, str(error))
            time.sleep(0.05)
        finally:
            conn.close()


def post_client(host, port, deadline, stats):
    conn = None
    while time.time() < deadline:
        size = random.choice([1024, 4096, 65536, 200_000, 262_144])
        body = bytes(random.getrandbits(8) for _ in range(64)) * (size // 64)
        chunked = random.random() < 0.5
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=30)
            if chunked:
                pieces = [body[i:i + 16384] for i in range(0, len(body), 16384)]
                conn.request("POST", "/suppliers-api-2024v2/_sandbox/echo/trade-items", body=iter(pieces),
                             headers={"Content-Type": "application/octet-stream"}, encode_chunked=True)
            else:
                conn.request("POST", "/suppliers-api-2024v2/_sandbox/echo/trade-items", body=body,
                             headers={"Content-Type": "application/octet-stream"})
            response = conn.getresponse()
            data = response.read()
            kind = "post-chunked" if chunked else "post"
            if response.status != 200:
                stats.bad(kind, response.status, data.decode("utf-8", "replace"))
                continue
            try:
                echoed = json.loads(data).get("bodyBytes")
            except ValueError:
                echoed = None
            if echoed == len(body):
                stats.ok(kind, 200)
            else:
                stats.bad(kind, "wrong-echo", f"sent {len(body)} bytes, echo says {echoed}")
        except Exception as error:  # noqa: BLE001
            stats.bad("post", type(error).__name__, str(error))
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.05)
    if conn is not None:
        conn.close()


def aborted_client(host, port, deadline, stats):
    n = 0
    while time.time() < deadline:
        n += 1
        try:
            with socket.create_connection((host, port), timeout=15) as sock:
                sock.sendall(b"GET /suppliers-api-2024v2/_sandbox/bytes?size=5000000 HTTP/1.1\r\nHost: soak\r\n\r\n")
                received = 0
                first = b""
                while received < 65536:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    if not first:
                        first = chunk[:12]
                    received += len(chunk)
                if first != b"HTTP/1.1 200":
                    stats.bad("aborted", "not-200", first.decode("latin-1"))
                else:
                    stats.ok("aborted", "left-mid-body")
                if n % 2 == 0:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except Exception as error:  # noqa: BLE001
            stats.bad("aborted", type(error).__name__, str(error))
        time.sleep(0.2)


def slowloris_client(host, port, deadline, head_timeout, stats):
    head = b"GET /suppliers-api-2024v2/_sandbox/echo/slow HTTP/1.1\r\nHost: soak\r\nX-Slow: " + b"z" * 200 + b"\r\n\r\n"
    while time.time() + head_timeout + 2 < deadline:
        started = time.time()
        try:
            with socket.create_connection((host, port), timeout=head_timeout + 5) as sock:
                answer = b""
                for byte in head:
                    try:
                        sock.sendall(bytes([byte]))
                    except OSError:
                        break
                    sock.settimeout(0.3)
                    try:
                        answer = sock.recv(4096)
                        break
                    except socket.timeout:
                        continue
                    finally:
                        sock.settimeout(head_timeout + 5)
                elapsed = time.time() - started
                if answer.startswith(b"HTTP/1.1 408") and elapsed < head_timeout + 2:
                    stats.ok("slowloris", 408)
                else:
                    stats.bad("slowloris", answer[:12].decode("latin-1") or "no-answer", f"after {elapsed:.1f}s")
        except Exception as error:  # noqa: BLE001
            stats.bad("slowloris", type(error).__name__, str(error))


def revoke(sandbox, ca, stats):
    """POST /_sandbox/revoke at the sandbox (what `curl -X POST URL --cacert CA` does)."""
    host, port = sandbox
    context = ssl.create_default_context(cafile=ca)
    conn = http.client.HTTPSConnection(host, port, timeout=10, context=context)
    try:
        conn.request("POST", "/_sandbox/revoke")
        response = conn.getresponse()
        response.read()
        if response.status == 200:
            stats.ok("revoke", 200)
        else:
            stats.bad("revoke", response.status)
    except Exception as error:  # noqa: BLE001
        stats.bad("revoke", type(error).__name__, str(error))
    finally:
        conn.close()


def sandbox_stats(sandbox, ca):
    host, port = sandbox
    context = ssl.create_default_context(cafile=ca)
    conn = http.client.HTTPSConnection(host, port, timeout=10, context=context)
    try:
        conn.request("GET", "/_sandbox/stats")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def parse_hostport(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--proxy", required=True, help="host:port of the proxy")
    parser.add_argument("--sandbox", required=True, help="host:port of the sandbox (HTTPS)")
    parser.add_argument("--ca", required=True, help="the sandbox's CA certificate (PEM)")
    parser.add_argument("--pid", required=True, type=int, help="the proxy's process id")
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--revoke-every", type=float, default=20)
    parser.add_argument("--head-timeout", type=float, default=2, help="the proxy's timeouts.request_head in seconds")
    parser.add_argument("--settle", type=float, default=8, help="seconds to wait after the load for descriptors to return")
    args = parser.parse_args()

    host, port = parse_hostport(args.proxy)
    sandbox = parse_hostport(args.sandbox)
    stats = Stats()
    random.seed(20240601)

    # Warm-up and baseline: one request (token fetched, one pooled connection), then idle.
    warm = http.client.HTTPConnection(host, port, timeout=15)
    warm.request("GET", API_PATHS[0])
    warm_response = warm.getresponse()
    warm_response.read()
    warm.close()
    if warm_response.status != 200:
        print(f"soak: warm-up request got {warm_response.status}", file=sys.stderr)
        return 1
    time.sleep(args.settle)
    _, baseline_fds = proc_sample(args.pid)

    started = time.time()
    deadline = started + args.seconds
    threads = []

    def spawn(target, *extra):
        thread = threading.Thread(target=target, args=(host, port, deadline, *extra, stats), daemon=True)
        thread.start()
        threads.append(thread)

    for _ in range(4):
        spawn(keepalive_client)
    for _ in range(2):
        spawn(fresh_client)
    for _ in range(2):
        spawn(post_client)
    spawn(aborted_client)
    spawn(slowloris_client, args.head_timeout)

    samples = []  # (seconds since start, rss bytes, fds)
    revocations = 0
    next_sample = started
    next_revoke = started + args.revoke_every
    while time.time() < deadline:
        now = time.time()
        if now >= next_sample:
            rss, fds = proc_sample(args.pid)
            if rss is None:
                print("soak: the proxy process is gone", file=sys.stderr)
                stats.bad("proxy", "exited")
                break
            samples.append((now - started, rss, fds))
            next_sample += 5
        if now >= next_revoke:
            revoke(sandbox, args.ca, stats)
            revocations += 1
            next_revoke += args.revoke_every
        time.sleep(min(0.2, max(0.0, deadline - time.time())))

    for thread in threads:
        thread.join(timeout=60)
    stuck = sum(thread.is_alive() for thread in threads)

    # Descriptors back to the baseline once idle connections have timed out.
    settle_deadline = time.time() + args.settle
    final_fds = None
    while time.time() < settle_deadline:
        _, final_fds = proc_sample(args.pid)
        if final_fds is not None and baseline_fds is not None and abs(final_fds - baseline_fds) <= 10:
            break
        time.sleep(0.5)
    final_rss, _ = proc_sample(args.pid)
    try:
        counters = sandbox_stats(sandbox, args.ca)
    except Exception as error:  # noqa: BLE001
        counters = {"error": str(error)}

    # Verdict.
    failures = []
    if stuck:
        failures.append(f"{stuck} client threads did not finish")
    if stats.unexpected:
        failures.append("unexpected outcomes: " + ", ".join(f"{k[0]} {k[1]} x{v}" for k, v in sorted(stats.unexpected.items(), key=str)))
    served = sum(v for (kind, what), v in stats.counts.items() if what == 200 and kind not in ("revoke",))
    if served == 0:
        failures.append("no request was served")
    if revocations and counters.get("apiUnauthorized", 0) == 0:
        failures.append("tokens were revoked but the API never answered 401: the retry path was not exercised")
    rss_values = [rss for _, rss, _ in samples]
    if len(rss_values) >= 6:
        third = len(rss_values) // 3
        first_max = max(rss_values[:third])
        last_max = max(rss_values[-third:])
        limit = first_max * 1.2 + 4 * 1024 * 1024
        if last_max >= limit:
            failures.append(f"RSS grew: last third max {last_max / 2**20:.1f} MiB >= {limit / 2**20:.1f} MiB (first third max {first_max / 2**20:.1f} MiB)")
    else:
        failures.append(f"too few samples ({len(rss_values)}) for the memory check; run longer than 30 s")
    if baseline_fds is None or final_fds is None or abs(final_fds - baseline_fds) > 10:
        failures.append(f"descriptors: {final_fds} at the end, baseline {baseline_fds}")

    print("soak summary")
    print(f"  duration            {args.seconds} s, {revocations} token revocations")
    print("  outcomes:")
    for (kind, what), value in sorted(stats.counts.items(), key=lambda item: (item[0][0], str(item[0][1]))):
        flag = "  UNEXPECTED" if (kind, what) in stats.unexpected else ""
        print(f"    {kind:<14} {str(what):<22} {value:>7}{flag}")
    for key, example in stats.examples.items():
        print(f"    e.g. {key[0]} {key[1]}: {example}")
    print("  samples (s, RSS MiB, fds): " + ", ".join(f"{t:.0f}:{rss / 2**20:.1f}:{fds}" for t, rss, fds in samples))
    print(f"  descriptors         baseline {baseline_fds}, end {final_fds}")
    print(f"  RSS at the end      {final_rss / 2**20 if final_rss else 0:.1f} MiB")
    print(f"  sandbox counters    " + json.dumps({k: counters.get(k) for k in ("apiRequests", "apiUnauthorized", "tokenRequests", "tokensIssued")}))
    if failures:
        print("soak: FAILED")
        for failure in failures:
            print(f"  - {failure}")
        return 1
    print("soak: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
