import type { Server, ServerWebSocket } from 'bun'
import type { Accepted, Broker, EventDraft, Position } from '../broker/types'
import { isoNow } from './clock'
import { SmallMap, SmallSet, flat } from '../core/small'
import { roomTopic, userTopic } from '../broker/types'
import type { AuditEntry, Store } from '../store/types'
import type { Config } from '../config'
import { log } from '../log'
import type { Metrics } from '../metrics'
import { frameDecoder } from '../protocol/client-frames'
import type { ClientFrame, FrameOf } from '../protocol/client-frames'
import { CHAT_HEAD, CLOSE, CONTROL_HEAD, DM_HEAD, chatTailOfOwn, eventTail, frames, userJson } from '../protocol/server-frames'
import type { Control, ErrorCode, RoomEvent, User } from '../protocol/server-frames'
import type { Members } from '../members/types'
import { isDirect } from '../members/types'
import { NO_JOINS, allowed } from './connection'
import { createConversations } from './conversations'
import { createRooms } from './rooms'
import { createLifecycle } from './lifecycle'
import { MODERATION_HEAD, createModeration, higherRole } from './moderation'
import { FrameError } from '../core/errors'
import type { Conn, Identity } from './connection'
import { tokenBucket } from './rate-limit'
import type { HubWebhooks } from '../webhooks'
import type { EventInput } from '../webhooks/events'
import { chatFrame } from '../protocol/server-frames'
import { mutedMessage } from '../broker/lifecycle'
import { appender, notAccepted } from './append'

export interface HubDeps {
  config: Config
  broker: Broker
  metrics: Metrics
  nodeId: string
  server: () => Server<unknown> | null | undefined
  /** PostgreSQL when persistence is on: history beyond the broker's log, users, sessions, audit. */
  store?: Store
  members: Members
  /** Verifies a `refresh` token; undefined when auth is off. */
  refresh?: (token: string) => Promise<Identity>
  /** Webhooks and the pre-publish hook (src/webhooks); absent when off. */
  webhooks?: HubWebhooks
}

const STRIKES_BEFORE_CLOSE = 3
const MUTE_READ_WAIT_MS = 250
const STRIKE_MEMORY_MS = 10_000

/** Retry keys: unambiguous whatever the ids contain, one space per kind of send. */
export const dedupeKey = (...parts: string[]) => JSON.stringify(parts)

/**
 * Connections, rooms on Bun topics, presence and limits. Fan-out is Bun's: a frame is
 * encoded once and handed to `server.publish`; nothing here loops over a room's members
 * on the way out, except to find a slow consumer after Bun reported one.
 */
