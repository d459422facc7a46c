-- wrk script: request.lua's request and result line, with "{n}" in the body replaced by a counter, so that every
-- request differs (the response cache's misses in bench/cache_bench.py).
dofile(os.getenv("BENCH_WRK_DIR") .. "/request.lua")
local counter = 0

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, (wrk.body:gsub("{n}", tostring(counter))))
end
