"""The Lua scripts of the Redis limiter: each runs atomically on the Redis server, with the server's clock.

Times are milliseconds from Redis `TIME`, so instances with skewed clocks still agree. At ~1.7e12 ms a double
resolves ~0.0002 ms, a sizeable part of a unit's interval for large quotas: units are counted with 0.001 of
slack. A rate policy's state is a string key holding its GCRA TAT (see `gcra.py`); a concurrency policy's state
is a sorted set of tickets scored by their lease's expiry, so the slots of an instance that died expire with
their lease.
"""

from __future__ import annotations

_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
"""

ACQUIRE = _NOW + """
-- KEYS[i]: policy i. ARGV: ticket, lease ms, window ms, then (kind 'r'|'c', quota, need, want) per policy.
-- A rate policy is granted `want` units when they fit, or as many as fit down to `need` (the units the request
-- itself costs: the rest is the instance's local allowance, see redis_allowance.py); less than `need` refuses the
-- whole request and writes nothing. Returns allowed, violated, retry ms, then (remaining, reset ms, granted).
local ticket, lease, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local allowed, violated, retry = 1, 0, 0
local out, tats = {}, {}
for i, key in ipairs(KEYS) do
  local at = 3 + (i - 1) * 4
  local kind, quota = ARGV[at + 1], tonumber(ARGV[at + 2])
  local need, want = tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4])
  local remaining, reset, wait, granted = 0, 0, 0, 0
  if kind == 'c' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    local used = redis.call('ZCARD', key)
    if used < quota then remaining, granted = quota - used - 1, 1 else wait = 1000 end
  else
    local interval = window / quota
    local tat = tonumber(redis.call('GET', key))
    if tat == nil or tat < now then tat = now end
    local room = window + 0.01 - (tat - now)
    need = math.min(need, quota)
    if need * interval > room then
      wait, reset = need * interval - room + 0.01, tat - now
    else
      granted = math.max(need, math.min(want, math.floor(room / interval + 0.001)))
      local new = tat + granted * interval
      remaining = math.max(0, math.floor((window - (new - now)) / interval + 0.001))
      reset, tats[i] = new - now, new
    end
  end
  if wait > 0 then
    if allowed == 1 or wait > retry then violated, retry = i, wait end
    allowed = 0
  end
  out[#out + 1] = remaining
  out[#out + 1] = math.ceil(reset)
  out[#out + 1] = granted
end
if allowed == 1 then
  for i, key in ipairs(KEYS) do
    if tats[i] then
      redis.call('SET', key, string.format('%.3f', tats[i]), 'PX', math.ceil(tats[i] - now) + 1000)
    elseif ARGV[3 + (i - 1) * 4 + 1] == 'c' then
      redis.call('ZADD', key, now + lease, ticket)
      redis.call('PEXPIRE', key, lease * 2)
    end
  end
end
return {allowed, violated, math.ceil(retry), unpack(out)}
"""

ADJUST = _NOW + """
-- KEYS[i]: rate policy i. ARGV: window ms, then (quota, units to add; negative refunds) per policy.
local window = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local quota, delta = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key))
  if tat == nil or tat < now then tat = now end
  tat = math.max(now, tat + delta * window / quota)
  if tat > now then
    redis.call('SET', key, string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1000)
  else
    redis.call('DEL', key)
  end
end
return 1
"""

REFRESH = _NOW + """
-- KEYS[i]: a concurrency policy; ARGV: lease ms, then the ticket held in KEYS[i]. Extends live leases only.
local lease = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + lease, ARGV[i + 1])
  redis.call('PEXPIRE', key, lease * 2)
end
return 1
"""
