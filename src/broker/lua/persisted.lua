-- persisted: the store holds every message of the room up to ARGV[1]. KEYS: state.
-- Returns {pw, seq}: when pw reaches seq, the room may leave the archive's due set (DUE_DONE).
local pw = tonumber(redis.call('HGET', KEYS[1], 'pw') or '0')
local upTo = tonumber(ARGV[1])
if upTo > pw then redis.call('HSET', KEYS[1], 'pw', upTo); pw = upTo end
return {pw, tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')}
