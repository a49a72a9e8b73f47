-- release: one connection of a user fewer in this node's hash. KEYS: the node's hash. ARGV: user.
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
