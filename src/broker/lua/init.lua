-- init: sets a room's state when it has none. KEYS: state. ARGV: seq, epoch, ttlMs (0 = never).
-- The seq the epoch starts from stays as `fs`: a node that learns of the epoch late hands its
-- members the epoch's frames from there (its members never see a seq of it skipped).
-- Returns {seq, epoch, fs}.
if redis.call('HSETNX', KEYS[1], 'seq', ARGV[1]) == 1 then redis.call('HSET', KEYS[1], 'fs', ARGV[1]) end
redis.call('HSETNX', KEYS[1], 'epoch', ARGV[2])
if ARGV[3] ~= '0' and redis.call('PTTL', KEYS[1]) == -1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return redis.call('HMGET', KEYS[1], 'seq', 'epoch', 'fs')
