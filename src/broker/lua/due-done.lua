-- due done: a room leaves the archive's due set only once every node's lease on it has run
-- out (a node renews its lease before it appends), so a send racing the repair keeps it due.
-- KEYS: due zset. ARGV: room, now (ms)
local until = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')
if until < tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
