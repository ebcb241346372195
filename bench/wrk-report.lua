-- wrk script for bench.sh.
--
-- GET by default. With BENCH_POST_BYTES=N in the environment every request is a POST with an
-- N-byte JSON body (the upstream answers {"bytes":N,...}).
--
-- At the end it prints one machine-readable line that bench.sh parses:
--   RESULT requests=... duration_us=... p50_us=... p99_us=... max_us=... errors=... non2xx=...
-- "errors" counts connect/read/write errors and timeouts; "non2xx" counts responses with a
-- status outside 200-399 (wrk's own notion of a status error).

local post_bytes = tonumber(os.getenv("BENCH_POST_BYTES") or "0") or 0

if post_bytes > 0 then
  local prefix, suffix = '{"padding":"', '"}'
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = prefix .. string.rep("x", post_bytes - #prefix - #suffix) .. suffix
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d errors=%d non2xx=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status))
end
