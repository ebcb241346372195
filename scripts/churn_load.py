#!/usr/bin/env python3
"""Connection churn against a running proxy: CYCLES short-lived connections, each ending one
of five ways, spread over WORKERS processes, while one keep-alive client keeps requesting.

  connect-request-close   a whole request and response, then close
  connect-reset           connect, then RST before any byte
  reset-mid-request       half a request head, then RST
  reset-mid-response      a 2 MB download, 8 KiB read, then RST
  close-before-any-byte   connect, then an orderly close

Passes when the proxy process is alive at the end, every keep-alive request was answered 200,
no churning connection saw a wrong answer, and the proxy's descriptor count is back within a
small slack of its baseline. Prints one summary line; exit status 1 on failure.
usage: churn_load.py --proxy HOST:PORT --pid PID --cycles N [--workers W]
"""
import argparse
import multiprocessing
import os
import socket
import struct
import sys
import threading
import time

ENDINGS = ["connect-request-close", "connect-reset", "reset-mid-request", "reset-mid-response", "close-before-any-byte"]
GET = b"GET /suppliers-api-2024v2/auth/key HTTP/1.1\r\nHost: churn\r\nConnection: close\r\n\r\n"
DOWNLOAD = b"GET /suppliers-api-2024v2/_sandbox/bytes?size=2000000 HTTP/1.1\r\nHost: churn\r\n\r\n"


def reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_at_least(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def one_cycle(address, ending):
    sock = socket.create_connection(address, timeout=20)
    try:
        if ending == "connect-request-close":
            sock.sendall(GET)
            answer = read_at_least(sock, 1 << 30)
            if not answer.startswith(b"HTTP/1.1 200"):
                return f"{ending}: {answer[:40]!r}"
            sock.close()
        elif ending == "connect-reset":
            reset(sock)
        elif ending == "reset-mid-request":
            sock.sendall(GET[:30])
            reset(sock)
        elif ending == "reset-mid-response":
            sock.sendall(DOWNLOAD)
            first = read_at_least(sock, 8192)
            if not first.startswith(b"HTTP/1.1 200"):
                return f"{ending}: {first[:40]!r}"
            reset(sock)
        else:
            sock.close()
    except OSError as error:
        sock.close()
        return f"{ending}: {error}"
    return None


def worker(args):
    address, start, count = args
    failures = []
    for i in range(start, start + count):
        failure = one_cycle(address, ENDINGS[i % len(ENDINGS)])
        if failure:
            failures.append(failure)
    return count, failures


def descriptors(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--proxy", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--cycles", type=int, default=100000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    host, port = args.proxy.rsplit(":", 1)
    address = (host, int(port))

    for _ in range(4):   # warm-up: token cached, upstream connections pooled
        if one_cycle(address, "connect-request-close"):
            print("churn: FAILED: the proxy does not answer before the churn")
            return 1
    baseline = descriptors(args.pid)

    stop = threading.Event()
    keepalive = {"answered": 0, "failures": []}

    def keepalive_client():
        try:
            sock = socket.create_connection(address, timeout=30)
            request = b"GET /suppliers-api-2024v2/auth/key HTTP/1.1\r\nHost: churn\r\n\r\n"
            buffer = b""
            while not stop.is_set():
                sock.sendall(request)
                while b"\r\n\r\n" not in buffer:
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise OSError("closed by the proxy")
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(buffer) < length:
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise OSError("closed by the proxy mid-body")
                    buffer += chunk
                buffer = buffer[length:]
                if head.startswith(b"HTTP/1.1 200"):
                    keepalive["answered"] += 1
                else:
                    keepalive["failures"].append(head[:40])
            sock.close()
        except OSError as error:
            keepalive["failures"].append(str(error))

    thread = threading.Thread(target=keepalive_client)
    thread.start()
    started = time.time()
    per_worker = args.cycles // args.workers
    jobs = [(address, w * per_worker, per_worker) for w in range(args.workers)]
    with multiprocessing.Pool(args.workers) as pool:
        results = pool.map(worker, jobs)
    stop.set()
    thread.join(60)
    elapsed = time.time() - started
    cycles = sum(r[0] for r in results)
    failures = [f for r in results for f in r[1]]

    problems = []
    if not alive(args.pid):
        problems.append("the proxy process is gone")
    else:
        if one_cycle(address, "connect-request-close"):
            problems.append("the proxy no longer answers")
        settled = None
        for _ in range(300):
            settled = descriptors(args.pid)
            if settled <= baseline + 16:
                break
            time.sleep(0.1)
        if settled > baseline + 16:
            problems.append(f"descriptors {settled}, baseline {baseline}")
    if failures:
        problems.append(f"{len(failures)} churn cycles failed, e.g. {failures[:3]}")
    if keepalive["failures"]:
        problems.append(f"keep-alive failures: {keepalive['failures'][:3]}")
    if keepalive["answered"] == 0:
        problems.append("the keep-alive client got no answer")
    print(f"churn: {cycles} cycles in {elapsed:.0f} s ({cycles / elapsed:.0f}/s), keep-alive answered "
          f"{keepalive['answered']}, descriptors baseline {baseline}: " + ("OK" if not problems else "FAILED: " + "; ".join(problems)))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
