-- reap: takes up to ARGV[1] members of a (dead, or earlier) node's shares out of one key's
-- totals; called again until it answers done, so a big share never blocks Redis for long.
-- KEYS: totals hash, infos hash, that node's shares hash. ARGV: how many members per call.
-- Returns {done (1|0), member, info, ...}: the members it took to zero, each with its info.
local out = {0}
local r = redis.call('HSCAN', KEYS[3], 0, 'COUNT', ARGV[1])
local kv = r[2]
for i = 1, #kv, 2 do
  local n = redis.call('HINCRBY', KEYS[1], kv[i], -tonumber(kv[i + 1]))
  if n <= 0 then
    table.insert(out, kv[i])
    table.insert(out, redis.call('HGET', KEYS[2], kv[i]) or '')
    redis.call('HDEL', KEYS[1], kv[i])
    redis.call('HDEL', KEYS[2], kv[i])
  end
  redis.call('HDEL', KEYS[3], kv[i])
end
if redis.call('HLEN', KEYS[3]) == 0 then out[1] = 1 end
return out
