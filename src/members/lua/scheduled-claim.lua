-- scheduled-claim: the due scheduled messages, each claimed by this caller alone: its score in
-- the due set moves to now + lease (so no other claim takes it before then), in one step.
-- KEYS: the due set (id -> due ms), the items hash (id -> JSON). ARGV: now ms, limit, lease ms.
-- Returns the claimed items' JSON.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
local until_ms = tonumber(ARGV[1]) + tonumber(ARGV[3])
for _, id in ipairs(ids) do
  local item = redis.call('HGET', KEYS[2], id)
  if item then
    redis.call('ZADD', KEYS[1], until_ms, id)
    table.insert(out, item)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
