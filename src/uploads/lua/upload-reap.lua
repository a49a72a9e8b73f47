-- reap: removes an upload's metadata when no message refers to it. KEYS: the upload's hash, its refs set. ARGV: none. Returns 1 when this call removed it, else 0.
if redis.call('SCARD', KEYS[2]) > 0 then return 0 end
return redis.call('DEL', KEYS[1])
