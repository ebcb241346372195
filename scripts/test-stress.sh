#!/usr/bin/env bash
# The whole test suite RUNS times in a row (default 10) while stress-ng keeps every core
# busy (`--cpu 2` on the two-core machines the suite must pass on; STRESS_CPUS to change).
# A test that passes only on a quiet machine fails here. Every failure is reported with its
# test's name and run number; the exit status is non-zero if any run failed.
set -uo pipefail
cd "$(dirname "$0")/.."

RUNS=${1:-10}
CPUS=${STRESS_CPUS:-2}
SWIFT=${SWIFT:-swift}
LOGS=${STRESS_LOGS:-.build/test-stress}
# A run that takes longer than this is stopped and reported as hung (`make test` must finish
# within 10 minutes on a quiet machine).
RUN_TIMEOUT=${STRESS_RUN_TIMEOUT:-1200}

command -v stress-ng >/dev/null || { echo "stress-ng is not installed (Debian package stress-ng)"; exit 1; }
$SWIFT build --build-tests || exit 1
rm -rf "$LOGS" && mkdir -p "$LOGS"

stress-ng --cpu "$CPUS" --quiet &
STRESS=$!
trap 'kill $STRESS 2>/dev/null; wait $STRESS 2>/dev/null' EXIT
echo "stress-ng --cpu $CPUS running (pid $STRESS); $RUNS runs of the test suite; logs in $LOGS"

failed_runs=0
for run in $(seq 1 "$RUNS"); do
  log="$LOGS/run-$run.log"
  started=$(date +%s)
  timeout --kill-after=10 "$RUN_TIMEOUT" $SWIFT test --skip-build --no-parallel >"$log" 2>&1
  status=$?
  seconds=$(( $(date +%s) - started ))
  # Swift Testing marks a failed test "✘ Test name() failed" and each issue "recorded an
  # issue at file:line: ...".
  failures=$(grep -E '^✘ Test .* (failed|recorded an issue)' "$log" | grep -v '^✘ Test run with' | sed -E 's/^✘ Test ([^ ]+).*/\1/' | sort -u)
  if [ $status -eq 0 ] && [ -z "$failures" ]; then
    echo "run $run/$RUNS: passed in ${seconds}s"
    continue
  fi
  failed_runs=$((failed_runs + 1))
  if [ $status -eq 124 ] || [ $status -eq 137 ]; then
    echo "run $run/$RUNS: HUNG, stopped after ${seconds}s; log: $log"
  else
    echo "run $run/$RUNS: FAILED (exit status $status) after ${seconds}s; log: $log"
  fi
  if [ -n "$failures" ]; then
    while read -r name; do
      echo "  failed: $name"
      grep -E "^✘ Test $(printf '%s' "$name" | sed 's/[][().*^$]/\\&/g') recorded an issue" "$log" | sed -E 's/^✘ Test [^ ]+ recorded an issue( at)?/   /' | head -5
    done <<<"$failures"
  else
    # No test reported a failure: the process itself died (a crash, or a hang cut short).
    # The tests that started and never finished are the suspects.
    grep -E '^◇ Test .* started' "$log" | sed -E 's/^◇ Test ([^ ]+) started.*/\1/' | sort >"$log.started"
    grep -E '^✔ Test .* passed|^✘ Test .* failed' "$log" | sed -E 's/^[✔✘] Test ([^ ]+) .*/\1/' | sort >"$log.finished"
    comm -23 "$log.started" "$log.finished" | sed 's/^/  unfinished: /'
    tail -5 "$log" | sed 's/^/  | /'
  fi
done

if [ $failed_runs -eq 0 ]; then
  echo "test-stress: $RUNS of $RUNS runs passed under stress-ng --cpu $CPUS"
else
  echo "test-stress: $failed_runs of $RUNS runs FAILED under stress-ng --cpu $CPUS (logs in $LOGS)"
  exit 1
fi
