-- mark: the marker moves up, never back. KEYS: the user's rooms hash. ARGV: room, seq. Returns the marker, or -1 (not a member).
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return -1 end
if tonumber(ARGV[2]) > tonumber(cur) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return tonumber(ARGV[2])
end
return tonumber(cur)
