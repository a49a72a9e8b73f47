-- add: the membership on the user's side, unless it exists or the user holds `cap` already.
-- KEYS: the user's rooms hash. ARGV: room, read, cap. Returns {1, read} added, {0, read} exists, {-1} limit.
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then return {0, tonumber(cur)} end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return {-1} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {1, tonumber(ARGV[2])}
