-- fenced (Redis Cluster): prepended to a script that writes a room; refuses ({-2}) unless this primary is
-- the room's writer (the node fences, see fence.lua, and calls again). KEYS[1]: the room's state.
if redis.call('HGET', KEYS[1], 'w') ~= redis.call('CLUSTER', 'MYID') then return {-2} end
