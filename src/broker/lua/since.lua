-- since: a consistent snapshot of the room: {seq, epoch, entries after `since`}, or {-1} when
-- the room has no state. KEYS: state, log. ARGV: since
local st = redis.call('HMGET', KEYS[1], 'seq', 'epoch')
if not st[1] then return {-1} end
local seq = tonumber(st[1])
local since = tonumber(ARGV[1])
if since >= seq then return {seq, st[2], {}} end
return {seq, st[2], redis.call('XRANGE', KEYS[2], (since + 1) .. '-0', '+')}
