-- wrk script: prints one machine-readable line after the run, with the
-- latency percentiles that `--latency` leaves out (99.9) in microseconds.
-- Used by bench/run.sh; the request itself is set by wrk's -H flags.

done = function(summary, latency, requests)
   local seconds = summary.duration / 1e6
   local errors = summary.errors
   io.write(string.format(
      "RESULT requests=%d rps=%.0f p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d "
         .. "non_2xx_3xx=%d socket_errors=%d\n",
      summary.requests,
      summary.requests / seconds,
      latency:percentile(50),
      latency:percentile(90),
      latency:percentile(99),
      latency:percentile(99.9),
      latency.max,
      errors.status,
      errors.connect + errors.read + errors.write + errors.timeout
   ))
end
