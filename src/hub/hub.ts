import type { Server, ServerWebSocket } from 'bun'
import type { Broker, Page, Position, Replay } from '../broker/types'
import { Unavailable, roomTopic, userTopic } from '../broker/types'
import type { AuditEntry, Store } from '../store/types'
import type { Config } from '../config'
import { log } from '../log'
import type { Metrics } from '../metrics'
import { frameDecoder } from '../protocol/client-frames'
import type { ClientFrame, FrameOf } from '../protocol/client-frames'
import { CLOSE, chatSeq, chatTailOfOwn, frames, userJson } from '../protocol/server-frames'
import type { ErrorCode, User } from '../protocol/server-frames'
import { allowed } from './connection'
import type { Conn, Identity, Joining } from './connection'
import { tokenBucket } from './rate-limit'

export interface HubDeps {
  config: Config
  broker: Broker
  metrics: Metrics
  nodeId: string
  server: () => Server<unknown> | null | undefined
  /** PostgreSQL when persistence is on: history beyond the broker's log, users, sessions, audit. */
  store?: Store
  /** Verifies a `refresh` token; undefined when auth is off. */
  refresh?: (token: string) => Promise<Identity>
}

/** Thrown by handlers to answer the frame with an `error`. */
export class FrameError extends Error {
  constructor(readonly code: ErrorCode, message: string) {
    super(message)
  }
}

const STRIKES_BEFORE_CLOSE = 3
const STRIKE_MEMORY_MS = 10_000

/** Retry keys: unambiguous whatever the ids contain, one space per kind of send. */
export const dedupeKey = (...parts: string[]) => JSON.stringify(parts)

/**
 * Connections, rooms on Bun topics, presence and limits. Fan-out is Bun's: a frame is
 * encoded once and handed to `server.publish`; nothing here loops over a room's members
 * on the way out, except to find a slow consumer after Bun reported one.
 */
