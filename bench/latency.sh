#!/usr/bin/env bash
# Median latency added by floriday-proxy over a direct request (release build, loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(swift build -c release --show-bin-path)/floriday-proxy"
python3 bench/latency.py "$bin" "${REQUESTS:-3000}"
