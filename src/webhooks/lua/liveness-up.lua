-- up: KEYS live hash, node index. ARGV node, entry, name. Returns 1 when the hash was empty.
local was = redis.call('HLEN', KEYS[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[2])
if was == 0 then return 1 end
return 0
