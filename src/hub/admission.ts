import type { Server } from 'bun'
import type { UserConnCounter } from '../cluster/user-conns'
import { clientAddress, limitKey, trustedProxies } from '../core/client-ip'
import { log } from '../log'
import type { Metrics } from '../metrics'

/**
 * The one door every face passes through (`/ws`, the Pusher face's `/app/:key`, the coming
 * `/sse`): draining, origin, the node's connect rate, connections per node, per address and
 * per user, and the rule that keeps a socket alive. A face only says how it speaks a refusal
 * (an HTTP answer, or Pusher's error frame and close code), so no face can admit what another
 * would refuse.
 */

/** Why a connection was refused; the `reason` of the answer and of `chat_connections_refused_total`. */
export type RefusalReason =
  | 'draining'
  | 'origin_not_allowed'
  | 'connect_rate'
  | 'connections'
  | 'connections_per_ip'
  | 'connections_per_user'

export interface Refusal {
  reason: RefusalReason
  status: 403 | 429 | 503
  /** Seconds to wait before trying again (connect_rate: the header `Retry-After`). */
  retryAfterS?: number
}

/**
 * One admitted connection, from the check before its upgrade until its socket closes. The
 * socket's own record carries these fields (one object a socket fewer); `admit` fills them in.
 */
export interface Ticket {
  /** The address key the socket counts against. */
  ip: string
  /** The user it counts against under MAX_CONNECTIONS_PER_USER (set by `admitUser`). */
  countedUser: string | undefined
  opened: boolean
  released: boolean
  timer?: Timer
}

/** When a client was last heard (its frames and its pongs, never what the server sent it). */
export interface Liveness {
  /** Heard since the last check (`heard`): the one write a frame costs; the check turns it into `lastSeen`. */
  heard: boolean
  /** When a check last found it heard (or when it opened): within one sweep of its last frame. */
  lastSeen: number
  /** When the server pinged it and still waits for an answer (0: not waiting). */
  pingedAt: number
}

/** A face's timings of the liveness rule. */
export interface IdleRule {
  /** Silence after which the server pings (whatever it sent the client meanwhile). */
  pingAfterMs: number
  /** How long an answer to that ping may take before the socket is closed. */
  answerWithinMs: number
}

export interface Door {
  /** The client's address (X-Forwarded-For believed only from TRUST_PROXY). */
  remote(req: Request, server: Server<unknown>): string
  /**
   * Everything decided before authentication, in this order: draining, origin, connect rate,
   * node and address limits (cheap: a flood is refused before any JWT work). Admitted: the
   * ticket counts from now on, and must be released on every path.
   */
  admit(t: Ticket, origin: string | undefined, remote: string): Refusal | undefined
  /** The user limit, once the face knows who it is (a token, a Pusher sign-in). Refused: the ticket is released. */
  admitUser(t: Ticket, user: string): Promise<Refusal | undefined>
  /** The upgrade is handed to Bun: the ticket is given back if no socket opens in time. */
  upgrading(t: Ticket): void
  /** The socket opened: false when its ticket was already given back (it must not stay, uncounted). */
  opened(t: Ticket): boolean
  release(t: Ticket): void
  /** Admitted connections of this node, all faces together. */
  readonly total: number
}

/** An upgrade handed to Bun whose socket never opened is given back after this. */
const OPEN_WITHIN_MS = 10_000

const STATUS: Record<RefusalReason, Refusal['status']> = {
  draining: 503,
  origin_not_allowed: 403,
  connect_rate: 503,
  connections: 429,
  connections_per_ip: 429,
  connections_per_user: 429,
}
/** Refusals that are a limit (counted in chat_connections_refused_total; a draining node or a foreign page is no limit). */
const LIMITS = new Set<RefusalReason>(['connect_rate', 'connections', 'connections_per_ip', 'connections_per_user'])

/** A refusal as an HTTP answer: `429 {"error":"limit",…}`, `503 {"error":"unavailable",…}` (with Retry-After), `403 {"error":"forbidden",…}`. */
export function refusalResponse(r: Refusal): Response {
  const error = r.status === 429 ? 'limit' : r.status === 503 ? 'unavailable' : 'forbidden'
  return Response.json(
    { error, reason: r.reason },
    { status: r.status, headers: r.retryAfterS !== undefined ? { 'retry-after': String(r.retryAfterS) } : undefined },
  )
}

/**
 * The liveness rule of every face: a client silent for `pingAfterMs` is pinged (also when the
 * server keeps sending to it: traffic out says nothing about the client), and closed when no
 * frame or pong follows within `answerWithinMs`. `ping` and `close` are the face's own.
 */
export function checkIdle(s: Liveness, now: number, rule: IdleRule): 'ping' | 'close' | undefined {
  if (s.heard) {
    s.heard = false
    s.lastSeen = now
    s.pingedAt = 0
    return undefined
  }
  if (s.pingedAt) return now - s.pingedAt > rule.answerWithinMs ? 'close' : undefined
  if (now - s.lastSeen > rule.pingAfterMs) {
    s.pingedAt = now
    return 'ping'
  }
  return undefined
}

/**
 * The client said something (a frame, a pong): it is alive, and no ping is awaited. One field
 * write, no clock read: it runs for every frame, and the periodic check (checkIdle) dates it,
 * which is precise enough for timeouts of seconds (a ping may come one sweep later).
 */
