import type { ServerWebSocket } from 'bun'
import type { Position } from '../broker/types'
import { roomTopic, userTopic } from '../broker/types'
import { FrameError } from '../core/errors'
import type { Identity } from '../core/identity'
import { SmallMap, SmallSet, flat } from '../core/small'
import { log } from '../log'
import { isDirect } from '../members/types'
import { frameDecoder } from '../protocol/client-frames'
import type { ClientFrame, FrameOf } from '../protocol/client-frames'
import { CLOSE, frames, userJson } from '../protocol/server-frames'
import type { Control } from '../protocol/server-frames'
import { NO_JOINS, allowed } from './connection'
import type { Conn } from './connection'
import type { Handler, HubContext, Handlers } from './context'
import type { Delivery } from './delivery'
import { checkIdle, heard } from './admission'
import type { IdleRule } from './admission'
import { strike, tokenBucket } from './rate-limit'

export interface SessionDeps {
  h: HubContext
  delivery: Delivery
  conns: Map<string, Conn>
  nodeId: string
  handlers: Handlers<ClientFrame['type']>
  /** The synchronous path of a chat (see messageFrames); false when the frame needs its handler. */
  chatNow: (c: Conn, f: FrameOf<'chat'>) => boolean
}

/**
 * A connection from open to close: its start (memberships read, rooms prepared, `welcome`),
 * every frame it sends (rate limit, validation, dispatch, errors), commands for it from any
 * node, the periodic checks Bun cannot do, and the graceful drain.
 */
