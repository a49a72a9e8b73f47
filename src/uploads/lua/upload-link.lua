-- link: records a message's reference to an upload, if the upload still exists. KEYS: the upload's hash, its refs set. ARGV: the ref (room, newline, msg id). Returns 1, or 0 when the upload is gone.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SADD', KEYS[2], ARGV[1])
return 1
