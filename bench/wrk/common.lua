-- Shared by every benchmark script: per-thread ids and a JSON summary on stdout.
local threads = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("tid", counter)
   table.insert(threads, thread)
end

function summary_json(summary, latency)
   local errors = summary.errors
   local secs = summary.duration / 1e6
   io.write(string.format(
      'BENCH_JSON {"requests": %d, "seconds": %.3f, "rps": %.1f, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d, "errors": %d, "non_2xx": %d}\n',
      summary.requests, secs, summary.requests / secs,
      latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
      errors.connect + errors.read + errors.write + errors.timeout, errors.status))
end
