-- presence remove (see presence-add.lua). KEYS: conns set, counts hash, names hash. ARGV: conn, user.
-- Returns 1 when that was the user's last connection in the room.
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) > 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
return 1
