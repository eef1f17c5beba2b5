-- Requests read from BENCH_REQUESTS: one per line, "METHOD<TAB>PATH<TAB>BODY" (body may be
-- empty); each thread walks the list from its own random start.
local key = os.getenv("BENCH_KEY")
local lines = {}
dofile(os.getenv("BENCH_DIR") .. "/common.lua")
for line in io.lines(os.getenv("BENCH_REQUESTS")) do
   local method, path, body = line:match("^(%u+)\t([^\t]+)\t?(.*)$")
   local headers = {["x-api-key"] = key}
   if body == "" then body = nil else headers["content-type"] = "application/json" end
   table.insert(lines, wrk.format(method, path, headers, body))
end
local i = 0

function init(args)
   math.randomseed(os.time() + (tid or 0) * 7919)
   i = math.random(#lines)
end

function request()
   i = i % #lines + 1
   return lines[i]
end

done = summary_json
