-- summary: where a room stands for a reader (see Broker.summary): walks the log newest first,
-- counting messages after the marker not sent by the reader (up to cap) and finding the last
-- message, within a budget of entries. Returns {-1} when the room has no state, else
-- {seq, epoch, unread, counted, last or ''}.
-- KEYS: state, log. ARGV: read, needle, cap, budget, chat head, dm head
local st = redis.call('HMGET', KEYS[1], 'seq', 'epoch')
if not st[1] then return {-1} end
local seq = tonumber(st[1])
local read = tonumber(ARGV[1])
local needle = ARGV[2]
local cap = tonumber(ARGV[3])
local budget = tonumber(ARGV[4])
local unread, counted, last = 0, seq + 1, false
local cursor = '+'
local done = false
while not done and budget > 0 do
  local entries = redis.call('XREVRANGE', KEYS[2], cursor, '-', 'COUNT', math.min(budget, 100))
  if #entries == 0 then break end
  budget = budget - #entries
  for i = 1, #entries do
    local id = entries[i][1]
    local s = tonumber(string.sub(id, 1, string.find(id, '-', 1, true) - 1))
    local f = entries[i][2][2]
    local message = string.sub(f, 1, #ARGV[5]) == ARGV[5] or string.sub(f, 1, #ARGV[6]) == ARGV[6]
    if message and not last then last = f end
    if s > read and unread < cap then
      if message and not string.find(f, needle, 1, true) then unread = unread + 1 end
      counted = s
    end
    if (s <= read + 1 or unread >= cap) and last then
      done = true
      break
    end
    cursor = '(' .. id
  end
end
return {seq, st[2], unread, counted, last or ''}
