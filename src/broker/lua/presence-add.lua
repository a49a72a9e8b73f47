-- presence add/remove, counted by connection, reported by user. Only the room's keys (one
-- slot in a Redis Cluster); the node's index of its entries is a separate command.
-- KEYS: conns set, counts hash, names hash.
-- add ARGV: conn, user, name -> 1 when the user's first connection in the room
-- remove ARGV: conn, user -> 1 when it was the user's last
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
return redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 and 1 or 0
