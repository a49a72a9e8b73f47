-- claim: takes up to ARGV[2] orphans older than ARGV[1] out of the orphans sorted set, so each goes to one node. KEYS: the orphans sorted set. ARGV: before (epoch ms), limit. Returns the ids.
local ids = redis.call('ZRANGE', KEYS[1], '-inf', '(' .. ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
if #ids > 0 then redis.call('ZREM', KEYS[1], unpack(ids)) end
return ids