export function createHub(deps: HubDeps) {
  const { config, broker, metrics, store, members: memberships, webhooks } = deps
  const decode = frameDecoder(config.MAX_BODY_CHARS, config.MAX_JSON_DEPTH)
  const bucket = tokenBucket(config.RATE_LIMIT_PER_SEC, config.RATE_LIMIT_BURST)
  const conns = new Map<string, Conn>()
  /** Local members of each topic (room and user topics), for presence and slow-consumer checks. */
  const members = new Map<string, Set<Conn>>()
  let nextConn = 0
  /** Connection ids stay unique across restarts of a node with a fixed NODE_ID (sessions key on them). */
  const boot = Bun.randomUUIDv7().slice(-4)
  let draining = false

  const server = () => {
    const s = deps.server()
    if (!s) throw new Error('server not listening')
    return s
  }

  // ---- delivery (called by the broker for every frame of a watched topic) ----

  function deliver(topic: string, frame: string, except?: string) {
    if (frame.startsWith(CONTROL_HEAD)) return control(topic, frame, except)
    if (frame.startsWith(MODERATION_HEAD)) noteMute(topic, frame)
    rooms.overhear(topic, frame)
    const skip = except ? conns.get(except) : undefined
    const s = server()
    // After a TLS certificate rotation several servers share the topics (src/http/listeners.ts).
    const publishExcept = (s as { publishExcept?: (ws: ServerWebSocket<unknown>, t: string, f: string) => number }).publishExcept
    const status = skip && !skip.closing ? (publishExcept ? publishExcept(skip.ws, topic, frame) : skip.ws.publish(topic, frame)) : s.publish(topic, frame)
    // Bun's subscribers of a room topic are its live connections here (subscribed and added in
    // one step, rooms.ts), so their count is read from the set, not from Bun's topic per message.
    if (frame.startsWith(CHAT_HEAD) || frame.startsWith(DM_HEAD)) metrics.delivered.inc(members.get(topic)?.size ?? 0)
    if (status === 0) cutSlowConsumers(topic, frame.length)
  }

  /** A mute or unmute passing by: the muted user's connections here know at once (see mutedUntil). */
  function noteMute(topic: string, frame: string) {
    const m = JSON.parse(frame) as { room: string; action: string; user: { id: string }; until?: string }
    if (m.action !== 'mute' && m.action !== 'unmute') return
    const until = m.action === 'mute' && m.until ? Date.parse(m.until) : 0
    for (const c of members.get(topic) ?? []) if (c.identity.user.id === m.user.id) (c.muted ??= new Map()).set(m.room, { until, at: c.rooms.get(m.room) })
  }

  /**
   * When the user's mute in the room ends (0 = not muted): read once per live join, then kept
   * by noteMute, so a chat costs a map lookup. A rejoin (a new live boundary) reads it again.
   * Chats that arrive while it is read all wait on the same promise, so they keep their order.
   */
  function mutedUntil(c: Conn, room: string): number | Promise<number> {
    const at = c.rooms.get(room)
    const hit = c.muted?.get(room)
    if (hit && hit.at === at) return hit.until ?? Promise.race([hit.loading!, Bun.sleep(MUTE_READ_WAIT_MS).then(() => hit.until ?? 0)])
    const entry: { until?: number; loading?: Promise<number>; at: number | undefined } = { at }
    entry.loading = memberships.standing(room, c.identity.user.id).then(
      (s) => (entry.until = s.mutedUntil ?? 0),
      // Chat goes on while PostgreSQL (the members engine) is down: a mute set before this join
      // that cannot be read is not enforced (mutes made from now on still are: see noteMute).
      (err) => {
        log.warn('mute not read; chat allowed', { conn: c.id, room, err })
        return (entry.until = 0)
      },
    )
    // Nor does chat wait long for it: past MUTE_READ_WAIT_MS the chat goes on (timers fire in
    // order, so the connection's chats keep theirs).
    const bounded = Promise.race([entry.loading, Bun.sleep(MUTE_READ_WAIT_MS).then(() => entry.until ?? 0)])
    ;(c.muted ??= new Map()).set(room, entry)
    return bounded
  }

  /** Bun dropped a frame for someone: close, with 4008, whoever cannot take it. */
  function cutSlowConsumers(topic: string, frameBytes: number) {
    const set = members.get(topic)
    if (!set) return
    for (const c of set) {
      if (c.ws.getBufferedAmount() + frameBytes > config.MAX_BUFFERED_BYTES) {
        metrics.dropped.inc()
        closeSlow(c)
      }
    }
  }

  function closeSlow(c: Conn) {
    if (c.closing) return
    metrics.slowConsumers.inc()
    log.warn('slow consumer closed', { conn: c.id, user: c.identity.user.id, buffered: c.ws.getBufferedAmount() })
    audit({ event: 'slow_consumer', user: c.identity.user.id, conn: c.id })
    closeConn(c, CLOSE.slowConsumer, 'slow consumer')
  }

  function closeConn(c: Conn, code: number, reason: string) {
    if (c.closing) return
    c.closing = true
    c.ws.close(code, reason)
  }

  function send(c: Conn, frame: string, type: keyof Metrics['framesOut']) {
    if (c.closing) return
    metrics.framesOut[type]!.inc()
    if (c.ws.send(frame) === 0) closeSlow(c)
  }

  function sendError(c: Conn, code: ErrorCode, message: string, id?: string) {
    metrics.errors[code].inc()
    send(c, frames.error(code, message, id), 'error')
  }

  function addMember(topic: string, c: Conn) {
    let set = members.get(topic)
    if (!set) {
      members.set(topic, (set = new SmallSet()))
      if (topic.startsWith('r:')) metrics.rooms.inc()
      webhooks?.live?.(topic, c.identity.user)
    }
    set.add(c)
  }

  function removeMember(topic: string, c: Conn) {
    const set = members.get(topic)
    if (!set?.delete(c) || set.size > 0) return
    members.delete(topic)
    if (topic.startsWith('r:')) metrics.rooms.dec()
    webhooks?.idle?.(topic, c.identity.user)
  }

  function audit(entry: AuditEntry) {
    store?.audit(entry)
  }

  const append = appender(broker, metrics)
  const rooms = createRooms({ broker, store, metrics, send, audit, addMember, removeMember })
  const { join, leave, page } = rooms
  const emit = webhooks?.emit && ((e: EventInput) => webhooks.emit!(e))
  const lifecycle = createLifecycle({ broker, append, store, emit })
  const conversations = createConversations({
    config,
    broker,
    members: memberships,
    rooms,
    emit: webhooks?.emit,
    present: async (room, frames, viewer) => (await lifecycle.present(room, { frames, more: false }, viewer)).frames,
  })
  const moderation = createModeration({ broker, append, members: memberships, audit, emit })

  /** Joins (or refuses) a room the connection asked for: the token's rooms, a direct room's pair. */
  async function mayUse(c: Conn, room: string, verb: string) {
    if (!(await conversations.mayUse(c.identity, room))) throw new FrameError('forbidden', `room: not allowed to ${verb} ${room}`)
  }

  function memberJoin(c: Conn, room: string, read: number, since?: number, id?: string) {
    c.member.add(room)
    return join(c, room, { since, id, member: { read } })
  }

  /** A command for every local connection of a user (see Control), from any node. */
  function control(topic: string, frame: string, except?: string) {
    const set = members.get(topic)
    if (!set) return
    const cmd = JSON.parse(frame) as Control
    for (const c of [...set]) {
      if (c.id === except || c.closing) continue
      void (async () => {
        if (c.loading) await c.loading
        if (cmd.ctl === 'join') await memberJoin(c, cmd.room, cmd.since, cmd.since)
        else if (cmd.ctl === 'leave') {
          c.member.delete(cmd.room)
          if (c.rooms.has(cmd.room) || c.joining.has(cmd.room)) {
            leave(c, cmd.room)
            send(c, frames.left(cmd.room, undefined, cmd.reason), 'left')
          }
        } else closeConn(c, cmd.code, cmd.reason)
      })().catch((err) => sendError(c, err.code ?? 'unavailable', err.message))
    }
  }

  // ---- frames ----

  async function chat(c: Conn, f: FrameOf<'chat'>) {
    const room = f.room ?? config.DEFAULT_ROOM
    const pending = c.joining.get(room)
    if (pending) await pending.done
    if (!c.rooms.has(room)) throw new FrameError('forbidden', `room: not a member of ${room}`)
    const m = mutedUntil(c, room)
    const muted = typeof m === 'number' ? m : await m
    if (muted > Date.now()) throw new FrameError('forbidden', mutedMessage(room, muted))
    let body = f.body
    let data: unknown = f.data
    if (webhooks?.beforePublish) ({ body, data } = await webhooks.beforePublish({ room, user: c.identity.user, body, data, reply_to: f.reply_to }))
    const started = performance.now()
    const accepted = await publish(room, c.identity.user, body, data, f.id && dedupeKey('chat', room, c.identity.user.id, f.id), c.fromJson, f.reply_to)
    chatDone(c, f, room, accepted, started)
  }

  /**
   * `chat` without a promise, for the common case: a room the connection is live in, its mute
   * state known, no pre-publish hook, an engine that appends synchronously (memory, no store).
   * False when the frame needs `chat` (nothing was done then).
   */
  function chatNow(c: Conn, f: FrameOf<'chat'>): boolean {
    if (!broker.appendNow || webhooks?.beforePublish) return false
    const room = f.room ?? config.DEFAULT_ROOM
    if (c.joining.has(room) || !c.rooms.has(room)) return false
    const mute = c.muted?.get(room)
    if (!mute || mute.at !== c.rooms.get(room) || mute.until === undefined || mute.until > Date.now()) return false
    const started = performance.now()
    const from = c.identity.user
    const m = draft(room, from, f.body, f.data, c.fromJson, f.reply_to)
    let accepted
    try {
      accepted = broker.appendNow(room, m, f.id && dedupeKey('chat', room, from.id, f.id))
    } catch (err) {
      throw notAccepted(metrics, room, 'chat', err)
    }
    if (!accepted) return false
    published(room, from, m.tail, accepted)
    chatDone(c, f, room, accepted, started)
    return true
  }

  function chatDone(c: Conn, f: FrameOf<'chat'>, room: string, accepted: Accepted, started: number) {
    metrics.publishLatency.observe((performance.now() - started) / 1000)
    if (c.member.has(room)) memberships.touch(room, c.identity.user.id, accepted.seq)
    if (f.id) send(c, frames.ack(f.id, accepted.id, accepted.seq), 'ack')
  }

  /** A chat event made here: its id and time, and its frame's tail encoded once. */
  function draft(room: string, from: User, body: string, data: unknown, fromJson?: string, replyTo?: string): EventDraft {
    const id = Bun.randomUUIDv7()
    const ts = isoNow()
    const tail = chatTailOfOwn(id, room, fromJson ?? userJson(from), body, data, ts, replyTo)
    const event: RoomEvent = { type: 'chat', id, room, from, body, data, ts }
    if (replyTo !== undefined) event.extra = { reply_to: replyTo }
    return { event, head: CHAT_HEAD, tail }
  }

  function published(room: string, from: User, tail: string, accepted: Accepted) {
    if (accepted.duplicate) return
    metrics.published.inc()
    webhooks?.created?.(room, from, chatFrame(accepted.seq, tail))
  }

  /** Sequences and fans out one chat message (from a client or the publish API). */
  async function publish(room: string, from: User, body: string, data: unknown, dedupe?: string, fromJson?: string, replyTo?: string) {
    const m = draft(room, from, body, data, fromJson, replyTo)
    const accepted = await append(room, m, dedupe)
    published(room, from, m.tail, accepted)
    return accepted
  }

  /** A dm is a message of the pair's direct room; the sending connection does not get it back. */
  async function dm(c: Conn, f: FrameOf<'dm'>) {
    const from = c.identity.user
    if (c.identity.ephemeral) throw new FrameError('forbidden', 'dm: an anonymous user has no conversations (connect with ?user= or a token)')
    const room = await conversations.direct(from, f.to, c.id)
    if (!c.rooms.has(room)) await memberJoin(c, room, (await memberships.get(room, from.id))?.read ?? 0)
    const id = Bun.randomUUIDv7()
    const event = { type: 'dm' as const, id, room, from, body: f.body, data: f.data, ts: isoNow(), extra: { to: f.to } }
    const key = f.id && dedupeKey('dm', from.id, f.id)
    const draftTail = eventTail(event)
    const accepted = await append(room, { event, head: DM_HEAD, tail: draftTail }, key, c.id)
    if (!accepted.duplicate) {
      metrics.published.inc()
      webhooks?.created?.(room, from, DM_HEAD + accepted.seq + draftTail)
    }
    memberships.touch(room, from.id, accepted.seq)
    if (f.id) send(c, frames.ack(f.id, accepted.id, accepted.seq, room), 'ack')
  }

  async function joinFrame(c: Conn, f: FrameOf<'join'>) {
    await mayUse(c, f.room, 'join')
    const standing = await moderation.mayJoin(f.room, c.identity.user.id)
    // The answer names the user's role, read with the ban check (no extra read); direct rooms have none.
    const role = isDirect(f.room) ? undefined : higherRole(c.identity, f.room, standing)
    if (!f.member) return join(c, f.room, { since: f.since, epoch: f.epoch, id: f.id, role, member: c.member.has(f.room) ? await marker(c, f.room) : undefined })
    if (c.identity.ephemeral) throw new FrameError('forbidden', 'member: an anonymous user cannot hold memberships (connect with ?user= or a token)')
    const r = await conversations.grant(f.room, c.identity.user, { except: c.id })
    c.member.add(f.room)
    return join(c, f.room, { since: f.since, epoch: f.epoch, id: f.id, role, member: { read: r.read } })
  }

  async function marker(c: Conn, room: string) {
    const m = await memberships.get(room, c.identity.user.id)
    return m && { read: m.read }
  }

  async function leaveFrame(c: Conn, f: FrameOf<'leave'>) {
    if (f.member) {
      await conversations.revoke(f.room, c.identity.user.id, { except: c.id })
      c.member.delete(f.room)
    }
    leave(c, f.room)
    send(c, frames.left(f.room, f.id), 'left')
  }

  async function roomsFrame(c: Conn, f: FrameOf<'rooms'>) {
    const r = await conversations.list(c.identity.user.id, f.before, f.limit ?? 50)
    send(c, frames.rooms(r.conversations, r.more, r.next, f.id), 'rooms')
  }

  async function read(c: Conn, f: FrameOf<'read'>) {
    await mayUse(c, f.room, 'read')
    const pos = await broker.position(f.room)
    if (f.seq > pos.seq) throw new FrameError('bad_request', `seq: ${f.room} has no seq ${f.seq} yet (its last is ${pos.seq})`)
    const now = await memberships.read(f.room, c.identity.user.id, f.seq)
    if (now === undefined) throw new FrameError('forbidden', `room: not a member of ${f.room}`)
    await broker.relay(roomTopic(f.room), frames.read(f.room, c.identity.user, now))
  }

  async function history(c: Conn, f: FrameOf<'history'>) {
    await mayUse(c, f.room, 'read')
    const limit = f.limit ?? 50
    const raw = f.thread === undefined ? await page(f.room, f.before, limit) : await lifecycle.thread((b, l) => page(f.room, b, l), f.thread, f.before, limit)
    const p = await lifecycle.present(f.room, raw, c.identity.user.id)
    send(c, frames.history(f.room, p.frames, p.more, f.id), 'history')
  }

  // ---- message lifecycle: edit, delete, react (each an event of the room's log) ----

  /** Changes need the user live in the room, as a chat does. */
  async function live(c: Conn, room: string) {
    const pending = c.joining.get(room)
    if (pending) await pending.done
    if (!c.rooms.has(room)) throw new FrameError('forbidden', `room: not a member of ${room}`)
  }

  function changed(c: Conn, id: string | undefined, msg: string, a: { seq: number; noop?: boolean }) {
    if (id) send(c, frames.ack(id, msg, a.noop ? undefined : a.seq), 'ack')
  }

  async function edit(c: Conn, f: FrameOf<'edit'>) {
    await live(c, f.room)
    changed(c, f.id, f.msg, await lifecycle.edit(f.room, c.identity.user, f.msg, f.body, f.data))
  }

  async function del(c: Conn, f: FrameOf<'delete'>) {
    await live(c, f.room)
    changed(c, f.id, f.msg, await lifecycle.remove(f.room, c.identity.user, f.msg, await moderation.moderates(c.identity, c.identity.user.id, f.room)))
  }

  async function react(c: Conn, f: FrameOf<'react'> | FrameOf<'unreact'>) {
    await live(c, f.room)
    changed(c, f.id, f.msg, await lifecycle.react(f.room, c.identity.user, f.msg, f.reaction, f.type === 'react' ? 'add' : 'remove'))
  }

  async function presence(c: Conn, f: FrameOf<'presence'>) {
    await mayUse(c, f.room, 'see')
    send(c, frames.presenceList(f.room, await broker.presence.list(f.room), f.id), 'presence')
  }

  async function typing(c: Conn, f: FrameOf<'typing'>) {
    if (!c.rooms.has(f.room)) throw new FrameError('forbidden', `room: not a member of ${f.room}`)
    await broker.relay(roomTopic(f.room), frames.typing(f.room, c.identity.user), c.id)
  }

  async function refresh(c: Conn, f: FrameOf<'refresh'>) {
    if (!deps.refresh) throw new FrameError('bad_request', 'refresh: authentication is off on this server')
    const next = await deps.refresh(f.token)
    if (next.user.id !== c.identity.user.id) throw new FrameError('forbidden', 'token: belongs to another user')
    c.identity = { ...next, user: { ...next.user } }
    c.fromJson = flat(userJson(c.identity.user))
    for (const room of new Set([...c.rooms.keys(), ...c.joining.keys()])) if (!isDirect(room) && !allowed(c.identity, room)) {
      leave(c, room)
      send(c, frames.left(room), 'left')
    }
  }

  /** mute, unmute, ban, unban, kick: moderators and owners of the room only. */
  async function moderate(c: Conn, f: FrameOf<'mute' | 'unmute' | 'ban' | 'unban' | 'kick'>) {
    if (isDirect(f.room) || !(await moderation.moderates(c.identity, c.identity.user.id, f.room))) throw new FrameError('forbidden', `${f.type}: not a moderator of ${f.room}`)
    const target = { id: f.user, name: (await memberships.user(f.user))?.name ?? f.user }
    const seq = await moderation.act(f.room, c.identity.user, f.type, target, { seconds: 'seconds' in f ? f.seconds : undefined, reason: 'reason' in f ? f.reason : undefined })
    if (f.id) send(c, frames.ack(f.id, undefined, seq), 'ack')
  }

  const handlers: { [T in ClientFrame['type']]: (c: Conn, f: FrameOf<T>) => Promise<void> | void } = {
    chat,
    dm,
    history,
    presence,
    typing,
    refresh,
    join: joinFrame,
    leave: leaveFrame,
    rooms: roomsFrame,
    read,
    edit,
    delete: del,
    react,
    unreact: react,
    mute: moderate,
    unmute: moderate,
    ban: moderate,
    unban: moderate,
    kick: moderate,
    ping: (c, f) => send(c, frames.pong(f.id), 'pong'),
  }
  /** Frames whose handler answers by itself; the others get an `ack` when they carry an id. */
  const answered = new Set(['chat', 'dm', 'join', 'leave', 'history', 'presence', 'ping', 'rooms', 'edit', 'delete', 'react', 'unreact', 'mute', 'unmute', 'ban', 'unban', 'kick'])

  function rateLimited(c: Conn): boolean {
    if (bucket.take(c)) return false
    metrics.rateLimited.inc()
    audit({ event: 'rate_limited', user: c.identity.user.id, conn: c.id })
    const now = performance.now()
    if (now - c.lastStrikeAt > STRIKE_MEMORY_MS) c.strikes = 0
    c.lastStrikeAt = now
    if (++c.strikes > STRIKES_BEFORE_CLOSE) {
      log.warn('flooding client closed', { conn: c.id, user: c.identity.user.id })
      closeConn(c, CLOSE.policy, 'rate limit exceeded')
    }
    return true
  }

  // ---- lifecycle ----

  function open(ws: ServerWebSocket<unknown>, identity: Identity, meta: { remote: string; userAgent: string }): Conn {
    identity.user.id = flat(identity.user.id)
    identity.user.name = flat(identity.user.name)
    const full = bucket.full()
    const c: Conn = {
      id: `${deps.nodeId}-${boot}-${(nextConn++).toString(36)}`,
      ws,
      identity,
      fromJson: flat(userJson(identity.user)),
      rooms: new SmallMap(),
      joining: NO_JOINS,
      member: new SmallSet(),
      loading: undefined,
      tokens: full.tokens,
      refilledAt: full.refilledAt,
      strikes: 0,
      lastStrikeAt: 0,
      lastSeen: performance.now(),
      closing: false,
      muted: undefined,
    }
    conns.set(c.id, c)
    metrics.connections.inc()
    const u = identity.user
    const mine = userTopic(u.id)
    addMember(mine, c)
    c.loading = welcome(c).finally(() => (c.loading = undefined))
    log.info('connected', { conn: c.id, user: u.id, remote: meta.remote })
    if (store) {
      store.userSeen(u)
      store.sessionOpened({ conn: c.id, user: u, node: deps.nodeId, remote: meta.remote, userAgent: meta.userAgent })
      audit({ event: 'connect', user: u.id, conn: c.id, detail: { remote: meta.remote } })
    }
    return c
  }

  /**
   * The start of a connection: its memberships (and the default room) are read and their rooms
   * prepared while everything for the user is held back; then `welcome` (with the total unread),
   * one `joined` per room, and whatever was held, in that order.
   */
  async function welcome(c: Conn) {
    const u = c.identity.user
    const mine = userTopic(u.id)
    const held = rooms.hold(mine)
    broker.watch(mine).catch((err) => log.warn('user topic not watched', { conn: c.id, err }))
    let list: { room: string; read: number }[] = []
    const home = allowed(c.identity, config.DEFAULT_ROOM)
    try {
      if (!c.identity.ephemeral) {
        void memberships.seen(u).catch(() => {})
        list = (await memberships.of(u.id)).filter((m) => isDirect(m.room) || allowed(c.identity, m.room))
        // Every user is a member of the default room, from its first connection on.
        // (Not again for a user banned from it: the ban ended that membership.)
        if (home && !list.some((m) => m.room === config.DEFAULT_ROOM) && !(await memberships.standing(config.DEFAULT_ROOM, u.id)).banned) {
          const read = (await broker.position(config.DEFAULT_ROOM)).seq
          const r = await memberships.add(config.DEFAULT_ROOM, u, read, Infinity)
          list.unshift({ room: config.DEFAULT_ROOM, read: r.read ?? read })
        }
      } else if (home) list = [{ room: config.DEFAULT_ROOM, read: (await broker.position(config.DEFAULT_ROOM)).seq }]
    } catch (err) {
      log.warn('memberships not read', { conn: c.id, err })
      if (home) list = [{ room: config.DEFAULT_ROOM, read: 0 }]
    }
    const unread: number[] = []
    const sendLater: (() => void)[] = []
    const prepared = await Promise.all(
      list.map((m, i) => {
        c.member.add(m.room)
        return rooms.prepare(c, m.room, { member: { read: m.read }, onState: (s) => (unread[i] = s.unread) }).catch((err) => {
          sendLater.push(() => sendError(c, err.code ?? 'internal', err.message))
          return undefined
        })
      }),
    )
    if (c.closing) {
      held.release()
      for (const p of prepared) p?.()
      return
    }
    c.ws.cork(() => {
      const joined = list.filter((_, i) => prepared[i])
      send(c, frames.welcome(c.id, u, deps.nodeId, joined.map((m) => m.room), unread.reduce((a, b) => a + (b ?? 0), 0)), 'welcome')
      for (const p of prepared) p?.()
      for (const f of held) send(c, f, 'chat')
      held.release()
      c.ws.subscribe(mine)
      for (const s of sendLater) s()
    })
    // The joins of the start are done: a map that held entries would keep its grown table
    // (~220 bytes) for the socket's life.
    if (c.joining.size === 0) c.joining = NO_JOINS
  }

  /** A frame from a client, JSON-parsed. Returns a promise only when the frame needs one. */
  function message(c: Conn, raw: unknown): Promise<void> | void {
    c.lastSeen = performance.now()
    if (c.loading) return c.loading.then(() => frame(c, raw))
    return frame(c, raw)
  }

  function frame(c: Conn, raw: unknown): Promise<void> | void {
    if (c.closing) return
    if (rateLimited(c)) {
      const id = (raw as { id?: unknown })?.id
      return sendError(c, 'rate_limited', 'too many frames: slow down', typeof id === 'string' ? id.slice(0, 64) : undefined)
    }
    const d = decode(raw)
    if (!d.ok) {
      metrics.framesIn.invalid!.inc()
      return sendError(c, 'bad_request', d.message, d.id)
    }
    const f = d.frame
    metrics.framesIn[f.type]!.inc()
    try {
      if (f.type === 'chat' && chatNow(c, f)) return
    } catch (err) {
      return failed(c, f, err)
    }
    return handle(c, f)
  }

  async function handle(c: Conn, f: ClientFrame) {
    try {
      await (handlers[f.type] as (c: Conn, f: ClientFrame) => Promise<void> | void)(c, f)
      if (f.id && !answered.has(f.type)) send(c, frames.ack(f.id), 'ack')
    } catch (err) {
      failed(c, f, err)
    }
  }

  function failed(c: Conn, f: ClientFrame, err: unknown) {
    if (err instanceof FrameError) {
      if (err.code === 'forbidden') audit({ event: 'forbidden', user: c.identity.user.id, conn: c.id, detail: { type: f.type, reason: err.message } })
      return sendError(c, err.code, err.message, f.id)
    }
    // A dependency that is down explains most failures: say so, as the contract asks.
    const down = broker.problem() ?? store?.problem()
    if (down) return sendError(c, 'unavailable', `${f.type}: not available right now (${down})`, f.id)
    log.error('frame failed', { conn: c.id, type: f.type, err })
    sendError(c, 'internal', 'internal error', f.id)
  }

  function close(c: Conn, code: number, reason: string) {
    if (!conns.delete(c.id)) return
    c.closing = true
    for (const room of [...c.rooms.keys()]) leave(c, room)
    c.joining.clear()
    c.member.clear()
    const mine = userTopic(c.identity.user.id)
    removeMember(mine, c)
    broker.unwatch(mine)
    metrics.connections.dec()
    log.info('disconnected', { conn: c.id, user: c.identity.user.id, code, reason: reason || undefined })
    if (store) {
      store.sessionClosed(c.id, code)
      audit({ event: 'disconnect', user: c.identity.user.id, conn: c.id, detail: { code } })
    }
  }

  /** A room's sequence restarted (Redis came back empty): its members start over from `pos`. */
  function reset(room: string, pos: Position) {
    const topic = roomTopic(room)
    for (const c of members.get(topic) ?? []) c.rooms.set(room, pos.seq)
    metrics.framesOut.joined.inc()
    server().publish(topic, frames.joined(room, pos.seq, pos.epoch, false))
  }

  /** Periodic checks Bun cannot do for us: silent clients, stuck buffers, expired tokens. */
  function sweep() {
    const now = performance.now()
    const wall = Date.now()
    for (const c of conns.values()) {
      if (c.closing) continue
      if (c.identity.exp !== undefined && wall >= c.identity.exp) closeConn(c, CLOSE.tokenExpired, 'token expired')
      else if (c.ws.getBufferedAmount() > config.MAX_BUFFERED_BYTES) closeSlow(c)
      else if (now - c.lastSeen > config.IDLE_TIMEOUT_S * 1000) closeConn(c, 1000, 'idle timeout')
    }
  }

  /** Closes every socket with 1001 and resolves when all are gone or `graceMs` passed. */
  async function drain(graceMs: number) {
    draining = true
    for (const c of conns.values()) closeConn(c, CLOSE.goingAway, 'server shutting down')
    const until = Date.now() + graceMs
    while (conns.size > 0 && Date.now() < until) await Bun.sleep(20)
    return conns.size
  }

  return {
    deliver,
    reset,
    open,
    message,
    close,
    sweep,
    drain,
    publish,
    page,
    audit,
    conversations,
    lifecycle,
    moderation,
    pong: (c: Conn) => void (c.lastSeen = performance.now()),
    get roomCount() {
      let n = 0
      for (const topic of members.keys()) if (topic.startsWith('r:')) n++
      return n
    },
    /** Each room with members on this node and how many (for the admin view). */
    *roomSizes(): Generator<[string, number]> {
      for (const [topic, set] of members) if (topic.startsWith('r:')) yield [topic.slice(2), set.size]
    },
    get draining() {
      return draining
    },
    get size() {
      return conns.size
    },
  }
}

export type Hub = ReturnType<typeof createHub>
