-- change: a channel's subscription count, cluster-wide and this node's share, moved by ARGV[2].
-- KEYS: the totals hash, this node's hash. ARGV: channel, delta. Returns the channel's new total.
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
local m = redis.call('HINCRBY', KEYS[2], ARGV[1], ARGV[2])
if m <= 0 then redis.call('HDEL', KEYS[2], ARGV[1]) end
if n < 0 then return 0 end
return n
