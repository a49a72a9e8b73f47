-- window-take: ends a room's presence window and returns its changes, oldest first.
-- KEYS: the window's changes (list), its opener's mark (string). ARGV: the opener's token, or ''
-- for whatever is held. The token of a window another hold opened since takes nothing; a mark
-- that expired (its opener was late) does not stop its opener.
local mark = redis.call('GET', KEYS[2])
if ARGV[1] ~= '' and mark and mark ~= ARGV[1] then return {} end
local changes = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1], KEYS[2])
return changes
