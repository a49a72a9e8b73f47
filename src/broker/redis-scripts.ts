import type Redis from 'ioredis'

/**
 * Lua scripts of the Redis engine. Each runs atomically on the Redis server, so one call is
 * one consistent step however many nodes send at once.
 *
 * Keys of a room (P = REDIS_PREFIX): `P{room}:state` hash {seq, epoch}; `P{room}:log` stream
 * whose entry ids are `<seq>-0` and whose field `f` is the encoded chat frame.
 */

/**
 * append: the room's next seq, the event's frame (head .. seq .. tail) added to the capped stream and
 * PUBLISHed to the room's channel, in one step; with a dedupe key, a retry returns the first
 * result instead. Returns {1, seq} | {0, seq, id} (duplicate) | {-1} (room state missing:
 * the caller initialises it from its origin and calls again).
 * With persistence, the room is also marked in the set of rooms whose stream is ahead of the
 * store (KEYS[4]; '' = no persistence), for the archive repair to visit.
 * The published payload is the frame, or `<conn>\n<frame>` when a connection must not get it.
 * The room's state and stream expire after ARGV[9] ms without an append (0 = never).
 * KEYS: state, log, dedupe ('' = none), unpersisted ('' = none). ARGV: head, tail, maxlen, channel, msgId, dedupeTtlMs, room, except ('' = none), ttlMs
 */
export const APPEND = `
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
if KEYS[3] ~= '' then
  local hit = redis.call('GET', KEYS[3])
  if hit then
    local sp = string.find(hit, ' ', 1, true)
    return {0, tonumber(string.sub(hit, 1, sp - 1)), string.sub(hit, sp + 1)}
  end
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local frame = ARGV[1] .. seq .. ARGV[2]
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'f', frame)
if ARGV[8] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[8] .. '\\n' .. frame) else redis.call('PUBLISH', ARGV[4], frame) end
if KEYS[3] ~= '' then redis.call('SET', KEYS[3], seq .. ' ' .. ARGV[5], 'PX', ARGV[6]) end
if KEYS[4] ~= '' then redis.call('SADD', KEYS[4], ARGV[7]) end
if ARGV[9] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[9])
  redis.call('PEXPIRE', KEYS[2], ARGV[9])
end
return {1, seq}
`

/** init: sets a room's state when it has none. KEYS: state. ARGV: seq, epoch, ttlMs (0 = never). Returns {seq, epoch}. */
export const INIT = `
redis.call('HSETNX', KEYS[1], 'seq', ARGV[1])
redis.call('HSETNX', KEYS[1], 'epoch', ARGV[2])
if ARGV[3] ~= '0' and redis.call('PTTL', KEYS[1]) == -1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return redis.call('HMGET', KEYS[1], 'seq', 'epoch')
`

/**
 * since: a consistent snapshot of the room: {seq, epoch, entries after `since`}, or {-1} when
 * the room has no state. KEYS: state, log. ARGV: since
 */
export const SINCE = `
local st = redis.call('HMGET', KEYS[1], 'seq', 'epoch')
if not st[1] then return {-1} end
local seq = tonumber(st[1])
local since = tonumber(ARGV[1])
if since >= seq then return {seq, st[2], {}} end
return {seq, st[2], redis.call('XRANGE', KEYS[2], (since + 1) .. '-0', '+')}
`

/**
 * summary: where a room stands for a reader (see Broker.summary): walks the log newest first,
 * counting messages after the marker not sent by the reader (up to cap) and finding the last
 * message, within a budget of entries. Returns {-1} when the room has no state, else
 * {seq, epoch, unread, counted, last or ''}.
 * KEYS: state, log. ARGV: read, needle, cap, budget, chat head, dm head
 */
export const SUMMARY = `
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
`

/**
 * presence add/remove, counted by connection, reported by user.
 * KEYS: conns set, counts hash, names hash, node index set.
 * add ARGV: conn, user, name, entry -> 1 when the user's first connection in the room
 * remove ARGV: conn, user, entry -> 1 when it was the user's last
 */
