-- now: Redis's clock in ms (the leases are scored by it, whatever the nodes' clocks say). KEYS: the leases (its slot).
local t = redis.call('TIME')
return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
