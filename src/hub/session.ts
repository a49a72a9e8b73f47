import type { ServerWebSocket } from 'bun'
import type { Position } from '../broker/types'
import { userTopic } from '../broker/types'
import type { Identity } from '../core/identity'
import { SmallMap, SmallSet, flat } from '../core/small'
import { log } from '../log'
import type { ClientFrame, FrameOf } from '../protocol/client-frames'
import { userJson } from '../protocol/server-frames'
import { NO_JOINS } from './connection'
import type { Conn } from './connection'
import type { HubContext, Handlers } from './context'
import type { Delivery } from './delivery'
import { heard } from './admission'
import { tokenBucket } from './rate-limit'
import { control, reset } from './commands'
import { frameDispatch } from './dispatch'
import { upkeep } from './upkeep'
import { prepareWelcome, welcome } from './welcome'

export interface SessionDeps {
  h: HubContext
  delivery: Delivery
  conns: Map<string, Conn>
  nodeId: string
  handlers: Handlers<ClientFrame['type']>
  /** The synchronous path of a chat (see messageFrames); false when the frame needs its handler. */
  chatNow: (c: Conn, f: FrameOf<'chat'>) => boolean
}

/** What a connection said about itself at its upgrade. */
export interface OpenMeta {
  remote: string
  userAgent: string
  /** When its upgrade was asked for (performance.now()), for chat_connect_seconds. */
  since?: number
  /** The face it came through, for chat_connect_seconds{transport} (default `ws`). */
  transport?: 'ws' | 'sse'
}

/**
 * A connection started before its socket exists (/ws, see Session.start): everything of its
 * `welcome` read and prepared, its user's and rooms' frames held until `attach`.
 */
export interface Started {
  readonly conn: Conn
  /** The socket opened: `welcome` and the rooms go live on it now (in the 101's write when called in Bun's open). */
  attach(ws: ServerWebSocket<unknown>): void
  /** The socket never opened (or may not stay): the connection ends here, as a close would end it. */
  abandon(): void
}

/** A connection's life on this node (see createSession). */
export interface Session {
  /** A socket that passed the door: registered, then started (memberships, `welcome`). */
  open(ws: ServerWebSocket<unknown>, identity: Identity, meta: OpenMeta): Conn
  /**
   * A connection that passed the door and has no socket yet: registered and started as `open`
   * would, resolved once only the socket is missing. An upgrade made after it answers the 101
   * and `welcome` in one write, a syscall (and a wake-up of the client) fewer per connect.
   */
  start(identity: Identity, meta: OpenMeta): Promise<Started>
  /** A frame from a client, JSON-parsed. Returns a promise only when the frame needs one. */
  message(c: Conn, raw: unknown): Promise<void> | void
  close(c: Conn, code: number, reason: string): void
  /** A command for every local connection of a user (see Control), from any node. */
  control(topic: string, frame: string, except?: string): void
  /** A room's sequence restarted: its members start over from `pos`. */
  reset(room: string, pos: Position, publish: (topic: string, frame: string) => void): void
  /** Periodic checks Bun cannot do: silent clients, stuck buffers, expired tokens. */
  sweep(): void
  /** Closes every socket with 1001; resolves with how many were still open after `graceMs`. */
  drain(graceMs: number): Promise<number>
  /** The client answered a ping (any sign of life). */
  pong(c: Conn): void
  readonly draining: boolean
}

/**
 * A connection from open to close, put together: its record and start (welcome.ts), every
 * frame it sends (dispatch.ts), commands for it from any node (commands.ts), the periodic
 * checks Bun cannot do and the graceful drain (upkeep.ts), and its end.
 */
