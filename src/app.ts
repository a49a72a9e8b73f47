import { Elysia, status } from 'elysia'
import { isNumericString } from 'elysia/utils'
import type { AnyElysia } from 'elysia'
import type { Broker } from './broker/types'
import type { Config } from './config'
import { anonymousIdentity } from './auth/anonymous'
import type { Refusal } from './auth/anonymous'
import type { Conn, Identity } from './hub/connection'
import { createHub } from './hub/hub'
import { apiRoutes } from './http/api'
import { conversationsRoutes } from './http/conversations-api'
import { moderationRoutes } from './http/moderation-api'
import { demoRoutes } from './http/demo'
import { clientAddress, limitKey, trustedProxies } from './http/client-ip'
import { listeners } from './http/listeners'
import { connLimits } from './hub/conn-limits'
import type { LimitReason, Ticket } from './hub/conn-limits'
import type { UserConnCounter } from './broker/redis-user-conns'
import { docsRoutes } from './http/docs'
import { adminRoutes } from './http/admin'
import { nodeStats } from './broker/node-stats'
import { validationReason } from './http/route-spec'
import { opsRoutes } from './http/ops'
import type { Check } from './http/ops'
import { log } from './log'
import type { Metrics } from './metrics'
import type { Store } from './store/types'
import type { Members } from './members/types'
import pkg from '../package.json'
import type { HubWebhooks } from './webhooks'

/**
 * A text frame as Elysia hands it to a ws handler: JSON when it looks like JSON (and parses),
 * a number, boolean or null when it is one, else the string; binary frames as they are.
 */
export function parseFrame(message: string | Buffer): unknown {
  if (typeof message !== 'string') return message
  const start = message.charCodeAt(0)
  if (start === 34 || start === 47 || start === 91 || start === 123) {
    try {
      return JSON.parse(message)
    } catch {
      return message
    }
  }
  if (isNumericString(message)) return +message
  return message === 'true' ? true : message === 'false' ? false : message === 'null' ? null : message
}

/** Resolves who is connecting, from the upgrade request. */
export type Authenticate = (req: { query: Record<string, string | undefined>; headers: Record<string, string | undefined> }) => Promise<Identity | Refusal>

export interface AppDeps {
  config: Config
  broker: Broker
  metrics: Metrics
  nodeId: string
  authenticate?: Authenticate
  refresh?: (token: string) => Promise<Identity>
  checks?: Record<string, Check>
  store?: Store
  members: Members
  /** Cluster-wide connection counts per user (Redis), for MAX_CONNECTIONS_PER_USER. */
  userConns?: UserConnCounter
  webhooks?: HubWebhooks
}

interface SocketData {
  identity: Identity
  conn: Conn
  headers: Record<string, string | undefined>
  ticket: Ticket
  /** The client's address (TRUST_PROXY decides whether X-Forwarded-For is believed). */
  remote: string
}

