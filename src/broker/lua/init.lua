-- init: sets a room's state when it has none. KEYS: state. ARGV: seq, epoch, ttlMs (0 = never). Returns {seq, epoch}.
redis.call('HSETNX', KEYS[1], 'seq', ARGV[1])
redis.call('HSETNX', KEYS[1], 'epoch', ARGV[2])
if ARGV[3] ~= '0' and redis.call('PTTL', KEYS[1]) == -1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return redis.call('HMGET', KEYS[1], 'seq', 'epoch')
