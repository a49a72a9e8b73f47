-- down (also the reaper's): KEYS live hash, node index. ARGV node, entry. Returns 1 when this emptied the hash.
redis.call('SREM', KEYS[2], ARGV[2])
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HLEN', KEYS[1]) == 0 then return 1 end
return 0
