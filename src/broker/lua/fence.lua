-- fence (Redis Cluster): a room's state written last by another primary (a replica was
-- promoted, or its slot moved) may lack writes the old primary acknowledged; so the room
-- starts a new epoch (ARGV[1]; '' keeps the epoch), ARGV[4] past its seq (with a store, so
-- that late archive writes of the old epoch never collide), and this primary becomes its writer. Also when a node saw a seq the state no longer reaches
-- (ARGV[2], '' = none). A room never written in cluster mode just takes its writer.
-- A new epoch is announced on the room's channel (ARGV[3]) as `{"epoch":…,"seq":…}` before
-- any frame of it, so that every node resets the room's members first (RESET_HEAD); the seq it
-- started from stays in the state (`fs`) for a node that learns of the epoch later.
-- KEYS: state. ARGV: epoch, observed seq, channel, gap. Returns {seq, epoch, fs ('' if unknown)} | {-1} (no state).
local myid = redis.call('CLUSTER', 'MYID')
local st = redis.call('HMGET', KEYS[1], 'seq', 'epoch', 'w')
if not st[1] then return {-1} end
local epoch = st[2]
local lost = (st[3] and st[3] ~= myid) or (ARGV[2] ~= '' and tonumber(st[1]) < tonumber(ARGV[2]))
local seq = tonumber(st[1])
if lost and ARGV[1] ~= '' then
  epoch = ARGV[1]
  seq = seq + tonumber(ARGV[4])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', seq, 'fs', seq)
  redis.call('SPUBLISH', ARGV[3], '{"epoch":"' .. epoch .. '","seq":' .. seq .. '}')
end
redis.call('HSET', KEYS[1], 'w', myid)
return {seq, epoch, redis.call('HGET', KEYS[1], 'fs') or ''}
