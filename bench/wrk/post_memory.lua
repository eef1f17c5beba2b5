-- POST /api/v1/memories with a unique content per request (a repeat would be a 409).
-- BENCH_KEY: the API key; BENCH_NONCE: unique per run.
local key = os.getenv("BENCH_KEY")
local nonce = os.getenv("BENCH_NONCE") or tostring(os.time())
local path = os.getenv("BENCH_PATH") or "/api/v1/memories"
local n = 0
dofile(os.getenv("BENCH_DIR") .. "/common.lua")

function init(args)
   math.randomseed(os.time() + (tid or 0))
end

function request()
   n = n + 1
   local body = string.format(
      '{"agent_id": "agent_%d", "session_id": "sess_%d", "event_type": "observation",'
      .. ' "content": "run %s thread %d request %d: the user asked about invoices and the agent looked them up", "tags": ["bench", "t%d"]}',
      n % 50, n % 400, nonce, tid or 0, n, n % 20)
   return wrk.format("POST", path, {["x-api-key"] = key, ["content-type"] = "application/json"}, body)
end

done = summary_json
