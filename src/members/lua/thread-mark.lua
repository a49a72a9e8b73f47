-- thread-mark: a user's marker in a thread moves up, never back. KEYS: the user's thread markers
-- hash. ARGV: thread key, seq. Returns the marker.
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > cur then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return tonumber(ARGV[2])
end
return cur
