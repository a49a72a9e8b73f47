-- append: events of one room's log, one after the other, each as if alone: checked against the
-- room's message state, given the room's next seq, its frame (head .. seq .. tail) added to the
-- capped stream and PUBLISHed to the room's channel, the message state changed; with a retry key
-- (`retryField`, '' = none), a retry returns the first result instead.
-- A call carries 1 or more events (a node sends a room's appends that wait together in one call:
-- calling a script with its arguments is about half of a lone chat's Redis CPU, issue 34).
-- Returns a list with one result per event, in order: {1, seq} | {0, seq, id} (duplicate) |
-- {2, seq} (a change that changes nothing: nothing appended) | {-3, code, message} (refused by
-- the message state: nothing changed) | {-1} (room state missing: the caller initialises it from
-- its origin and calls again; every event after it gets {-1} too) | {-4, error} (Redis refused
-- a command of this event: it and the events after it are not appended; those before it are).
-- The published payload is the frame, or `<conn>\n<frame>` when a connection must not get it.
-- The room's keys expire `ttlMs` ms (0 = never) to 1.25 * `ttlMs` ms after the room's last append:
-- each refresh sets 1.25 * `ttlMs`, and a plain chat or dm refreshes only once the last refresh is
-- a quarter of it old (the state's `tr`: when that is, Redis's clock in ms), so that a busy room
-- pays five PEXPIREs once per quarter TTL, not per message. Every other event, a room's first
-- message (its stream and message list are new) and a state without `tr` (new, back after it
-- expired, or written before `tr` replaced `tx`) refresh at once.
--
-- Message state (see message-rules.ts, the same rules in JavaScript): KEYS[3] is a hash id -> small
-- JSON {s seq, a author, d deleted, e edited_at, b body, j data as JSON text, r reactions, p poll, pv preview as JSON text,
-- t thread {c count, l last_ts, p participants [{id, name}]}};
-- KEYS[4] lists message ids oldest first: past `keep` + TRIM entries the oldest leave the hash
-- down to `keep` (a change to one is then checked against the store's copy, which the caller
-- puts back).
-- `command` is the event's command JSON {t, id, by, bn (a reply's author name)?, msg?, reply_to?, reaction?, op?, body?, dj?, ts, mod?, pm, pu,
-- act?, tg?, um?, until?}, or for a plain chat or dm (no reply_to: the common case, nothing in it
-- to decode) `c<author id>` or `d<author id>`; `authorJson` is the author's id as a JSON string. Moderation events keep the room's standing in the same hash:
-- `~mute:<user>` -> "<until ms> <until ISO>", `~ban:<user>` -> 1; a later event of a banned
-- user, or chat of a muted one, is refused here, whichever node it came through.
--
-- Link previews (preview, the server only: cmd.by == 'server'): the message's state keeps cmd.pv
-- (the preview as JSON text) until a delete drops it.
--
-- Pins (pinned / unpinned, moderators only: cmd.mod): KEYS[5] is a hash msg id -> JSON {s the
-- message's seq, b {id, name} who pinned, t ts}, at most cmd.pc entries (else `limit`); pinning
-- a pinned message or unpinning one that is not is a no-op; a delete removes its message's pin.
--
-- Polls (v4): a chat's command may carry `poll` {n options, m multiple, an anonymous, z closes_at ms}; its
-- state is the message's `p` {n, m, an, z, c closed, t tallies, v {user -> options}}. A vote (cmd.o its
-- options, cmd.an anonymous) replaces the user's vote in `v` and moves `t` in the same step; a vote or a
-- close puts the tallies in the frame where `frameTail` holds `,"tallies":null` (server-frames TALLIES_SLOT)
-- and returns them as JSON: {1, seq, tallies}. Slow mode: the state's `slow` (seconds, set by a
-- `settings` event, cmd.sl) and each member's last chat `~last:<user>` (ms) in the msgs hash; a
-- chat too soon is {-3, 'slow_mode', message, retry_after}. Moderators (cmd.mod) and the server are exempt.
--
-- Retries: a retry key is a field of the msgs hash, `~d:<key>` -> "<seq> <msg id> <ms>", read in the
-- same HMGET as the author's standing and written in the same HSET as the new message's state; its
-- order list entry is "<msg id> ~d:<key>", so that it leaves the hash with its message. It answers
-- a retry for `windowMs` ms while its message is among the room's kept ones (`keep`). A key of its
-- own with a PX per message cost Redis about a fifth of a plain chat's CPU (issue 34).
--
-- KEYS: state, log, msgs, msg order, pins (every key in the room's slot: no placeholder keys,
-- which a Redis Cluster would refuse as another slot).
-- ARGV: maxlen, channel, windowMs (a retry key's window), ttlMs, room, keep (shared by the call's
-- events), then 7 per event: head, frameTail, msgId, except ('' = none), command, authorJson,
-- retryField ('' = none). The text above names them so.
local TRIM = 64
-- Redis's clock in ms, as text (seconds and the first 3 digits of the 6 microsecond digits: no
-- sprintf) and as a number, read once per call (the events of a call share it).
local clock, clockText = false, false
local function nowText()
  if not clockText then
    local t = redis.call('TIME')
    clockText = t[1] .. string.sub('00000' .. t[2], -6, -4)
  end
  return clockText
