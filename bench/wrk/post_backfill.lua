-- POST /api/v1/memories with {"memories": [...]} of BENCH_BATCH unique backfilled memories:
-- times spread over the last 60 days, 20,000 sessions, 1,000 agents, metadata and three
-- tags each, as bench/load_data.py shapes a store (so new index entries land all over it).
local key = os.getenv("BENCH_KEY")
local nonce = os.getenv("BENCH_NONCE") or tostring(os.time())
local size = tonumber(os.getenv("BENCH_BATCH") or "1000")
local span = 60 * 86400
local n = 0
dofile(os.getenv("BENCH_DIR") .. "/common.lua")

function init(args)
   math.randomseed(os.time() + (tid or 0) * 7919)
end

function request()
   local items = {}
   local now = os.time()
   for i = 1, size do
      n = n + 1
      local session = ""
      if math.random() < 0.7 then session = string.format("sess_%05d", math.random(0, 19999)) end
      items[i] = string.format(
         '{"agent_id": "agent_%04d", "session_id": "%s", "time": "%s", "content": "run %s thread %d memory %d: a backfilled note about the account w%d w%d w%d",'
         .. ' "tags": ["tag%d", "tag%d", "tag%d"], "metadata": {"n": %d, "plan": "p%d", "user": "user_%d"}}',
         math.random(0, 999), session, os.date("!%Y-%m-%dT%H:%M:%SZ", now - math.random(60, span)),
         nonce, tid or 0, n, math.random(5000), math.random(5000), math.random(5000),
         math.random(0, 199), math.random(0, 199), math.random(0, 199), n, math.random(4), math.random(20000))
   end
   local body = '{"memories": [' .. table.concat(items, ",") .. ']}'
   return wrk.format("POST", "/api/v1/memories", {["x-api-key"] = key, ["content-type"] = "application/json"}, body)
end

done = summary_json
