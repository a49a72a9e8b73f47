-- page: members of one key with their totals and infos, one HSCAN step from a cursor.
-- KEYS: totals hash, infos hash. ARGV: cursor ('0' to begin), count (a hint, as HSCAN's).
-- Returns {next cursor ('0' at the end), member, total, info, ...}.
local r = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local out = {r[1]}
local kv = r[2]
for i = 1, #kv, 2 do
  table.insert(out, kv[i])
  table.insert(out, kv[i + 1])
  table.insert(out, redis.call('HGET', KEYS[2], kv[i]) or '')
end
return out
