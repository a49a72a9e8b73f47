import type Redis from 'ioredis'

/**
 * Lua scripts of the Redis engine. Each runs atomically on the Redis server, so one call is
 * one consistent step however many nodes send at once.
 *
 * Keys of a room (P = REDIS_PREFIX): `P{room}:state` hash {seq, epoch}; `P{room}:log` stream
 * whose entry ids are `<seq>-0` and whose field `f` is the encoded chat frame.
 */

/**
 * append: one event of the room's log, in one step: checked against the room's message state,
 * given the room's next seq, its frame (head .. seq .. tail) added to the capped stream and
 * PUBLISHed to the room's channel, the message state changed; with a dedupe key, a retry
 * returns the first result instead.
 * Returns {1, seq} | {0, seq, id} (duplicate) | {2, seq} (a change that changes nothing: nothing
 * appended) | {-3, code, message} (refused by the message state: nothing changed) | {-1} (room
 * state missing: the caller initialises it from its origin and calls again).
 * The published payload is the frame, or `<conn>\n<frame>` when a connection must not get it.
 * The room's keys expire after ARGV[8] ms without an append (0 = never).
 *
 * Message state (see lifecycle.ts, the same rules in JavaScript): KEYS[3] is a hash id -> small
 * JSON {s seq, a author, d deleted, e edited_at, b body, j data as JSON text, r reactions};
 * KEYS[4] lists message ids oldest first: past ARGV[11] entries the oldest leave the hash (a
 * change to one is then checked against the store's copy, which the caller puts back).
 * ARGV[10] is the event's command JSON {t, id, by, msg?, reply_to?, reaction?, op?, body?, dj?, ts, mod?, pm, pu,
 * act?, tg?, um?, until?}. Moderation events keep the room's standing in the same hash:
 * `~mute:<user>` -> "<until ms> <until ISO>", `~ban:<user>` -> 1; a later event of a banned
 * user, or chat of a muted one, is refused here, whichever node it came through.
 *
 * KEYS: state, log, msgs, msg order, and the dedupe key only when there is one (every key in
 * the room's slot: no placeholder keys, which a Redis Cluster would refuse as another slot).
 * ARGV: head, tail, maxlen, channel, msgId, dedupeTtlMs, except ('' = none), ttlMs, room, command, keep
 */
