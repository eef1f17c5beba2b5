-- POST /api/v1/memories with {"memories": [...]} of BENCH_BATCH unique memories.
-- With BENCH_BACKFILL_DAYS, a backfill: each memory has a time within that many days
-- before now and one of 5,000 sessions; else the server's time and one of 400 sessions.
local key = os.getenv("BENCH_KEY")
local nonce = os.getenv("BENCH_NONCE") or tostring(os.time())
local size = tonumber(os.getenv("BENCH_BATCH") or "500")
local backfill_days = tonumber(os.getenv("BENCH_BACKFILL_DAYS") or "0")
local n = 0
dofile(os.getenv("BENCH_DIR") .. "/common.lua")

function init(args)
   math.randomseed(os.time() + (tid or 0) * 7919)
end

local function item(now)
   n = n + 1
   local session, time = n % 400, ""
   if backfill_days > 0 then
      session = math.random(0, 4999)
      time = os.date('!"time": "%Y-%m-%dT%H:%M:%SZ", ', now - math.random(0, backfill_days * 86400))
   end
   return string.format(
      '{"agent_id": "agent_%d", "session_id": "sess_%d", %s"content": "run %s thread %d memory %d: a batch-loaded observation about the customer account", "tags": ["bench", "t%d"]}',
      n % 50, session, time, nonce, tid or 0, n, n % 20)
end

function request()
   local items = {}
   local now = os.time()
   for i = 1, size do
      items[i] = item(now)
   end
   local body = '{"memories": [' .. table.concat(items, ",") .. ']}'
   return wrk.format("POST", "/api/v1/memories", {["x-api-key"] = key, ["content-type"] = "application/json"}, body)
end

done = summary_json
