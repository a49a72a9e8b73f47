-- since: a consistent snapshot of the room: {seq, epoch, entries after `since`, fs, first}, or
-- {-1} when the room has no state. `fs` is the seq the epoch started from ('' when unknown): no
-- event of the epoch has a seq at or below it, so a `since` below it reads from it.
-- With `upto` (a node that holds the room's later frames itself, redis.ts "head"), only the
-- entries up to it are read, and `first` is the seq of the stream's oldest entry (-1 when empty):
-- the node then knows, without asking again, that a resume from before it cannot be complete.
-- KEYS: state, log. ARGV: since, upto?
local st = redis.call('HMGET', KEYS[1], 'seq', 'epoch', 'fs')
if not st[1] then return {-1} end
local seq = tonumber(st[1])
local since = tonumber(ARGV[1])
local fs = st[3] or ''
if st[3] and tonumber(st[3]) > since then since = tonumber(st[3]) end
if not ARGV[2] then
  if since >= seq then return {seq, st[2], {}, fs} end
  return {seq, st[2], redis.call('XRANGE', KEYS[2], (since + 1) .. '-0', '+'), fs}
end
local first = -1
local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
if oldest then first = tonumber(string.match(oldest[1], '^(%d+)')) end
local upto = math.min(tonumber(ARGV[2]), seq)
if since >= upto or (first >= 0 and first > upto) then return {seq, st[2], {}, fs, first} end
return {seq, st[2], redis.call('XRANGE', KEYS[2], (since + 1) .. '-0', upto .. '-0'), fs, first}