export const APPEND = `
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
if KEYS[5] then
  local hit = redis.call('GET', KEYS[5])
  if hit then
    local sp = string.find(hit, ' ', 1, true)
    return {0, tonumber(string.sub(hit, 1, sp - 1)), string.sub(hit, sp + 1)}
  end
end
local cmd = cjson.decode(ARGV[10])
local lcKey, lcVal, lcNew = false, false, false
local function nf(what, id) return {-3, 'not_found', what .. ': no message ' .. id .. ' in ' .. ARGV[9]} end
if cmd.t ~= 'moderation' and cmd.by ~= 'server' then
  if redis.call('HEXISTS', KEYS[3], '~ban:' .. cmd.by) == 1 then return {-3, 'forbidden', 'room: banned from ' .. ARGV[9]} end
  if cmd.t == 'chat' then
    local mu = redis.call('HGET', KEYS[3], '~mute:' .. cmd.by)
    if mu then
      local sp = string.find(mu, ' ', 1, true)
      local now = redis.call('TIME')
      if tonumber(string.sub(mu, 1, sp - 1)) > tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) then
        return {-3, 'forbidden', 'room: muted in ' .. ARGV[9] .. ' until ' .. string.sub(mu, sp + 1)}
      end
    end
  end
end
if cmd.t == 'moderation' then
  if cmd.act == 'mute' then redis.call('HSET', KEYS[3], '~mute:' .. cmd.tg, cmd.um .. ' ' .. cmd['until'])
  elseif cmd.act == 'unmute' then redis.call('HDEL', KEYS[3], '~mute:' .. cmd.tg)
  elseif cmd.act == 'ban' then redis.call('HSET', KEYS[3], '~ban:' .. cmd.tg, '1')
  elseif cmd.act == 'unban' then redis.call('HDEL', KEYS[3], '~ban:' .. cmd.tg) end
elseif cmd.t == 'chat' or cmd.t == 'dm' then
  if cmd.reply_to then
    local p = redis.call('HGET', KEYS[3], cmd.reply_to)
    if not p or cjson.decode(p).d then return nf('reply_to', cmd.reply_to) end
  end
  lcKey, lcNew = cmd.id, true
elseif cmd.t == 'edit' or cmd.t == 'delete' or cmd.t == 'react' then
  local raw = redis.call('HGET', KEYS[3], cmd.msg)
  if not raw then return nf('msg', cmd.msg) end
  local m = cjson.decode(raw)
  if m.d then return nf('msg', cmd.msg) end
  if m.r == nil or type(m.r) ~= 'table' then m.r = {} end
  if cmd.t == 'edit' then
    if m.a ~= cmd.by and not (cmd.mod and cmd.by == 'server') then return {-3, 'forbidden', 'msg: only its author may edit ' .. cmd.msg} end
    m.b = cmd.body
    m.j = cmd.dj
    m.e = cmd.ts
  elseif cmd.t == 'delete' then
    if m.a ~= cmd.by and not cmd.mod then return {-3, 'forbidden', 'msg: only its author or a moderator of ' .. ARGV[9] .. ' may delete ' .. cmd.msg} end
    m.d = true
    m.b = nil
    m.j = nil
    m.r = {}
  else
    local users = m.r[cmd.reaction]
    local at = false
    if users then for i = 1, #users do if users[i] == cmd.by then at = i end end end
    if cmd.op == 'remove' then
      if not at then return {2, tonumber(redis.call('HGET', KEYS[1], 'seq'))} end
      table.remove(users, at)
      if #users == 0 then m.r[cmd.reaction] = nil end
    else
      if at then return {2, tonumber(redis.call('HGET', KEYS[1], 'seq'))} end
      local distinct, mine = 0, 0
      for _, us in pairs(m.r) do
        distinct = distinct + 1
        for i = 1, #us do if us[i] == cmd.by then mine = mine + 1 end end
      end
      if not users and distinct >= cmd.pm then return {-3, 'limit', 'reaction: ' .. cmd.msg .. ' already has ' .. cmd.pm .. ' different reactions'} end
      if mine >= cmd.pu then return {-3, 'limit', 'reaction: at most ' .. cmd.pu .. ' reactions per user on one message'} end
      if users then table.insert(users, cmd.by) else m.r[cmd.reaction] = {cmd.by} end
    end
  end
  if next(m.r) == nil then m.r = nil end
  lcKey, lcVal = cmd.msg, cjson.encode(m)
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local frame = ARGV[1] .. seq .. ARGV[2]
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'f', frame)
if ARGV[7] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[7] .. '\\n' .. frame) else redis.call('PUBLISH', ARGV[4], frame) end
if KEYS[5] then redis.call('SET', KEYS[5], seq .. ' ' .. ARGV[5], 'PX', ARGV[6]) end
if lcNew then
  redis.call('HSET', KEYS[3], lcKey, cjson.encode({s = seq, a = cmd.by}))
  redis.call('RPUSH', KEYS[4], lcKey)
  if redis.call('LLEN', KEYS[4]) > tonumber(ARGV[11]) then redis.call('HDEL', KEYS[3], redis.call('LPOP', KEYS[4])) end
elseif lcKey then
  redis.call('HSET', KEYS[3], lcKey, lcVal)
end
if ARGV[8] ~= '0' then
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[8]) end
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
 * presence add/remove, counted by connection, reported by user. Only the room's keys (one
 * slot in a Redis Cluster); the node's index of its entries is a separate command.
 * KEYS: conns set, counts hash, names hash.
 * add ARGV: conn, user, name -> 1 when the user's first connection in the room
 * remove ARGV: conn, user -> 1 when it was the user's last
 */
export const PRESENCE_ADD = `
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
return redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 and 1 or 0
`

export const PRESENCE_REMOVE = `
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) > 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
return 1
`

/**
 * persisted: the store holds every message of the room up to ARGV[1]. KEYS: state.
 * Returns {pw, seq}: when pw reaches seq, the room may leave the archive's due set (DUE_DONE).
 */
export const PERSISTED = `
local pw = tonumber(redis.call('HGET', KEYS[1], 'pw') or '0')
local upTo = tonumber(ARGV[1])
if upTo > pw then redis.call('HSET', KEYS[1], 'pw', upTo); pw = upTo end
return {pw, tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')}
`

/**
 * due done: a room leaves the archive's due set only once every node's lease on it has run
 * out (a node renews its lease before it appends), so a send racing the repair keeps it due.
 * KEYS: due zset. ARGV: room, now (ms)
 */
export const DUE_DONE = `
local until = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')
if until < tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
`

/**
 * fence (Redis Cluster): a room's state written last by another primary (a replica was
 * promoted, or its slot moved) may lack writes the old primary acknowledged; so the room
 * starts a new epoch (ARGV[1]; '' keeps the epoch), ARGV[4] past its seq (with a store, so
 * that late archive writes of the old epoch never collide), and this primary becomes its writer. Also when a node saw a seq the state no longer reaches
 * (ARGV[2], '' = none). A room never written in cluster mode just takes its writer.
 * A new epoch is announced on the room's channel (ARGV[3]) as `{"epoch":…,"seq":…}` before
 * any frame of it, so that every node resets the room's members first (RESET_HEAD); the seq it
 * started from stays in the state (`fs`) for a node that learns of the epoch later.
 * KEYS: state. ARGV: epoch, observed seq, channel, gap. Returns {seq, epoch} | {-1} (no state).
 */
export const FENCE = `
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
return {seq, epoch}
`

/**
 * The cluster form of a script that writes a room (KEYS[1] = its state): it first checks that
 * this primary is the room's writer ({-2} else: the node fences and calls again), and
 * publishes on the room's shard channel. The scripts' text stays one for both modes.
 */
/** How a FENCE's new epoch starts on the room's channel (no frame starts so). */
export const RESET_HEAD = '{"epoch":'

const FENCED = `if redis.call('HGET', KEYS[1], 'w') ~= redis.call('CLUSTER', 'MYID') then return {-2} end\n`
const sharded = (lua: string) => FENCED + lua.replaceAll("redis.call('PUBLISH'", "redis.call('SPUBLISH'")

/** unlock: deletes a lock only if this node still holds it. KEYS: lock. ARGV: owner */
export const UNLOCK = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`

/** The Redis client with the scripts above as commands (EVALSHA, falling back to EVAL). */
export type Scripted = Redis & {
  chatSummary(state: string, log: string, read: number, needle: string, cap: number, budget: number, chatHead: string, dmHead: string): Promise<[number, string, number, number, string] | [-1]>
  /** `numKeys` 5 with a dedupe key, else 4 (and no dedupe argument). */
  chatAppend(numKeys: 4 | 5, ...keysAndArgs: (string | number)[]): Promise<[number, (number | string)?, string?]>
  chatPersisted(state: string, upTo: number): Promise<[number, number]>
  dueDone(due: string, room: string, now: number): Promise<number>
  chatFence(state: string, epoch: string, observed: string, channel: string, gap: number): Promise<[number, string] | [-1]>
  unlock(lock: string, owner: string): Promise<number>
  chatInit(state: string, seq: number, epoch: string, ttlMs: number): Promise<[string, string]>
  chatSince(state: string, log: string, since: number): Promise<[number, string, [string, string[]][]] | [-1]>
  presenceAdd(conns: string, counts: string, names: string, conn: string, user: string, name: string): Promise<number>
  presenceRemove(conns: string, counts: string, names: string, conn: string, user: string): Promise<number>
}

/** `cluster`: the client is a Redis Cluster's (sharded publish, writes fenced per primary). */
export function withScripts(redis: Redis, cluster = false): Scripted {
  redis.defineCommand('chatAppend', { lua: cluster ? sharded(APPEND) : APPEND })
  redis.defineCommand('chatSummary', { numberOfKeys: 2, lua: SUMMARY })
  redis.defineCommand('chatPersisted', { numberOfKeys: 1, lua: PERSISTED })
  redis.defineCommand('dueDone', { numberOfKeys: 1, lua: DUE_DONE })
  redis.defineCommand('chatFence', { numberOfKeys: 1, lua: FENCE })
  redis.defineCommand('unlock', { numberOfKeys: 1, lua: UNLOCK })
  redis.defineCommand('chatInit', { numberOfKeys: 1, lua: INIT })
  redis.defineCommand('chatSince', { numberOfKeys: 2, lua: SINCE })
  redis.defineCommand('presenceAdd', { numberOfKeys: 3, lua: PRESENCE_ADD })
  redis.defineCommand('presenceRemove', { numberOfKeys: 3, lua: PRESENCE_REMOVE })
  return redis as Scripted
}

/**
 * Every key and channel, under one prefix. Whatever belongs to one room (its keys, its retry
 * keys, its channel) shares the room's hash tag `{room}`, so it lives in one slot of a Redis
 * Cluster; a user's channel has the tag of the user.
 */
export function redisKeys(P: string) {
  return {
    state: (room: string) => `${P}{${room}}:state`,
    log: (room: string) => `${P}{${room}}:log`,
    /** Retry keys belong to their room: in its slot, read by its APPEND script. */
    dedupe: (k: string, room: string) => `${P}{${room}}:dedupe:${k}`,
    /** Topic `r:<room>` -> `P{<room>}:ch:r`, `u:<user>` -> `P{<user>}:ch:u`. */
    channel: (topic: string) => {
      const i = topic.indexOf(':')
      return `${P}{${topic.slice(i + 1)}}:ch:${topic.slice(0, i)}`
    },
    topicOf: (channel: string) => {
      const i = channel.lastIndexOf('}:ch:')
      return `${channel.slice(i + 5)}:${channel.slice(P.length + 1, i)}`
    },
    /** hash: message id -> its current state (lifecycle); list: those ids, oldest first. */
    msgs: (room: string) => `${P}{${room}}:msgs`,
    msgOrder: (room: string) => `${P}{${room}}:msgorder`,
    pConns: (room: string) => `${P}{${room}}:pconns`,
    pCounts: (room: string) => `${P}{${room}}:pcounts`,
    pNames: (room: string) => `${P}{${room}}:pnames`,
    nodeIndex: (node: string) => `${P}node:${node}:presence`,
    nodeAlive: (node: string) => `${P}node:${node}:alive`,
    nodes: `${P}nodes`,
    /** zset: room -> until when a node's lease keeps it due for the archive repair. */
    unpersisted: `${P}archive-due`,
    repairLock: `${P}repair-lock`,
  }
}

export type RedisKeys = ReturnType<typeof redisKeys>