export const PRESENCE_ADD = `
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SADD', KEYS[4], ARGV[4])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
return redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 and 1 or 0
`

export const PRESENCE_REMOVE = `
redis.call('SREM', KEYS[4], ARGV[3])
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) > 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
return 1
`

/**
 * persisted: the store holds every message of the room up to ARGV[2]; when that reaches the
 * room's seq the room leaves the set of rooms to repair. KEYS: state, unpersisted. ARGV: room, upTo
 */
export const PERSISTED = `
local pw = tonumber(redis.call('HGET', KEYS[1], 'pw') or '0')
local upTo = tonumber(ARGV[2])
if upTo > pw then redis.call('HSET', KEYS[1], 'pw', upTo); pw = upTo end
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if pw >= seq then redis.call('SREM', KEYS[2], ARGV[1]) end
return pw
`

/** unlock: deletes a lock only if this node still holds it. KEYS: lock. ARGV: owner */
export const UNLOCK = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`

/** The Redis client with the scripts above as commands (EVALSHA, falling back to EVAL). */
export type Scripted = Redis & {
  chatAppend(state: string, log: string, dedupe: string, unpersisted: string, head: string, tail: string, maxlen: number, channel: string, msgId: string, ttl: number, room: string, except: string, ttlMs: number): Promise<[number, number?, string?]>
  chatSummary(state: string, log: string, read: number, needle: string, cap: number, budget: number, chatHead: string, dmHead: string): Promise<[number, string, number, number, string] | [-1]>
  chatPersisted(state: string, unpersisted: string, room: string, upTo: number): Promise<number>
  unlock(lock: string, owner: string): Promise<number>
  chatInit(state: string, seq: number, epoch: string, ttlMs: number): Promise<[string, string]>
  chatSince(state: string, log: string, since: number): Promise<[number, string, [string, string[]][]] | [-1]>
  presenceAdd(conns: string, counts: string, names: string, index: string, conn: string, user: string, name: string, entry: string): Promise<number>
  presenceRemove(conns: string, counts: string, names: string, index: string, conn: string, user: string, entry: string): Promise<number>
}

export function withScripts(redis: Redis): Scripted {
  redis.defineCommand('chatAppend', { numberOfKeys: 4, lua: APPEND })
  redis.defineCommand('chatSummary', { numberOfKeys: 2, lua: SUMMARY })
  redis.defineCommand('chatPersisted', { numberOfKeys: 2, lua: PERSISTED })
  redis.defineCommand('unlock', { numberOfKeys: 1, lua: UNLOCK })
  redis.defineCommand('chatInit', { numberOfKeys: 1, lua: INIT })
  redis.defineCommand('chatSince', { numberOfKeys: 2, lua: SINCE })
  redis.defineCommand('presenceAdd', { numberOfKeys: 4, lua: PRESENCE_ADD })
  redis.defineCommand('presenceRemove', { numberOfKeys: 4, lua: PRESENCE_REMOVE })
  return redis as Scripted
}

/** Every key and channel, under one prefix. A room's keys share a hash tag (`{room}`). */
export function redisKeys(P: string) {
  return {
    state: (room: string) => `${P}{${room}}:state`,
    log: (room: string) => `${P}{${room}}:log`,
    dedupe: (k: string) => `${P}dedupe:${k}`,
    channel: (topic: string) => `${P}ch:${topic}`,
    pConns: (room: string) => `${P}{${room}}:pconns`,
    pCounts: (room: string) => `${P}{${room}}:pcounts`,
    pNames: (room: string) => `${P}{${room}}:pnames`,
    nodeIndex: (node: string) => `${P}node:${node}:presence`,
    nodeAlive: (node: string) => `${P}node:${node}:alive`,
    nodes: `${P}nodes`,
    unpersisted: `${P}unpersisted`,
    repairLock: `${P}repair-lock`,
  }
}

export type RedisKeys = ReturnType<typeof redisKeys>