export function createHub(deps: HubDeps) {
  const { config, broker, metrics, store } = deps
  const decode = frameDecoder(config.MAX_BODY_CHARS)
  const bucket = tokenBucket(config.RATE_LIMIT_PER_SEC, config.RATE_LIMIT_BURST)
  const conns = new Map<string, Conn>()
  /** Local members of each topic (room and user topics), for presence and slow-consumer checks. */
  const members = new Map<string, Set<Conn>>()
  /** Buffers of joins in progress, by topic: frames delivered meanwhile land here too. */
  const recovering = new Map<string, Set<string[]>>()
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
    const buffers = recovering.get(topic)
    if (buffers) for (const b of buffers) b.push(frame)
    const skip = except ? conns.get(except) : undefined
    const s = server()
    const status = skip && !skip.closing ? skip.ws.publish(topic, frame) : s.publish(topic, frame)
    const isMessage = topic.charCodeAt(0) === 117 /* u: */ || frame.charCodeAt(9) === 99 /* {"type":"chat */
    if (isMessage) metrics.delivered.inc(s.subscriberCount(topic))
    if (status === 0) cutSlowConsumers(topic, frame.length)
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
      members.set(topic, (set = new Set()))
      if (topic.startsWith('r:')) metrics.rooms.inc()
    }
    set.add(c)
  }

  function removeMember(topic: string, c: Conn) {
    const set = members.get(topic)
    if (!set?.delete(c) || set.size > 0) return
    members.delete(topic)
    if (topic.startsWith('r:')) metrics.rooms.dec()
  }

  function audit(entry: AuditEntry) {
    store?.audit(entry)
  }

  // ---- reading the past: the broker's log first, the store for what it no longer holds ----

  async function readSince(room: string, since: number): Promise<Replay> {
    const r = await broker.since(room, since)
    if (r.complete || !store || since >= r.seq) return r
    const firstHeld = r.frames.length ? chatSeq(r.frames[0]!) : r.seq + 1
    const head = await store.range(room, since, firstHeld - 1)
    const frames = head.concat(r.frames)
    return { ...r, frames, complete: frames.length === r.seq - since }
  }

  async function page(room: string, before: number | undefined, limit: number): Promise<Page> {
    const recent = await broker.page(room, before, limit)
    if (!store) return recent
    const first = recent.frames.length ? chatSeq(recent.frames[0]!) : before
    if (recent.frames.length === limit) return { frames: recent.frames, more: recent.more || (first ?? 1) > 1 }
    const older = await store.page(room, first, limit - recent.frames.length)
    return { frames: older.frames.concat(recent.frames), more: older.more }
  }

  // ---- rooms ----

  function announce(room: string, event: 'join' | 'leave', user: User) {
    broker.relay(roomTopic(room), frames.presenceEvent(room, event, user)).catch((err) => {
      metrics.brokerErrors.inc()
      log.warn('presence event not relayed', { room, err })
    })
  }

  /**
   * Makes `c` live in `room`. With `since` (and a matching `epoch`), first replays what it
   * missed. The boundary is exact: the topic's frames are buffered while the log is read,
   * then the replay, `joined`, the buffered frames newer than the replay and the Bun
   * subscription happen in one synchronous step, so nothing is skipped or sent twice.
   */
  async function join(c: Conn, room: string, since?: number, epoch?: string, id?: string): Promise<void> {
    if (!allowed(c.identity, room)) throw new FrameError('forbidden', `room: not allowed to join ${room}`)
    const topic = roomTopic(room)
    const pending = c.joining.get(room)
    if (pending) {
      await pending.done
      if (!c.rooms.has(room)) throw new FrameError('unavailable', `room: joining ${room} failed`)
    }
    const boundary = c.rooms.get(room)
    if (boundary !== undefined) return rejoin(c, room, boundary, since, epoch, id)

    let finish!: () => void
    const joining: Joining = { buffer: [], done: new Promise<void>((r) => (finish = r)) }
    c.joining.set(room, joining)
    let buffers = recovering.get(topic)
    if (!buffers) recovering.set(topic, (buffers = new Set()))
    buffers.add(joining.buffer)
    let watched = false
    try {
      watched = true // counted even if it fails: unwatched below either way
      await broker.watch(topic)
      let replay: string[] = []
      let recovered = false
      const pos: Replay = since === undefined ? { ...(await broker.position(room)), frames: [], complete: false } : await readSince(room, since)
      if (since !== undefined && pos.complete && (epoch === undefined || epoch === pos.epoch)) {
        replay = pos.frames
        recovered = true
      }
      await broker.caughtUp(room, pos.seq)
      if (c.closing || c.joining.get(room) !== joining) {
        broker.unwatch(topic)
        return
      }
      c.ws.cork(() => {
        for (const f of replay) send(c, f, 'chat')
        send(c, frames.joined(room, pos.seq, pos.epoch, recovered, id), 'joined')
        for (const f of joining.buffer) {
          const seq = chatSeq(f)
          if (seq === -1 || seq > pos.seq) send(c, f, seq === -1 ? 'presence' : 'chat')
        }
        c.ws.subscribe(topic)
      })
      c.rooms.set(room, pos.seq)
      addMember(topic, c)
      audit({ event: 'join', user: c.identity.user.id, conn: c.id, room })
      broker.presence
        .add(room, c.identity.user, c.id)
        .then((first) => first && announce(room, 'join', c.identity.user))
        .catch((err) => log.warn('presence not recorded', { room, conn: c.id, err }))
    } catch (err) {
      if (watched) broker.unwatch(topic)
      metrics.brokerErrors.inc()
      log.warn('join failed', { room, conn: c.id, err })
      throw new FrameError('unavailable', `room: ${room} could not be joined right now`)
    } finally {
      buffers.delete(joining.buffer)
      if (buffers.size === 0) recovering.delete(topic)
      if (c.joining.get(room) === joining) c.joining.delete(room)
      finish()
    }
  }

  /** A join for a room the connection is already live in: replay up to where its live stream began. */
  async function rejoin(c: Conn, room: string, boundary: number, since?: number, epoch?: string, id?: string) {
    if (since === undefined) {
      const pos = await broker.position(room)
      return send(c, frames.joined(room, pos.seq, pos.epoch, false, id), 'joined')
    }
    const r = await readSince(room, since)
    const ok = r.complete && (epoch === undefined || epoch === r.epoch)
    const replay = ok ? r.frames.slice(0, Math.max(0, boundary - since)) : []
    c.ws.cork(() => {
      for (const f of replay) send(c, f, 'chat')
      send(c, frames.joined(room, r.seq, r.epoch, ok, id), 'joined')
    })
  }

  function leave(c: Conn, room: string) {
    c.joining.delete(room) // a join in progress sees this and gives up
    if (!c.rooms.delete(room)) return
    const topic = roomTopic(room)
    if (!c.closing) c.ws.unsubscribe(topic)
    removeMember(topic, c)
    audit({ event: 'leave', user: c.identity.user.id, conn: c.id, room })
    broker.unwatch(topic)
    broker.presence
      .remove(room, c.identity.user.id, c.id)
      .then((last) => last && announce(room, 'leave', c.identity.user))
      .catch((err) => log.warn('presence not removed', { room, conn: c.id, err }))
  }

  // ---- frames ----

  async function chat(c: Conn, f: FrameOf<'chat'>) {
    const room = f.room ?? config.DEFAULT_ROOM
    const pending = c.joining.get(room)
    if (pending) await pending.done
    if (!c.rooms.has(room)) throw new FrameError('forbidden', `room: not a member of ${room}`)
    const started = performance.now()
    const accepted = await publish(room, c.identity.user, f.body, f.data, f.id && dedupeKey('chat', room, c.identity.user.id, f.id), c.fromJson)
    metrics.publishLatency.observe((performance.now() - started) / 1000)
    if (f.id) send(c, frames.ack(f.id, accepted.id, accepted.seq), 'ack')
  }

  /** Sequences and fans out one chat message (from a client or the publish API). */
  async function publish(room: string, from: User, body: string, data: unknown, dedupe?: string, fromJson?: string) {
    const id = Bun.randomUUIDv7()
    const ts = new Date().toISOString()
    const tail = chatTailOfOwn(id, room, fromJson ?? userJson(from), body, data, ts)
    try {
      const accepted = await broker.append(room, { id, from, body, data, ts, tail }, dedupe || undefined)
      if (!accepted.duplicate) metrics.published.inc()
      return accepted
    } catch (err) {
      if (err instanceof Unavailable) throw new FrameError('unavailable', `the message was not accepted: ${err.message}`)
      metrics.brokerErrors.inc()
      log.warn('message not accepted', { room, err })
      throw new FrameError('unavailable', 'the message was not accepted: the broker is unavailable')
    }
  }

  async function dm(c: Conn, f: FrameOf<'dm'>) {
    const from = c.identity.user
    const id = Bun.randomUUIDv7()
    const key = f.id && dedupeKey('dm', from.id, f.id)
    try {
      const prior = key ? await broker.claim(key, id) : undefined
      if (prior !== undefined) return send(c, frames.ack(f.id!, prior), 'ack')
      const frame = frames.dm({ id, from, to: f.to, body: f.body, data: f.data, ts: new Date().toISOString() })
      try {
        await broker.relay(userTopic(f.to), frame)
        if (f.to !== from.id) await broker.relay(userTopic(from.id), frame, c.id)
      } catch (err) {
        if (key) await broker.unclaim(key).catch(() => {})
        throw err
      }
    } catch (err) {
      metrics.brokerErrors.inc()
      log.warn('dm not accepted', { conn: c.id, err })
      throw new FrameError('unavailable', 'the message was not accepted: the broker is unavailable')
    }
    if (f.id) send(c, frames.ack(f.id, id), 'ack')
  }

  async function history(c: Conn, f: FrameOf<'history'>) {
    if (!allowed(c.identity, f.room)) throw new FrameError('forbidden', `room: not allowed to read ${f.room}`)
    const p = await page(f.room, f.before, f.limit ?? 50)
    send(c, frames.history(f.room, p.frames, p.more, f.id), 'history')
  }

  async function presence(c: Conn, f: FrameOf<'presence'>) {
    if (!allowed(c.identity, f.room)) throw new FrameError('forbidden', `room: not allowed to see ${f.room}`)
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
    c.fromJson = userJson(c.identity.user)
    for (const room of new Set([...c.rooms.keys(), ...c.joining.keys()])) if (!allowed(c.identity, room)) {
      leave(c, room)
      send(c, frames.left(room), 'left')
    }
  }

  const handlers: { [T in ClientFrame['type']]: (c: Conn, f: FrameOf<T>) => Promise<void> | void } = {
    chat,
    dm,
    history,
    presence,
    typing,
    refresh,
    join: (c, f) => join(c, f.room, f.since, f.epoch, f.id),
    leave: (c, f) => {
      leave(c, f.room)
      send(c, frames.left(f.room, f.id), 'left')
    },
    ping: (c, f) => send(c, frames.pong(f.id), 'pong'),
  }
  /** Frames whose handler answers by itself; the others get an `ack` when they carry an id. */
  const answered = new Set(['chat', 'dm', 'join', 'leave', 'history', 'presence', 'ping'])

  function rateLimited(c: Conn): boolean {
    if (bucket.take(c.bucket)) return false
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
    const c: Conn = {
      id: `${deps.nodeId}-${boot}-${(nextConn++).toString(36)}`,
      ws,
      identity,
      fromJson: userJson(identity.user),
      rooms: new Map(),
      joining: new Map(),
      bucket: bucket.create(),
      strikes: 0,
      lastStrikeAt: 0,
      lastSeen: performance.now(),
      remote: meta.remote,
      userAgent: meta.userAgent,
      closing: false,
    }
    conns.set(c.id, c)
    metrics.connections.inc()
    const home = allowed(identity, config.DEFAULT_ROOM) ? [config.DEFAULT_ROOM] : []
    const u = identity.user
    send(c, frames.welcome(c.id, u, deps.nodeId, home), 'welcome')
    const mine = userTopic(u.id)
    ws.subscribe(mine)
    addMember(mine, c)
    broker.watch(mine).catch((err) => log.warn('user topic not watched', { conn: c.id, err }))
    for (const room of home)
      join(c, room).catch((err) => sendError(c, err.code ?? 'internal', err.message))
    log.info('connected', { conn: c.id, user: u.id, remote: meta.remote })
    if (store) {
      store.userSeen(u)
      store.sessionOpened({ conn: c.id, user: u, node: deps.nodeId, remote: meta.remote, userAgent: meta.userAgent })
      audit({ event: 'connect', user: u.id, conn: c.id, detail: { remote: meta.remote } })
    }
    return c
  }

  async function message(c: Conn, raw: unknown) {
    c.lastSeen = performance.now()
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
      await (handlers[f.type] as (c: Conn, f: ClientFrame) => Promise<void> | void)(c, f)
      if (f.id && !answered.has(f.type)) send(c, frames.ack(f.id), 'ack')
    } catch (err) {
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
  }

  function close(c: Conn, code: number, reason: string) {
    if (!conns.delete(c.id)) return
    c.closing = true
    for (const room of [...c.rooms.keys()]) leave(c, room)
    c.joining.clear()
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
    pong: (c: Conn) => void (c.lastSeen = performance.now()),
    get draining() {
      return draining
    },
    get size() {
      return conns.size
    },
    conn: (id: string) => conns.get(id),
  }
}

export type Hub = ReturnType<typeof createHub>