export function heard(s: Liveness) {
  s.heard = true
}

export interface DoorOptions {
  maxConnections: number
  perIp: number
  perUser: number
  /** ALLOWED_ORIGINS (unset: any origin; a request without Origin always passes). */
  origins: string[] | undefined
  /** CONNECT_RATE_PER_SEC: new connections a second, all faces together (0: no limit). */
  connectRate: number
  trustProxy: string[] | undefined
  /** True once the node drains (every face then refuses new connections). */
  draining: () => boolean
  metrics: Pick<Metrics, 'connRefused'>
  /** Cluster-wide user counts (Redis); undefined = this node's counts. */
  users?: UserConnCounter
  openWithinMs?: number
}

/**
 * MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP, MAX_CONNECTIONS_PER_USER, ALLOWED_ORIGINS,
 * CONNECT_RATE_PER_SEC and draining, for every face. Address and node limits are this node's;
 * the user limit is cluster-wide when `users` counts in Redis. A limit of 0 is no limit.
 */
export function createDoor(opts: DoorOptions): Door {
  const openWithin = opts.openWithinMs ?? OPEN_WITHIN_MS
  const origins = opts.origins ? new Set(opts.origins) : undefined
  const trusted = trustedProxies(opts.trustProxy)
  let total = 0
  const byIp = new Map<string, number>()
  const byUser = new Map<string, number>()
  /** The connect rate's bucket: `connectRate` a second, as many saved up (a burst of one second's worth). */
  const rate = { tokens: opts.connectRate, at: performance.now() }

  const add = (m: Map<string, number>, k: string, by: number) => {
    const n = (m.get(k) ?? 0) + by
    if (n > 0) m.set(k, n)
    else m.delete(k)
  }

  /** Under a flood, one log line a second says how many were refused, not one per refusal. */
  let refusedLogged = 0
  let refusedSince = 0
  function refuse(reason: RefusalReason, remote: string, user?: string, retryAfterS?: number): Refusal {
    if (LIMITS.has(reason)) {
      opts.metrics.connRefused.labels({ reason }).inc()
      refusedSince++
      if (Date.now() - refusedLogged >= 1000) {
        log.warn('connection refused: limit', { reason, remote, user, refused: refusedSince })
        refusedLogged = Date.now()
        refusedSince = 0
      }
    }
    return { reason, status: STATUS[reason], ...(retryAfterS !== undefined ? { retryAfterS } : {}) }
  }

  /** One token of the connect rate, or the seconds until there is one. */
  function takeRate(): number | undefined {
    const perSec = opts.connectRate
    if (perSec <= 0) return undefined
    const now = performance.now()
    rate.tokens = Math.min(perSec, rate.tokens + ((now - rate.at) * perSec) / 1000)
    rate.at = now
    if (rate.tokens >= 1) {
      rate.tokens -= 1
      return undefined
    }
    return Math.max(1, Math.ceil((1 - rate.tokens) / perSec))
  }

  function release(t: Ticket) {
    if (t.released) return
    t.released = true
    clearTimeout(t.timer)
    total--
    add(byIp, t.ip, -1)
    if (t.countedUser !== undefined) {
      if (opts.users) opts.users.release(t.countedUser)
      else add(byUser, t.countedUser, -1)
    }
  }

  return {
    remote(req, server) {
      return clientAddress(server.requestIP(req)?.address, req.headers.get('x-forwarded-for') ?? undefined, trusted)
    },
    admit(t, origin, remote) {
      if (opts.draining()) return refuse('draining', remote)
      if (origins && origin !== undefined && !origins.has(origin)) {
        log.warn('origin refused', { origin })
        return { reason: 'origin_not_allowed', status: 403 }
      }
      const wait = takeRate()
      if (wait !== undefined) return refuse('connect_rate', remote, undefined, wait)
      const ip = limitKey(remote)
      if (opts.maxConnections > 0 && total >= opts.maxConnections) return refuse('connections', remote)
      if (opts.perIp > 0 && (byIp.get(ip) ?? 0) >= opts.perIp) return refuse('connections_per_ip', remote)
      total++
      add(byIp, ip, 1)
      t.ip = ip
      t.countedUser = undefined
      t.opened = false
      t.released = false
      return undefined
    },
    async admitUser(t, user) {
      if (opts.perUser <= 0 || t.released) return undefined
      const ok = opts.users ? await opts.users.acquire(user, opts.perUser) : (byUser.get(user) ?? 0) < opts.perUser
      if (!ok) {
        release(t)
        return refuse('connections_per_user', t.ip, user)
      }
      if (t.released) {
        // The socket closed while Redis answered: its count goes back at once.
        opts.users?.release(user)
        return undefined
      }
      if (!opts.users) add(byUser, user, 1)
      t.countedUser = user
      return undefined
    },
    upgrading(t) {
      t.timer = setTimeout(() => release(t), openWithin)
      t.timer.unref?.()
    },
    opened(t) {
      clearTimeout(t.timer)
      t.timer = undefined // a cleared timer kept here would keep its object and closure for the socket's life
      if (t.released) return false
      t.opened = true
      return true
    },
    release,
    get total() {
      return total
    },
  }
}