export function createSession(d: SessionDeps) {
  const { h, delivery, conns, handlers } = d
  const { config, broker, metrics, store, members: memberships } = h
  const decode = frameDecoder(config.MAX_BODY_CHARS, config.MAX_JSON_DEPTH)
  const bucket = tokenBucket(config.RATE_LIMIT_PER_SEC, config.RATE_LIMIT_BURST)
  let nextConn = 0
  /** Connection ids stay unique across restarts of a node with a fixed NODE_ID (sessions key on them). */
  const boot = Bun.randomUUIDv7().slice(-4)
  let draining = false
  /** Half of IDLE_TIMEOUT_S to stay silent, the other half to answer the ping: closed at IDLE_TIMEOUT_S of silence. */
  const idleRule: IdleRule = { pingAfterMs: (config.IDLE_TIMEOUT_S * 1000) / 2, answerWithinMs: (config.IDLE_TIMEOUT_S * 1000) / 2 }

  /** `since`: when its upgrade was asked for (performance.now()), for chat_connect_seconds. */
  function open(ws: ServerWebSocket<unknown>, identity: Identity, meta: { remote: string; userAgent: string; since?: number }): Conn {
    identity.user.id = flat(identity.user.id)
    identity.user.name = flat(identity.user.name)
    const full = bucket.full()
    const c: Conn = {
      id: `${d.nodeId}-${boot}-${(nextConn++).toString(36)}`,
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
      pingedAt: 0,
      closing: false,
      muted: undefined,
    }
    conns.set(c.id, c)
    metrics.connections.inc()
    const u = identity.user
    delivery.addMember(userTopic(u.id), c)
    c.loading = welcome(c, meta.since).finally(() => (c.loading = undefined))
    log.info('connected', { conn: c.id, user: u.id, remote: meta.remote })
    if (store) {
      store.userSeen(u)
      store.sessionOpened({ conn: c.id, user: u, node: d.nodeId, remote: meta.remote, userAgent: meta.userAgent })
      h.audit({ event: 'connect', user: u.id, conn: c.id, detail: { remote: meta.remote } })
    }
    return c
  }

  /**
   * The start of a connection: its memberships (and the default room) are read and their rooms
   * prepared while everything for the user is held back; then `welcome` (with the total unread),
   * one `joined` per room, and whatever was held, in that order.
   */
  async function welcome(c: Conn, since: number | undefined) {
    const u = c.identity.user
    const mine = userTopic(u.id)
    const held = h.rooms.hold(mine)
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
        return h.rooms.prepare(c, m.room, { member: { read: m.read }, onState: (s) => (unread[i] = s.unread) }).catch((err) => {
          sendLater.push(() => h.sendError(c, err.code ?? 'internal', err.message))
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
      h.send(c, frames.welcome(c.id, u, d.nodeId, joined.map((m) => m.room), unread.reduce((a, b) => a + (b ?? 0), 0)), 'welcome')
      for (const p of prepared) p?.()
      for (const f of held) h.send(c, f, 'chat')
      held.release()
      c.ws.subscribe(mine)
      for (const s of sendLater) s()
    })
    if (since !== undefined) metrics.connect.ws.observe((performance.now() - since) / 1000)
    // The joins of the start are done: a map that held entries would keep its grown table
    // (~220 bytes) for the socket's life.
    if (c.joining.size === 0) c.joining = NO_JOINS
  }

  /** A frame from a client, JSON-parsed. Returns a promise only when the frame needs one. */
  function message(c: Conn, raw: unknown): Promise<void> | void {
    heard(c)
    if (c.loading) return c.loading.then(() => frame(c, raw))
    return frame(c, raw)
  }

  function frame(c: Conn, raw: unknown): Promise<void> | void {
    if (c.closing) return
    if (rateLimited(c)) {
      const id = (raw as { id?: unknown })?.id
      return h.sendError(c, 'rate_limited', 'too many frames: slow down', typeof id === 'string' ? id.slice(0, 64) : undefined)
    }
    const decoded = decode(raw)
    if (!decoded.ok) {
      metrics.framesIn.invalid.inc()
      return h.sendError(c, 'bad_request', decoded.message, decoded.id)
    }
    const f = decoded.frame
    metrics.framesIn[f.type].inc()
    try {
      if (f.type === 'chat' && d.chatNow(c, f)) return
    } catch (err) {
      return failed(c, f, err)
    }
    return handle(c, f)
  }

  async function handle(c: Conn, f: ClientFrame) {
    const handler = handlers[f.type] as Handler<ClientFrame>
    try {
      await handler.run(c, f)
      if (f.id && !handler.answers) h.send(c, frames.ack(f.id), 'ack')
    } catch (err) {
      failed(c, f, err)
    }
  }

  function failed(c: Conn, f: ClientFrame, err: unknown) {
    if (err instanceof FrameError) {
      if (err.code === 'forbidden') h.audit({ event: 'forbidden', user: c.identity.user.id, conn: c.id, detail: { type: f.type, reason: err.message } })
      return h.sendError(c, err.code, err.message, f.id)
    }
    // A dependency that is down explains most failures: say so, as the contract asks.
    const down = broker.problem() ?? store?.problem()
    if (down) return h.sendError(c, 'unavailable', `${f.type}: not available right now (${down})`, f.id)
    log.error('frame failed', { conn: c.id, type: f.type, err })
    h.sendError(c, 'internal', 'internal error', f.id)
  }

  function rateLimited(c: Conn): boolean {
    if (bucket.take(c)) return false
    metrics.rateLimited.inc()
    h.audit({ event: 'rate_limited', user: c.identity.user.id, conn: c.id })
    if (strike(c)) {
      log.warn('flooding client closed', { conn: c.id, user: c.identity.user.id })
      delivery.closeConn(c, CLOSE.policy, 'rate limit exceeded')
    }
    return true
  }

  /** A command for every local connection of a user (see Control), from any node. */
  function control(topic: string, frame: string, except?: string) {
    const set = delivery.local.get(topic)
    if (!set) return
    const cmd = JSON.parse(frame) as Control
    for (const c of [...set]) {
      if (c.id === except || c.closing) continue
      void (async () => {
        if (c.loading) await c.loading
        if (cmd.ctl === 'join') await h.memberJoin(c, cmd.room, cmd.since, cmd.since)
        else if (cmd.ctl === 'leave') {
          c.member.delete(cmd.room)
          if (c.rooms.has(cmd.room) || c.joining.has(cmd.room)) {
            h.rooms.leave(c, cmd.room)
            h.send(c, frames.left(cmd.room, undefined, cmd.reason), 'left')
          }
        } else delivery.closeConn(c, cmd.code, cmd.reason)
      })().catch((err) => h.sendError(c, err.code ?? 'unavailable', err.message))
    }
  }

  function close(c: Conn, code: number, reason: string) {
    if (!conns.delete(c.id)) return
    c.closing = true
    for (const room of [...c.rooms.keys()]) h.rooms.leave(c, room)
    c.joining.clear()
    c.member.clear()
    const mine = userTopic(c.identity.user.id)
    delivery.removeMember(mine, c)
    broker.unwatch(mine)
    metrics.connections.dec()
    log.info('disconnected', { conn: c.id, user: c.identity.user.id, code, reason: reason || undefined })
    if (store) {
      store.sessionClosed(c.id, code)
      h.audit({ event: 'disconnect', user: c.identity.user.id, conn: c.id, detail: { code } })
    }
  }

  /** A room's sequence restarted (Redis came back empty): its members start over from `pos`. */
  function reset(room: string, pos: Position, publish: (topic: string, frame: string) => void) {
    const topic = roomTopic(room)
    for (const c of delivery.local.get(topic) ?? []) c.rooms.set(room, pos.seq)
    metrics.framesOut.joined.inc()
    publish(topic, frames.joined(room, pos.seq, pos.epoch, false))
  }

  /** Periodic checks Bun cannot do for us: silent clients, stuck buffers, expired tokens. */
  function sweep() {
    const now = performance.now()
    const wall = Date.now()
    for (const c of conns.values()) {
      if (c.closing) continue
      if (c.identity.exp !== undefined && wall >= c.identity.exp) delivery.closeConn(c, CLOSE.tokenExpired, 'token expired')
      else if (c.ws.getBufferedAmount() > config.MAX_BUFFERED_BYTES) delivery.closeSlow(c)
      else {
        const idle = checkIdle(c, now, idleRule)
        // A WebSocket ping: browsers and client libraries answer it by themselves.
        if (idle === 'ping') c.ws.ping()
        else if (idle === 'close') delivery.closeConn(c, 1000, 'idle timeout')
      }
    }
  }

  /** Closes every socket with 1001 and resolves when all are gone or `graceMs` passed. */
  async function drain(graceMs: number) {
    draining = true
    for (const c of conns.values()) delivery.closeConn(c, CLOSE.goingAway, 'server shutting down')
    const until = Date.now() + graceMs
    while (conns.size > 0 && Date.now() < until) await Bun.sleep(20)
    return conns.size
  }

  return {
    open,
    message,
    close,
    control,
    reset,
    sweep,
    drain,
    pong: heard,
    get draining() {
      return draining
    },
  }
}