end
local function nowMs()
  if not clock then clock = tonumber(nowText()) end
  return clock
end
-- The room's state, read once per call: its seq (written back once, at the end), when the next
-- TTL refresh is due (`tr`) and its slow mode; the events of the call keep them here.
local st = redis.call('HMGET', KEYS[1], 'seq', 'tr', 'slow')
local seq0 = st[1] and tonumber(st[1])
local seq, due = seq0, st[2]
local slow = st[3] and tonumber(st[3]) or 0
-- The arguments every event of the call shares.
local maxlen, channel, windowMs, ttlMs, room, keep = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
-- The functions an event uses are made once per call, not per event. (Its own arguments are
-- parameters: a table of them cost about a third more script time per lone chat, measured.)
local function unchanged() return {2, seq} end
-- A message's state by its id. The hash also holds the room's standings and retry keys (fields
-- that start with `~`, which no message id does): an id naming one of them names no message.
local function stateOf(id)
  if string.sub(id, 1, 1) == '~' then return false end
  return redis.call('HGET', KEYS[3], id)
end
local function nf(what, id) return {-3, 'not_found', what .. ': no message ' .. id .. ' in ' .. room} end
local function one(head, frameTail, msgId, except, command, authorJson, retryField)
  local tallies = false
  local kind = string.sub(command, 1, 1)
  local plain = kind ~= '{'
  local cmd
  if plain then cmd = {t = kind == 'c' and 'chat' or 'dm', by = string.sub(command, 2)} else cmd = cjson.decode(command) end
  local retry = retryField ~= '' and retryField
  local standing = cmd.t ~= 'moderation' and cmd.by ~= 'server'
  local bm = false
  if retry or standing then
    -- One read for the retry and both standings (the mute matters to a chat only).
    bm = redis.call('HMGET', KEYS[3], '~ban:' .. cmd.by, '~mute:' .. cmd.by, '~last:' .. cmd.by, retry or '~')
    local hit = bm[4]
    if hit then
      local a = string.find(hit, ' ', 1, true)
      local b = string.find(hit, ' ', a + 1, true)
      if nowMs() - tonumber(string.sub(hit, b + 1)) < tonumber(windowMs) then
        return {0, tonumber(string.sub(hit, 1, a - 1)), string.sub(hit, a + 1, b - 1)}
      end
    end
  end
  local lcKey, lcVal, lcNew, lcPoll = false, false, false, false
  if standing then
    if bm[1] then return {-3, 'forbidden', 'room: banned from ' .. room} end
    if cmd.t == 'chat' and slow > 0 and not cmd.mod then
      if bm[3] and nowMs() - tonumber(bm[3]) < slow * 1000 then
        return {-3, 'slow_mode', 'room: slow mode in ' .. room .. ': one message every ' .. slow .. ' s', math.ceil((tonumber(bm[3]) + slow * 1000 - nowMs()) / 1000)}
      end
      -- Nothing after this refuses a chat: its time is the member's last chat.
      redis.call('HSET', KEYS[3], '~last:' .. cmd.by, nowText())
    end
    if cmd.t == 'chat' then
      local mu = bm[2]
      if mu then
        local sp = string.find(mu, ' ', 1, true)
        if tonumber(string.sub(mu, 1, sp - 1)) > nowMs() then
          return {-3, 'forbidden', 'room: muted in ' .. room .. ' until ' .. string.sub(mu, sp + 1)}
        end
      end
    end
  end
  if cmd.t == 'moderation' then
    if cmd.act == 'mute' then redis.call('HSET', KEYS[3], '~mute:' .. cmd.tg, cmd.um .. ' ' .. cmd['until'])
    elseif cmd.act == 'unmute' then redis.call('HDEL', KEYS[3], '~mute:' .. cmd.tg)
    elseif cmd.act == 'ban' then redis.call('HSET', KEYS[3], '~ban:' .. cmd.tg, '1')
    elseif cmd.act == 'unban' then redis.call('HDEL', KEYS[3], '~ban:' .. cmd.tg) end
  elseif cmd.t == 'settings' then
    if not cmd.mod then return {-3, 'forbidden', 'room: only a moderator or owner of ' .. room .. ' may change its settings'} end
    redis.call('HSET', KEYS[1], 'slow', cmd.sl)
    slow = tonumber(cmd.sl) or 0
  elseif cmd.t == 'chat' or cmd.t == 'dm' then
    if cmd.reply_to then
      local p = stateOf(cmd.reply_to)
      if not p then return nf('reply_to', cmd.reply_to) end
      local pm = cjson.decode(p)
      if pm.d then return nf('reply_to', cmd.reply_to) end
      -- The parent's thread (message-rules.ts threadAfter): one more reply, its time, the replier
      -- first among at most 5 distinct participants.
      local t = pm.t or {c = 0, p = {}}
      local ps = {{id = cmd.by, name = cmd.bn}}
      for i = 1, #t.p do
        if #ps >= 5 then break end
        if t.p[i].id ~= cmd.by then table.insert(ps, t.p[i]) end
      end
      pm.t = {c = t.c + 1, l = cmd.ts, p = ps}
      redis.call('HSET', KEYS[3], cmd.reply_to, cjson.encode(pm))
    end
    lcKey, lcNew = msgId, true
    if cmd.poll then
      local t = {}
      for i = 1, cmd.poll.n do t[i] = 0 end
      lcPoll = cjson.encode({n = cmd.poll.n, m = cmd.poll.m, an = cmd.poll.an, z = cmd.poll.z, t = t, v = {}})
    end
  elseif cmd.t == 'vote' or cmd.t == 'poll_closed' then
    local raw = stateOf(cmd.msg)
    if not raw then return nf('msg', cmd.msg) end
    local m = cjson.decode(raw)
    if m.d then return nf('msg', cmd.msg) end
    local p = m.p
    if type(p) ~= 'table' then return {-3, 'bad_request', 'msg: ' .. cmd.msg .. ' is not a poll'} end
    if type(p.v) ~= 'table' then p.v = {} end
    if cmd.t == 'poll_closed' then
      if p.c then return {-3, 'closed', 'poll: ' .. cmd.msg .. ' is already closed'} end
      if m.a ~= cmd.by and not cmd.mod then return {-3, 'forbidden', 'msg: only its author or a moderator of ' .. room .. ' may close ' .. cmd.msg} end
      p.c = true
    else
      if p.c or (type(p.z) == 'number' and p.z <= nowMs()) then return {-3, 'closed', 'poll: ' .. cmd.msg .. ' is closed'} end
      if (cmd.an == true) ~= (p.an == true) then return {-3, 'bad_request', "vote: anonymous must be the poll's (" .. tostring(p.an == true) .. ')'} end
      local o = cmd.o
      if type(o) ~= 'table' then return {-3, 'bad_request', 'options: must be an array of option indexes'} end
      if #o > 1 and not p.m then return {-3, 'bad_request', 'options: this poll takes one option (it is not multiple)'} end
      local seen = {}
      for i = 1, #o do
        local x = o[i]
        if type(x) ~= 'number' or x ~= math.floor(x) or x < 0 or x >= p.n then
          return {-3, 'bad_request', 'options: ' .. cjson.encode(x) .. ' is not an option (0..' .. (p.n - 1) .. ')'}
        end
        if seen[x] then return {-3, 'bad_request', 'options: ' .. x .. ' is given twice'} end
        seen[x] = true
      end
      local prev = p.v[cmd.by] or {}
      local same = #prev == #o
      if same then for i = 1, #o do if prev[i] ~= o[i] then same = false end end end
      if same then return unchanged() end
      for i = 1, #prev do p.t[prev[i] + 1] = p.t[prev[i] + 1] - 1 end
      for i = 1, #o do p.t[o[i] + 1] = p.t[o[i] + 1] + 1 end
      if #o > 0 then p.v[cmd.by] = o else p.v[cmd.by] = nil end
    end
    tallies = p.t
    lcKey, lcVal = cmd.msg, cjson.encode(m)
  elseif cmd.t == 'unpinned' then
    if not cmd.mod then return {-3, 'forbidden', 'room: only a moderator or owner of ' .. room .. ' may unpin'} end
    if redis.call('HDEL', KEYS[5], cmd.msg) == 0 then return unchanged() end
  elseif cmd.t == 'pinned' then
    if not cmd.mod then return {-3, 'forbidden', 'room: only a moderator or owner of ' .. room .. ' may pin'} end
    local raw = stateOf(cmd.msg)
    if not raw then return nf('msg', cmd.msg) end
    local m = cjson.decode(raw)
    if m.d then return nf('msg', cmd.msg) end
    if redis.call('HEXISTS', KEYS[5], cmd.msg) == 1 then return unchanged() end
    if redis.call('HLEN', KEYS[5]) >= cmd.pc then return {-3, 'limit', 'msg: ' .. room .. ' already has ' .. cmd.pc .. ' pinned messages (PINS_MAX_PER_ROOM)'} end
    redis.call('HSET', KEYS[5], cmd.msg, cjson.encode({s = m.s, b = cmd.bu, t = cmd.ts}))
  elseif cmd.t == 'edit' or cmd.t == 'delete' or cmd.t == 'react' or cmd.t == 'preview' then
    local raw = stateOf(cmd.msg)
    if not raw then return nf('msg', cmd.msg) end
    local m = cjson.decode(raw)
    if m.d then return nf('msg', cmd.msg) end
    if m.r == nil or type(m.r) ~= 'table' then m.r = {} end
    if cmd.t == 'preview' then
      if cmd.by ~= 'server' then return {-3, 'forbidden', 'preview: only the server attaches a link preview to ' .. cmd.msg} end
      m.pv = cmd.pv
    elseif cmd.t == 'edit' then
      if m.a ~= cmd.by and not (cmd.mod and cmd.by == 'server') then return {-3, 'forbidden', 'msg: only its author may edit ' .. cmd.msg} end
      m.b = cmd.body
      m.j = cmd.dj
      m.e = cmd.ts
    elseif cmd.t == 'delete' then
      if m.a ~= cmd.by and not cmd.mod then return {-3, 'forbidden', 'msg: only its author or a moderator of ' .. room .. ' may delete ' .. cmd.msg} end
      m.d = true
      redis.call('HDEL', KEYS[5], cmd.msg)
      m.b = nil
      m.j = nil
      m.r = {}
      m.pv = nil
    else
      local users = m.r[cmd.reaction]
      local at = false
      if users then for i = 1, #users do if users[i] == cmd.by then at = i end end end
      if cmd.op == 'remove' then
        if not at then return unchanged() end
        table.remove(users, at)
        if #users == 0 then m.r[cmd.reaction] = nil end
      else
        if at then return unchanged() end
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
  seq = seq + 1
  -- A number turned into text is an sprintf in Lua (1-2 % of Redis's CPU per chat, perf): once.
  local seqText = tostring(seq)
  local tail = frameTail
  local talliesJson = false
  if tallies then
    talliesJson = '[' .. table.concat(tallies, ',') .. ']'
    local at = string.find(tail, ',"tallies":null', 1, true)
    if at then tail = string.sub(tail, 1, at - 1) .. ',"tallies":' .. talliesJson .. string.sub(tail, at + 15) end
  end
  local frame = head .. seqText .. tail
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, seqText .. '-0', 'f', frame)
  if except ~= '' then redis.call('PUBLISH', channel, except .. '\n' .. frame) else redis.call('PUBLISH', channel, frame) end
  local listed = 0
  if lcNew then
    local state = '{"s":' .. seqText .. ',"a":' .. authorJson .. (lcPoll and (',"p":' .. lcPoll) or '') .. '}'
    if retry then
      redis.call('HSET', KEYS[3], lcKey, state, retry, seqText .. ' ' .. lcKey .. ' ' .. nowText())
      listed = redis.call('RPUSH', KEYS[4], lcKey .. ' ' .. retry)
    else
      redis.call('HSET', KEYS[3], lcKey, state)
      listed = redis.call('RPUSH', KEYS[4], lcKey)
    end
    -- Trimmed TRIM at a time, not one per message: two commands less for nearly every message.
    local kept = tonumber(keep)
    if listed > kept + TRIM then
      local gone = {}
      for _, entry in ipairs(redis.call('LPOP', KEYS[4], listed - kept)) do
        local sp = string.find(entry, ' ', 1, true)
        if sp then
          gone[#gone + 1] = string.sub(entry, 1, sp - 1)
          gone[#gone + 1] = string.sub(entry, sp + 1)
        else
          gone[#gone + 1] = entry
        end
      end
      redis.call('HDEL', KEYS[3], unpack(gone))
    end
  elseif lcKey then
    redis.call('HSET', KEYS[3], lcKey, lcVal)
  end
  if ttlMs ~= '0' then
    -- `tr`: when the next refresh is due (ms). Both are ms as text of the same length, so a text
    -- comparison is the numbers' (no strtod per message).
    local now = nowText()
    if not plain or listed == 1 or not due or #now ~= #due or now >= due then
      local ttl = tonumber(ttlMs)
      local px = ttl + math.floor(ttl / 4)
      for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], px) end
      due = tostring(nowMs() + math.floor(ttl / 4))
      redis.call('HSET', KEYS[1], 'tr', due)
    end
  end
  if talliesJson then return {1, seq, talliesJson} end
  return {1, seq}
end
-- An error of a call part-way (Redis refusing a write) must not lose the seqs the events before
-- it took: their frames are in the stream. So the loop runs under pcall, the seq is written back
-- either way, and the event that failed, and those after it, answer {-4, error}.
local out = {}
local ok, err = pcall(function()
  for b = 6, #ARGV - 1, 7 do
    if not seq then
      out[#out + 1] = {-1}
    else
      out[#out + 1] = one(ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], ARGV[b + 6], ARGV[b + 7])
    end
  end
end)
if seq and seq ~= seq0 then redis.call('HSET', KEYS[1], 'seq', tostring(seq)) end
if not ok then
  local e = type(err) == 'table' and err.err or tostring(err)
  for _ = #out + 1, (#ARGV - 6) / 7 do out[#out + 1] = {-4, e} end
end
return out
