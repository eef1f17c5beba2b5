-- POST /api/v1/memories with {"memories": [...]} of BENCH_BATCH unique memories.
local key = os.getenv("BENCH_KEY")
local nonce = os.getenv("BENCH_NONCE") or tostring(os.time())
local size = tonumber(os.getenv("BENCH_BATCH") or "500")
local n = 0
dofile(os.getenv("BENCH_DIR") .. "/common.lua")

function request()
   local items = {}
   for i = 1, size do
      n = n + 1
      items[i] = string.format(
         '{"agent_id": "agent_%d", "session_id": "sess_%d", "content": "run %s thread %d memory %d: a batch-loaded observation about the customer account", "tags": ["bench", "t%d"]}',
         n % 50, n % 400, nonce, tid or 0, n, n % 20)
   end
   local body = '{"memories": [' .. table.concat(items, ",") .. ']}'
   return wrk.format("POST", "/api/v1/memories", {["x-api-key"] = key, ["content-type"] = "application/json"}, body)
end

done = summary_json
