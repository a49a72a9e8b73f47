import { Elysia, status } from 'elysia'
import type { Server, ServerWebSocket } from 'bun'
import { isNumericString } from 'elysia/utils'
import type { AnyElysia } from 'elysia'
import type { Broker } from './broker/types'
import type { Config } from './config'
import { anonymousIdentity } from './auth/anonymous'
import type { Authenticate, Refusal } from './auth/anonymous'
import type { Conn, Identity } from './hub/connection'
import { createHub } from './hub/hub'
import type { Started } from './hub/session'
import { createPusher } from './pusher'
import type { Pusher } from './pusher'
import { createSse } from './sse'
import { apiRoutes } from './http/api'
import { conversationsRoutes } from './http/conversations-api'
import { moderationRoutes } from './http/moderation-api'
import { pushRoutes } from './http/push-api'
import { searchRoutes } from './http/search-api'
import { pollsRoutes } from './http/polls-api'
import { uploadsRoutes } from './http/uploads-api'
import type { Uploads } from './uploads/service'
import { demoRoutes } from './http/demo'
import { listeners } from './http/listeners'
import { createDoor, refusalResponse } from './hub/admission'
import type { Ticket } from './hub/admission'
import { memoryLedger } from './cluster/ledger'
import type { Ledger } from './cluster/ledger'
import type { Online } from './cluster/online'
import type { UserConnCounter } from './cluster/user-conns'
import type { RedisConnections } from './broker/redis-connect'
import type { Cluster } from './cluster/heartbeat'
import { docsRoutes } from './http/docs'
import { adminRoutes } from './http/admin'
import { nodeStats } from './broker/node-stats'
import { json, validationReason } from './http/route-spec'
import { CLOSE } from './protocol/server-frames'
import { opsRoutes } from './http/ops'
import type { Check } from './http/ops'
import { log } from './log'
import type { Metrics } from './metrics'
import type { Store } from './store/types'
import type { Members } from './members/types'
import type { Threads } from './members/threads'
import type { ScheduledQueue } from './members/scheduled'
import pkg from '../package.json'
import type { HubPush } from './push'
import type { HubWebhooks } from './webhooks'
import type { WordFilter } from './hub/word-filter'
import { sharedPreviewCache } from './hub/previews'
import { createOutbox } from './outbox'
import type { Outbox } from './outbox'

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

/**
 * A young-generation collection every this many upgrades that take the node to a new high of
 * connections. An upgrade leaves a few KiB of short-lived objects; in a burst of connections they
 * piled up between collections and the heap's high-water mark stayed in the RSS, interleaved with
 * the sockets' long-lived records. `Bun.gc(false)` asks for the collection without waiting for it
 * (figures: docs/performance.md, "A young collection every 200 upgrades").
 */
const EDEN_GC_EVERY_UPGRADES = 200
/**
 * And past 10 000 connections, one every (connections / this) upgrades: a young collection's
 * pause grows with the heap, that is with the node's sockets, so a fixed interval made a connect
 * at 19 000 sockets cost ~1.5x one at 1 000 (the mean of three steps of 1 000 connects; 1.1-1.3x
 * with the interval in proportion). Idle memory stayed under 3 KiB a socket at 10 000 and 19 000
 * (docs/performance.md, sixth sitting).
 */
const EDEN_GC_SOCKETS_PER_UPGRADE = 50
/**
 * Below that high (a reconnect storm refilling the node, whose heap held as many sockets before),
 * one every this many: every 200 cost a storm of 19 000 resumes 10–16 % of its CPU, and the RSS
 * after the storm was the same with one every 1 000 (docs/performance.md, sixth sitting).
 */
const EDEN_GC_EVERY_REFILL = 1000

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
  /** The users' thread lists and markers (main chooses the engine beside the memberships); absent: in this process. */
  threads?: Threads
  /** The pending scheduled messages (main chooses the engine beside the memberships); absent: in this process. */
  scheduled?: ScheduledQueue
  /** Cluster-wide connection counts per user (Redis), for MAX_CONNECTIONS_PER_USER. */
  userConns?: UserConnCounter
  /** With Redis: the node's connections and the cluster's heartbeat (the admin view of every node). */
  redis?: { connections: RedisConnections; nodes: Cluster }
  webhooks?: HubWebhooks
  /** Attachments (POST /api/uploads); absent: chat and dm refuse `attachments`. */
  uploads?: Uploads
  push?: HubPush
  /** The node's ledger (cluster/ledger.ts), for the Pusher face's channel counts; one node's when absent. */
  ledger?: Ledger
  /** Who is online, cluster-wide; absent when neither webhooks nor push follow it. */
  online?: Online
  /** The word filter (main makes it, to stop the start on a bad MODERATION_WORDS_FILE); made from config when absent. */
  words?: WordFilter
}

