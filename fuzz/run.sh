#!/usr/bin/env bash
# Builds the HTTP/1.1 parser fuzzer (libFuzzer + AddressSanitizer) and runs it.
#
#   fuzz/run.sh [SECONDS]     default 600
#
# The seed corpus (fuzz/corpus) is read, never written: new inputs go to a working corpus in
# the build directory. A crash, a sanitizer report or a broken invariant leaves the input in
# fuzz/artifacts/ and makes this script exit non-zero.
set -euo pipefail
seconds="${1:-600}"
case "$seconds" in ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
scratch="${FUZZ_SCRATCH_PATH:-$root/.build-fuzz}"

# -sanitize=fuzzer,address: libFuzzer coverage and runtime plus AddressSanitizer, for every
# module. -parse-as-library: no top-level entry point is generated for HTTP1Fuzz (SwiftPM links
# Linux executables with main = HTTP1Fuzz_main, which Sources/FuzzerEntry defines to start
# libFuzzer's driver).
swift build -c release --package-path "$here" --scratch-path "$scratch" \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
binary="$(swift build -c release --package-path "$here" --scratch-path "$scratch" --show-bin-path)/HTTP1Fuzz"

work="$scratch/fuzz-corpus"
mkdir -p "$work" "$here/artifacts"
echo "fuzzing the HTTP/1.1 parsers for ${seconds}s (seeds: $(ls "$here/corpus" | wc -l), working corpus: $work)"
status=0
"$binary" "$work" "$here/corpus" \
    -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -dict="$here/http.dict" -artifact_prefix="$here/artifacts/" -print_final_stats=1 || status=$?
if [ "$status" -ne 0 ]; then
    echo "fuzz: FAILED (exit $status); reproduce with: $binary <artifact from $here/artifacts/>" >&2
    exit "$status"
fi
echo "fuzz: no crash in ${seconds}s"
