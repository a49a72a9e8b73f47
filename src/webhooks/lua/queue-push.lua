-- push: XADD each event with an exact MAXLEN, so the stream holds at most `bound` pending
-- events cluster-wide; what the bound trimmed (the oldest) is counted by whoever trimmed it.
-- KEYS: stream. ARGV: bound, then (id, at, json) per event. Returns {dropped, length}.
local before = redis.call('XLEN', KEYS[1])
local n = 0
for i = 2, #ARGV, 3 do
  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'i', ARGV[i], 'a', ARGV[i + 1], 'e', ARGV[i + 2])
  n = n + 1
end
local after = redis.call('XLEN', KEYS[1])
return {before + n - after, after}
