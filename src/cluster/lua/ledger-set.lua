-- set: this node's share of a member (its count here), and the member's cluster-wide total
-- moved by the difference. Absolute, so sending it again (a retry, a resync after Redis lost
-- its data) changes nothing. With a limit the new total would pass, nothing is written.
-- KEYS: totals hash (member -> count), infos hash (member -> info), this node's shares hash (member -> count).
-- ARGV: member, share, info ('' keeps the one there), limit (0: none).
-- Returns {total before, total after}; after is -1 when the limit refused it.
local old = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
local share = tonumber(ARGV[2])
local before = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local after = before + share - old
local limit = tonumber(ARGV[4])
if limit > 0 and share > old and after > limit then return {before, -1} end
if share > 0 then redis.call('HSET', KEYS[3], ARGV[1], share) else redis.call('HDEL', KEYS[3], ARGV[1]) end
if after > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], after)
  if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[3]) end
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  after = 0
end
return {before, after}
