#!/usr/bin/env python3
"""A small, steady load for profiling: COUNT requests over CONNECTIONS keep-alive connections
(one thread each), GET by default or POST with a BODY_BYTES-byte JSON body. Exits non-zero if
any response is not a 200.

usage: load_client.py HOST PORT COUNT CONNECTIONS PATH [BODY_BYTES]
"""
import http.client
import sys
import threading
import time

host, port, count, connections, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
body_bytes = int(sys.argv[6]) if len(sys.argv) > 6 else 0
body = None
if body_bytes:
    prefix, suffix = '{"padding":"', '"}'
    body = (prefix + "x" * (body_bytes - len(prefix) - len(suffix)) + suffix).encode()

lock = threading.Lock()
remaining = count
failures = []


def worker():
    global remaining
    conn = http.client.HTTPConnection(host, port, timeout=120)
    while True:
        with lock:
            if remaining == 0 or failures:
                break
            remaining -= 1
        if body is None:
            conn.request("GET", path)
        else:
            conn.request("POST", path, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            with lock:
                failures.append(response.status)
    conn.close()


start = time.monotonic()
threads = [threading.Thread(target=worker) for _ in range(connections)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - start
if failures:
    sys.exit(f"non-200 responses: {failures[:5]}")
print(f"{count} requests ({'POST' if body else 'GET'}) in {elapsed:.1f} s")
