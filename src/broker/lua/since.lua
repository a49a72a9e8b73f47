-- since: a consistent snapshot of the room: {seq, epoch, entries after `since`, fs}, or {-1} when
-- the room has no state. `fs` is the seq the epoch started from ('' when unknown): no event of
-- the epoch has a seq at or below it, so a `since` below it reads from it.
-- KEYS: state, log. ARGV: since
local st = redis.call('HMGET', KEYS[1], 'seq', 'epoch', 'fs')
if not st[1] then return {-1} end
local seq = tonumber(st[1])
local since = tonumber(ARGV[1])
local fs = st[3] or ''
if st[3] and tonumber(st[3]) > since then since = tonumber(st[3]) end
if since >= seq then return {seq, st[2], {}, fs} end
return {seq, st[2], redis.call('XRANGE', KEYS[2], (since + 1) .. '-0', '+'), fs}