/** The Elysia app: HTTP routes, the /ws upgrade and the hub behind it. */
export function createApp(deps: AppDeps) {
  const { config, broker, metrics } = deps
  const authenticate: Authenticate = deps.authenticate ?? (async ({ query }) => anonymousIdentity(query))
  /** The one door of every face (src/hub/admission.ts): /ws below, the Pusher face's /app/:key. */
  const door = createDoor({
    maxConnections: config.MAX_CONNECTIONS,
    perIp: config.MAX_CONNECTIONS_PER_IP,
    perUser: config.MAX_CONNECTIONS_PER_USER,
    origins: config.ALLOWED_ORIGINS,
    connectRate: config.CONNECT_RATE_PER_SEC,
    trustProxy: config.TRUST_PROXY,
    draining: () => hub.draining || (pusher?.draining ?? false),
    metrics,
    users: deps.userConns,
  })

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
    threads: deps.threads,
    scheduled: deps.scheduled,
    webhooks: deps.webhooks,
    uploads: deps.uploads,
    push: deps.push,
    online: deps.online,
    words: deps.words,
    // With Redis the nodes share what they fetched: a link is fetched once per TTL, not once per node.
    previewCache: deps.redis && sharedPreviewCache(deps.redis.connections.cmd, config.REDIS_PREFIX),
  })

  // One ledger for the faces' books (main passes the node's; alone, one in memory) and Bun's server, set once it listens.
  const ledger = deps.ledger ?? memoryLedger()
  const bunServer = (): Server<unknown> => (net.set(app.server), net.server()!)

  // The Pusher protocol's face (src/pusher): its routes, and its sockets in the hub's delivery and drain (the hub's hooks).
  const pusher: Pusher | undefined = config.PUSHER_KEY
    ? createPusher({
        config,
        broker,
        metrics,
        nodeId: deps.nodeId,
        server: bunServer,
        door,
        ledger,
      })
    : undefined
  if (pusher) {
    hub.onDeliver(pusher.delivery)
    hub.onDrain(pusher.drain)
  }

  /** The admin view of this node (and, with Redis, of the cluster); main starts and stops its ticks. */
  const stats = nodeStats({
    nodeId: deps.nodeId,
    version: pkg.version,
    redis: deps.redis && { cmd: deps.redis.connections.cmd, prefix: config.REDIS_PREFIX, nodes: deps.redis.nodes },
    read: () => ({
      connections: hub.size + (pusher?.size ?? 0),
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
   * A socket's data, from the upgrade on. Elysia's Bun handlers call `ws.data.open` (and
   * `message`, `close`, `pong`) with Bun's own socket. The upgrade is a Bun route (see below),
   * not Elysia's ws route: that one builds the whole request context, a closure per event and
   * a copy of it all per upgrade (its RSS per socket: docs/performance.md). This is one
   * small object, its handlers on the prototype, frames parsed as Elysia parses them; it also
   * holds the socket's admission ticket.
   */
  class Socket implements Ticket {
    conn: Conn | undefined = undefined
    /** From the upgrade until `open`: its connection, started before the upgrade (Session.start). */
    started: Started | undefined = undefined
    /** The ticket's fields (Ticket): `ip` is the address key of the connection limits. */
    ip = ''
    countedUser: string | undefined = undefined
    opened = false
    released = false
    timer: Ticket['timer'] = undefined
    open(ws: ServerWebSocket<unknown>) {
      const started = this.started!
      this.started = undefined
      if (!door.opened(this)) {
        // Opened after its admission was given back: it would count against no limit. 1001
        // (as a draining node says it) makes the client reconnect and resume.
        started.abandon()
        ws.close(CLOSE.goingAway, 'admission expired: reconnect')
        return
      }
      // Set first: a close asked for while it had no socket closes it in attach, and Bun's
      // close event must find its connection. Synchronous here: `welcome` goes out in the 101's write.
      this.conn = started.conn
      started.attach(ws)
    }
    message(_ws: unknown, message: string | Buffer) {
      if (!this.conn) return
      const p = hub.message(this.conn, parseFrame(message))
      if (p) p.catch((err) => log.error('frame failed', { conn: this.conn?.id, err }))
    }
    close(_ws: unknown, code: number, reason: string) {
      door.release(this)
      if (this.conn) hub.close(this.conn, code, reason)
    }
    pong() {
      if (this.conn) hub.pong(this.conn)
    }
  }

  const queryOf = (url: string): Record<string, string> => {
    const q = url.indexOf('?')
    return q < 0 ? {} : Object.fromEntries(new URLSearchParams(url.slice(q + 1)))
  }

  /**
   * Who is connecting (/ws and /sse alike): the token or query, then the door's user limit. A
   * refusal is the answer to send (the ticket is released then).
   */
  async function identify(req: Request, remote: string, t: Ticket): Promise<Identity | Response> {
    let who: Identity | Refusal
    try {
      who = await authenticate({ query: queryOf(req.url), headers: { authorization: req.headers.get('authorization') ?? undefined } })
    } catch (err) {
      door.release(t)
      log.error('http error', { code: 'UPGRADE', err })
      return json(500, { error: 'internal' })
    }
    if ('reason' in who) {
      door.release(t)
      if (who.status && who.status !== 401) return json(who.status, { error: 'bad_request', reason: who.reason })
      metrics.authRefused.labels({ reason: who.reason }).inc()
      log.warn('upgrade refused', { reason: who.reason, remote })
      hub.audit({ event: 'auth_refused', detail: { reason: who.reason, remote } })
      return json(401, { error: 'unauthorized', reason: who.reason })
    }
    const over = await door.admitUser(t, who.user.id)
    return over ? refusalResponse(over) : who
  }

  /** Server-Sent Events with POST (src/sse): sessions of the same hub, through the same door. */
  const sse = createSse({
    config,
    broker,
    metrics,
    nodeId: deps.nodeId,
    server: bunServer,
    door,
    hub,
    identify,
    sessions: ledger.book('sse'),
  })
  hub.onDeliver(sse.delivery)

  /**
   * The transactional outbox (src/outbox): rows of the application's database sent through the
   * hub's one append path, as /api/publish sends (a dm as a client's dm). main starts it once
   * the broker runs and stops it first on shutdown.
   */
  const outbox: Outbox | undefined = config.OUTBOX_DSN
    ? createOutbox({
        dsn: config.OUTBOX_DSN,
        table: config.OUTBOX_TABLE,
        pollMs: config.OUTBOX_POLL_MS,
        nodeId: deps.nodeId,
        metrics,
        limits: config,
        deliver: { publish: hub.publish, sendDirect: hub.sendDirect, user: (id) => deps.members.user(id) },
      })
    : undefined

  /** Upgrades since the last collection asked for, and the most connections the node has held (see EDEN_GC_EVERY_UPGRADES). */
  let upgrades = 0
  let high = 0
  /**
   * GET /ws: every check before the upgrade (the door: draining, origin, connect rate,
   * connection limits; then who it is), so a refused client costs an HTTP answer and never a socket.
   */
  async function upgradeRoute(req: Request, server: Server<unknown>): Promise<Response | undefined> {
    const since = performance.now()
    // Only the headers read here: a copy of them all is garbage per connection.
    const header = (name: string) => req.headers.get(name) ?? undefined
    const remote = door.remote(req, server)
    const socket = new Socket()
    const refused = door.admit(socket, header('origin'), remote)
    if (refused) return refusalResponse(refused)
    const who = await identify(req, remote, socket)
    if (who instanceof Response) return who
    if (header('upgrade')?.toLowerCase() !== 'websocket' || !header('sec-websocket-key')) return notUpgrade(socket)
    // The connection starts before the upgrade: its memberships and rooms are read while the
    // client waits for the 101, and its `welcome` leaves with it (see Session.start).
    const started = await hub.start(who, { remote, userAgent: header('user-agent') ?? '', since })
    socket.started = started
    const rising = door.total >= high
    if (rising) high = door.total
    const every = Math.max(EDEN_GC_EVERY_UPGRADES, Math.round(door.total / EDEN_GC_SOCKETS_PER_UPGRADE))
    if (++upgrades >= (rising ? every : Math.max(every, EDEN_GC_EVERY_REFILL))) {
      upgrades = 0
      Bun.gc(false)
    }
    door.upgrading(socket)
    if (server.upgrade(req, { data: socket })) return undefined
    socket.started = undefined
    started.abandon()
    return notUpgrade(socket)
  }

  function notUpgrade(socket: Socket) {
    door.release(socket)
    return json(400, { error: 'bad_request', reason: 'expected a WebSocket upgrade' })
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
    // A Bun route ahead of Elysia's router (other methods on /ws fall through to its 404).
    // Bun's own cap on a request body (128 MiB by default) stays above the upload limit.
    serve: {
      routes: { '/ws': { GET: upgradeRoute as never }, ...(sse.routes as object), ...(pusher?.routes as object | undefined) },
      maxRequestBodySize: Math.max(128 * 1024 * 1024, config.UPLOAD_MAX_BYTES + 1024 * 1024),
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
    .use(pushRoutes({ config, hub, broker, members: deps.members, store: deps.store }))
    .use(searchRoutes({ config, hub, broker, store: deps.store }))
    .use(pollsRoutes({ config, hub, broker, store: deps.store }))
    .use(adminRoutes({ config, stats }))
    .use(
      deps.uploads
        ? uploadsRoutes({ config, uploads: deps.uploads, authenticate, members: deps.members, broker })
        : new Elysia({ name: 'no-uploads' }),
    )
    .use(demoRoutes(config.ENABLE_DEMO))

  return { app, hub, stats, listeners: net, sse, outbox }
}