/** The Elysia app: HTTP routes, the /ws upgrade and the hub behind it. */
export function createApp(deps: AppDeps) {
  const { config, broker, metrics } = deps
  const authenticate: Authenticate = deps.authenticate ?? (async ({ query }) => anonymousIdentity(query))
  const origins = config.ALLOWED_ORIGINS ? new Set(config.ALLOWED_ORIGINS) : undefined
  const trusted = trustedProxies(config.TRUST_PROXY)
  const limits = connLimits({ maxConnections: config.MAX_CONNECTIONS, perIp: config.MAX_CONNECTIONS_PER_IP, perUser: config.MAX_CONNECTIONS_PER_USER, users: deps.userConns })
  /** Under a flood, one log line a second says how many were refused, not one per refusal. */
  let refusedLogged = 0
  let refusedSince = 0
  const overLimit = (reason: LimitReason, remote: string, user?: string) => {
    metrics.connRefused.labels({ reason }).inc()
    refusedSince++
    if (Date.now() - refusedLogged >= 1000) {
      log.warn('connection refused: limit', { reason, remote, user, refused: refusedSince })
      refusedLogged = Date.now()
      refusedSince = 0
    }
    return status(429, { error: 'limit', reason })
  }

  const net = listeners()
  const hub = createHub({
    config,
    broker,
    metrics,
    nodeId: deps.nodeId,
    server: () => {
      net.set(app.server)
      return net.server()
    },
    refresh: deps.refresh,
    store: deps.store,
    members: deps.members,
    webhooks: deps.webhooks,
  })

  /** The admin view of this node (and, with Redis, of the cluster); main starts and stops its ticks. */
  const stats = nodeStats({
    nodeId: deps.nodeId,
    version: pkg.version,
    redis: config.REDIS_URL ? { url: config.REDIS_URL, prefix: config.REDIS_PREFIX, cluster: config.REDIS_CLUSTER } : undefined,
    read: () => ({
      connections: hub.size,
      rooms: hub.roomCount,
      publishedTotal: metrics.published.n,
      deliveredTotal: metrics.delivered.n,
      redis: broker.kind === 'redis' ? (broker.problem() ?? 'ok') : 'off',
      postgres: deps.store ? (deps.store.problem() ?? 'ok') : 'off',
      draining: hub.draining,
      roomSizes: hub.roomSizes,
    }),
  })

  /**
   * A socket's data once open. Elysia's Bun handlers call `ws.data.message` (and `close`,
   * `pong`, `drain`, `ping`) with Bun's own socket; what Elysia puts there per socket is the
   * whole request context and a closure for each event, and its `message` makes a wrapper
   * object and a promise chain per frame. This replaces it: one small object per socket, its
   * handlers shared on the prototype, frames parsed as Elysia parses them.
   */
  class Socket {
    constructor(
      readonly conn: Conn,
      readonly ticket: Ticket,
    ) {}
    message(_ws: unknown, message: string | Buffer) {
      const p = hub.message(this.conn, parseFrame(message))
      if (p) p.catch((err) => log.error('frame failed', { conn: this.conn.id, err }))
    }
    close(_ws: unknown, code: number, reason: string) {
      limits.release(this.ticket)
      hub.close(this.conn, code, reason)
    }
    pong() {
      hub.pong(this.conn)
    }
  }

  const app = new Elysia({
    websocket: {
      maxPayloadLength: config.MAX_FRAME_BYTES,
      backpressureLimit: config.MAX_BUFFERED_BYTES,
      closeOnBackpressureLimit: false,
      idleTimeout: config.IDLE_TIMEOUT_S,
      sendPings: true,
      perMessageDeflate: false,
    },
  })
    .onError(({ code, error }) => {
      if (code === 'NOT_FOUND') return status(404, { error: 'not_found' })
      if (code === 'PARSE') return status(400, { error: 'bad_request', reason: 'body: not valid JSON' })
      if (code === 'VALIDATION' && error.type !== 'response') return status(400, { error: 'bad_request', reason: validationReason(error) })
      // A hook threw status(...): its response is already the answer.
      if (typeof code === 'number') return
      log.error('http error', { code: String(code), err: error })
      return status(500, { error: 'internal' })
    })
    .use(
      opsRoutes({
        metrics,
        checks: { broker: () => broker.problem(), ...(deps.store ? { store: () => deps.store!.problem() } : {}), ...deps.checks },
        draining: () => hub.draining,
      }),
    )
    .use(docsRoutes({ version: pkg.version, app: (): AnyElysia => app }))
    .use(apiRoutes({ config, hub, broker, store: deps.store }))
    .use(conversationsRoutes({ config, hub, broker, members: deps.members, store: deps.store }))
    .use(moderationRoutes({ config, hub, broker, members: deps.members, store: deps.store }))
    .use(adminRoutes({ config, stats }))
    .use(demoRoutes(config.ENABLE_DEMO))
    .ws('/ws', {
      async beforeHandle(ctx) {
        // Elysia runs a ws route's beforeHandle twice on success (as a hook, then again in the
        // upgrade handler, on the same context): the second time everything is decided.
        if ((ctx as unknown as Partial<SocketData>).ticket) return
        if (hub.draining) return status(503, { error: 'unavailable', reason: 'draining' })
        const origin = ctx.headers.origin
        if (origins && origin !== undefined && !origins.has(origin)) {
          log.warn('origin refused', { origin })
          return status(403, { error: 'forbidden', reason: 'origin_not_allowed' })
        }
        const remote = clientAddress(ctx.server?.requestIP(ctx.request)?.address, ctx.headers['x-forwarded-for'], trusted)
        const ticket = limits.admit(limitKey(remote))
        if (typeof ticket === 'string') return overLimit(ticket, remote)
        let who: Identity | Refusal
        try {
          who = await authenticate({ query: ctx.query, headers: ctx.headers })
        } catch (err) {
          limits.release(ticket)
          throw err
        }
        if ('reason' in who) {
          limits.release(ticket)
          if (who.status && who.status !== 401) return status(who.status as 400, { error: 'bad_request', reason: who.reason })
          metrics.authRefused.labels({ reason: who.reason }).inc()
          log.warn('upgrade refused', { reason: who.reason, remote })
          hub.audit({ event: 'auth_refused', detail: { reason: who.reason, remote } })
          return status(401, { error: 'unauthorized', reason: who.reason })
        }
        const over = await limits.admitUser(ticket, who.user.id)
        if (over) return overLimit(over, remote, who.user.id)
        Object.assign(ctx as unknown as SocketData, { identity: who, ticket, remote })
      },
      open(ws) {
        const data = ws.data as unknown as SocketData
        limits.opened(data.ticket)
        data.conn = hub.open(ws.raw as never, data.identity, {
          remote: data.remote,
          userAgent: data.headers['user-agent'] ?? '',
        })
        // From here on Bun's events reach the hub without Elysia's per-message wrapper, and the
        // request context Elysia kept in `data` (with a closure per event) can go.
        ;(ws.raw as { data: unknown }).data = new Socket(data.conn, data.ticket)
      },
      // Only until `open` replaced the socket's data (see Socket).
      message(ws, message) {
        return hub.message((ws.data as unknown as SocketData).conn, message)
      },
      close(ws, code, reason) {
        const data = ws.data as unknown as SocketData
        if (data.ticket) limits.release(data.ticket)
        const conn = data.conn
        if (conn) hub.close(conn, code, reason)
      },
      pong(ws) {
        const conn = (ws.data as unknown as SocketData).conn
        if (conn) hub.pong(conn)
      },
    })

  return { app, hub, stats, listeners: net }
}
