-- wrk script: request.lua's request, stopping once BENCH_REQUESTS answers came back, and a second result line with
-- the answers by status class (bench/routing_bench.py, availability). Run with -t1.
dofile(os.getenv("BENCH_WRK_DIR") .. "/request.lua")
local limit = tonumber(os.getenv("BENCH_REQUESTS") or "10000")
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  answered, ok, s4xx, s5xx, other = 0, 0, 0, 0, 0
end

function response(status, headers, body)
  answered = answered + 1
  if status >= 200 and status < 300 then ok = ok + 1
  elseif status >= 500 then s5xx = s5xx + 1
  elseif status >= 400 then s4xx = s4xx + 1
  else other = other + 1 end
  if answered >= limit then wrk.thread:stop() end
end

local summarize = done
function done(summary, latency, requests)
  summarize(summary, latency, requests)
  local t = threads[1]
  io.write(string.format('BENCH_STATUS {"answered":%d,"ok":%d,"s4xx":%d,"s5xx":%d,"other":%d}\n',
    t:get("answered"), t:get("ok"), t:get("s4xx"), t:get("s5xx"), t:get("other")))
end
