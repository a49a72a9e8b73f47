-- acquire: one more connection of a user unless the cluster (nodes whose lease holds) has `limit` already.
-- KEYS: the cluster's leases, this node's hash. ARGV: user, limit, prefix of nodes' hashes, ttl.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local total = 0
for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  total = total + tonumber(redis.call('HGET', ARGV[3] .. n, ARGV[1]) or '0')
end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
