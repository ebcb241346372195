#!/usr/bin/env python3
"""Opens COUNT keep-alive connections to HOST:PORT, sends one GET on each and reads the whole
response (so each is a real keep-alive connection between requests, not a half-open socket),
prints "ready COUNT" and holds them all for HOLD seconds, then closes them and exits.

usage: idle_conns.py HOST PORT COUNT HOLD_SECONDS [PATH]

Connections are opened in batches so the listen backlog never overflows; all of them are open
at the same time once "ready" is printed. Exits non-zero if any request fails.
"""
import socket
import sys
import time

host, port, count, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
path = sys.argv[5] if len(sys.argv) > 5 else "/suppliers-api-2024v2/_sandbox/echo/trade-items"
request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
BATCH = 250


def read_response(sock):
    """Reads one response with a Content-Length body; returns its status code."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        raise ValueError("response without Content-Length")
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside the response body")
        body += chunk
    return status


sockets = []
try:
    while len(sockets) < count:
        batch = []
        for _ in range(min(BATCH, count - len(sockets))):
            s = socket.create_connection((host, port), timeout=30)
            s.sendall(request)
            batch.append(s)
        for s in batch:
            status = read_response(s)
            if status != 200:
                sys.exit(f"unexpected status {status}")
        sockets.extend(batch)
    print(f"ready {len(sockets)}", flush=True)
    time.sleep(hold)
finally:
    for s in sockets:
        s.close()
