-- putDevice: a device added or replaced, within the user's cap. KEYS: the user's devices hash. ARGV: device, json, cap.
-- Returns 0 replaced, 1 added (2: added, and the user's first device), -1 limit.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 0
end
local n = redis.call('HLEN', KEYS[1])
if n >= tonumber(ARGV[3]) then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if n == 0 then return 2 end
return 1
