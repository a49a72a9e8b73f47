import type { Server, ServerWebSocket } from 'bun'
import type { Broker, Position } from '../broker/types'
import { Unavailable, roomTopic, userTopic } from '../broker/types'
import type { AuditEntry, Store } from '../store/types'
import type { Config } from '../config'
import { log } from '../log'
import type { Metrics } from '../metrics'
import { frameDecoder } from '../protocol/client-frames'
import type { ClientFrame, FrameOf } from '../protocol/client-frames'
import { CLOSE, chatTailOfOwn, frames, userJson } from '../protocol/server-frames'
import type { ErrorCode, User } from '../protocol/server-frames'
import { allowed } from './connection'
import { createRooms } from './rooms'
import { FrameError } from './errors'
import type { Conn, Identity } from './connection'
import { tokenBucket } from './rate-limit'
import type { HubWebhooks } from '../webhooks'
import { chatFrame } from '../protocol/server-frames'

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
  /** Webhooks and the pre-publish hook (src/webhooks); absent when off. */
  webhooks?: HubWebhooks
}

export { FrameError }

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
  const { config, broker, metrics, store, webhooks } = deps
  const decode = frameDecoder(config.MAX_BODY_CHARS)
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
    rooms.overhear(topic, frame)
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

  const rooms = createRooms({ broker, store, metrics, send, audit, addMember, removeMember })
  const { join, leave, page } = rooms

  // ---- frames ----

  async function chat(c: Conn, f: FrameOf<'chat'>) {
    const room = f.room ?? config.DEFAULT_ROOM
    const pending = c.joining.get(room)
    if (pending) await pending.done
    if (!c.rooms.has(room)) throw new FrameError('forbidden', `room: not a member of ${room}`)
    let body = f.body
    let data: unknown = f.data
    if (webhooks?.beforePublish) ({ body, data } = await webhooks.beforePublish({ room, user: c.identity.user, body, data, reply_to: (f as { reply_to?: unknown }).reply_to }))
    const started = performance.now()
    const accepted = await publish(room, c.identity.user, body, data, f.id && dedupeKey('chat', room, c.identity.user.id, f.id), c.fromJson)
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
      if (!accepted.duplicate) {
        metrics.published.inc()
        webhooks?.created?.(room, from, chatFrame(accepted.seq, tail))
      }
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
  }
}

export type Hub = ReturnType<typeof createHub>
