#!/usr/bin/env python3
"""Sends COUNT requests to HOST:PORT whose clients give up: in rounds of 100 connections, each
sends a GET, then all of them close without reading the response (as clients do that time out
or are killed, or as wrk does at the end of a run). A proxy must come out of this able to serve
the next request.

usage: abort_clients.py HOST PORT COUNT [PATH]
"""
import socket
import sys
import time

host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
path = sys.argv[4] if len(sys.argv) > 4 else "/suppliers-api-2024v2/_sandbox/echo/trade-items"
request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
ROUND = 100

sent = 0
while sent < count:
    batch = [socket.create_connection((host, port), timeout=10) for _ in range(min(ROUND, count - sent))]
    for s in batch:
        s.sendall(request)
    for s in batch:
        s.close()
    sent += len(batch)
    time.sleep(0.2)
print(f"aborted {sent}")
