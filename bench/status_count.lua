-- wrk script: counts responses by status class and prints them after the run.
-- Used by bench/rotation.sh for the background load.

local threads = {}

setup = function(thread)
   table.insert(threads, thread)
end

init = function(args)
   ok, client_errors, server_errors = 0, 0, 0
end

response = function(status, headers, body)
   if status >= 500 then
      server_errors = server_errors + 1
   elseif status >= 400 then
      client_errors = client_errors + 1
   else
      ok = ok + 1
   end
end

done = function(summary, latency, requests)
   local totals = {ok = 0, client_errors = 0, server_errors = 0}
   for _, thread in ipairs(threads) do
      for name, _ in pairs(totals) do
         totals[name] = totals[name] + thread:get(name)
      end
   end
   io.write(string.format(
      "LOAD requests=%d ok=%d status_4xx=%d status_5xx=%d socket_errors=%d p99_us=%d max_us=%d\n",
      summary.requests, totals.ok, totals.client_errors, totals.server_errors,
      summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
      latency:percentile(99), latency.max
   ))
end
