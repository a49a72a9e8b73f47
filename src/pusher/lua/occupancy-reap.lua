-- reap: takes a (dead, or earlier) node's share out of the totals.
-- KEYS: the totals hash, that node's hash. Returns the channels it left vacant.
local gone = {}
local per = redis.call('HGETALL', KEYS[2])
for i = 1, #per, 2 do
  local n = redis.call('HINCRBY', KEYS[1], per[i], -tonumber(per[i + 1]))
  if n <= 0 then
    redis.call('HDEL', KEYS[1], per[i])
    table.insert(gone, per[i])
  end
end
redis.call('DEL', KEYS[2])
return gone
