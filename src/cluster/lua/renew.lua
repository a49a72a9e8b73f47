-- renew: this node's lease, until Redis's now (its own clock, so nodes' clocks may disagree) + ttl; returns now.
-- KEYS: the leases (zset node -> until ms). ARGV: node, ttl ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return now