export function createSession(d: SessionDeps): Session {
  const { h, delivery, conns } = d
  const { config, metrics, store } = h
  const bucket = tokenBucket(config.RATE_LIMIT_PER_SEC, config.RATE_LIMIT_BURST)
  let nextConn = 0
  /** Connection ids stay unique across restarts of a node with a fixed NODE_ID (sessions key on them). */
  const boot = Bun.randomUUIDv7().slice(-4)
  const message = frameDispatch({ h, delivery, bucket, handlers: d.handlers, chatNow: d.chatNow })
  const checks = upkeep(config, conns, delivery)

  function open(ws: ServerWebSocket<unknown>, identity: Identity, meta: OpenMeta): Conn {
    const c = register(ws, identity, meta)
    c.loading = welcome(h, d.nodeId, c, meta.since, meta.transport ?? 'ws').finally(() => (c.loading = undefined))
    return c
  }

  async function start(identity: Identity, meta: OpenMeta): Promise<Started> {
    const pending = pendingSocket()
    const c = register(pending, identity, meta)
    const loading = Promise.withResolvers<void>()
    c.loading = loading.promise
    const finish = await prepareWelcome(h, d.nodeId, c, meta.since, meta.transport ?? 'ws').catch((err) => {
      log.error('connection not started', { conn: c.id, err })
      return () => void delivery.closeConn(c, 1011, 'internal error')
    })
    const settle = () => {
      c.loading = undefined
      loading.resolve()
    }
    return {
      conn: c,
      attach(ws) {
        c.ws = ws
        // Closed while it had no socket (kicked, drained, a token expired): it closes now.
        if (pending.closedWith) ws.close(...pending.closedWith)
        finish()
        if (!pending.closedWith) for (const f of pending.queued) ws.send(f)
        settle()
      },
      abandon() {
        close(c, 1006, 'never opened')
        finish()
        settle()
      },
    }
  }

  /** A connection's record, registered on the node (its socket may come later: start). */
  function register(ws: ServerWebSocket<unknown>, identity: Identity, meta: OpenMeta): Conn {
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
      heard: false,
      lastSeen: performance.now(),
      pingedAt: 0,
      closing: false,
      muted: undefined,
    }
    conns.set(c.id, c)
    metrics.connections.inc()
    const u = identity.user
    delivery.addMember(userTopic(u.id), c)
    log.info('connected', { conn: c.id, user: u.id, remote: meta.remote })
    if (store) {
      store.userSeen(u)
      store.sessionOpened({ conn: c.id, user: u, node: d.nodeId, remote: meta.remote, userAgent: meta.userAgent })
      h.audit({ event: 'connect', user: u.id, conn: c.id, detail: { remote: meta.remote } })
    }
    return c
  }

  function close(c: Conn, code: number, reason: string) {
    if (!conns.delete(c.id)) return
    c.closing = true
    for (const room of [...c.rooms.keys()]) h.rooms.leave(c, room)
    c.joining.clear()
    c.member.clear()
    const mine = userTopic(c.identity.user.id)
    delivery.removeMember(mine, c)
    h.broker.unwatch(mine)
    metrics.connections.dec()
    log.info('disconnected', { conn: c.id, user: c.identity.user.id, code, reason: reason || undefined })
    if (store) {
      store.sessionClosed(c.id, code)
      h.audit({ event: 'disconnect', user: c.identity.user.id, conn: c.id, detail: { code } })
    }
  }

  return {
    open,
    start,
    message,
    close,
    control: (topic, frame, except) => control(h, delivery, topic, frame, except),
    reset: (room, pos, publish) => reset(h, delivery, room, pos, publish),
    sweep: checks.sweep,
    drain: checks.drain,
    pong: heard,
    get draining() {
      return checks.draining
    },
  }
}

/**
 * The socket of a connection started before its upgrade (Session.start): nothing is sent on it
 * until `attach` (everything for the connection is held until then), and a close asked for
 * meanwhile is kept for the real socket.
 */
function pendingSocket(): PendingSocket {
  const s = {
    closedWith: undefined as [number, string] | undefined,
    queued: [] as string[],
    // Nothing should be sent before `welcome`; what is goes right after it, in order.
    send: (frame: string) => (s.queued.push(frame), frame.length),
    cork: (f: () => unknown) => f(),
    subscribe() {},
    unsubscribe() {},
    publish: () => 0,
    ping: () => 0,
    getBufferedAmount: () => 0,
    close(code = 1000, reason = '') {
      s.closedWith ??= [code, reason]
    },
  }
  return s as unknown as PendingSocket
}

type PendingSocket = ServerWebSocket<unknown> & { closedWith?: [number, string]; queued: string[] }
