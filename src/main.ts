import { createApp } from './app'
import type { AppDeps } from './app'
import { createJwtAuth } from './auth/jwt'
import type { JwtAuth } from './auth/jwt'
import { memoryBroker } from './broker/memory'
import { redisBroker } from './broker/redis'
import { redisConnections } from './broker/redis-connect'
import { redisCluster, singleNode } from './cluster/heartbeat'
import { memoryLedger, redisLedger } from './cluster/ledger'
import { ledgerOnline } from './cluster/online'
import { ledgerUserConns } from './cluster/user-conns'
import type { Cluster } from './cluster/heartbeat'
import { postgresStore } from './store/postgres'
import type { PostgresStore } from './store/postgres'
import { memoryMembers } from './members/memory'
import { postgresMembers } from './members/postgres'
import { redisMembers } from './members/redis'
import type { Members } from './members/types'
import { memoryThreads } from './members/threads'
import type { Threads } from './members/threads'
import { postgresThreads } from './members/threads-postgres'
import { redisThreads } from './members/threads-redis'
import { memoryScheduled } from './members/scheduled'
import type { ScheduledQueue } from './members/scheduled'
import { postgresScheduled } from './members/scheduled-postgres'
import { redisScheduled } from './members/scheduled-redis'
import type { Broker } from './broker/types'
import { ConfigError, describeVariables, loadConfig } from './config'
import type { Config } from './config'
import { healthcheck } from './healthcheck'
import { configureLog, log } from './log'
import { createMetrics } from './metrics'
import { loadTls } from './tls'
import type { TlsFiles } from './tls'
import { createPush } from './push'
import type { Push } from './push'
import { createWebhooks } from './webhooks'
import type { OfflineProvider } from './webhooks'
import { OFFLINE_CAP } from './webhooks/events'
import { supervise, watchSupervisor, workerNumber } from './workers'
import { configuredUploads } from './uploads/setup'
import { createWordFilter } from './hub/word-filter'
import type { WordFilter } from './hub/word-filter'
import pkg from '../package.json'

const args = process.argv.slice(2)
if (args.includes('--version') || args.includes('-v')) {
  console.log(`chat-server ${pkg.version}`)
  process.exit(0)
}
if (args.includes('--help') || args.includes('-h')) {
  console.log(`chat-server ${pkg.version}: a real-time chat server (WebSocket at /ws)

Usage: chat-server [--help] [--version] [--healthcheck]
  --healthcheck  ask the server at HOST/PORT for /healthz; exit 0 when healthy, else 1
                 (for container HEALTHCHECKs where there is no curl)

Configured by environment variables (a .env file in the working directory is read too):

${describeVariables()}`)
  process.exit(0)
}

if (args.includes('--healthcheck')) {
  const { ok, detail } = await healthcheck()
  ;(ok ? console.log : console.error)(`healthcheck ${ok ? 'ok' : 'failed'}: ${detail}`)
  process.exit(ok ? 0 : 1)
}

let config: Config
let auth: JwtAuth | undefined
let tls: TlsFiles | undefined
try {
  config = loadConfig()
  if (config.TLS_CERT_FILE && config.TLS_KEY_FILE) tls = loadTls(config.TLS_CERT_FILE, config.TLS_KEY_FILE)
  if (config.authMode !== 'off') auth = await createJwtAuth(config)
} catch (err) {
  if (!(err instanceof ConfigError)) throw err
  for (const line of err.lines) console.error(`config error: ${line}`)
  process.exit(1)
}

const worker = workerNumber()
if (config.WORKERS > 1 && worker === undefined) {
  configureLog(config.LOG_LEVEL, { supervisor: true })
  await supervise(config.WORKERS, config.SHUTDOWN_GRACE_S * 1000)
}
// Each worker is a node of its own: a fixed NODE_ID gets the worker's number.
const nodeId = config.NODE_ID ? (worker ? `${config.NODE_ID}-${worker}` : config.NODE_ID) : `node-${Bun.randomUUIDv7().slice(-8)}`
configureLog(config.LOG_LEVEL, worker ? { node: nodeId, worker } : { node: nodeId })
const metrics = createMetrics()

/** A dependency that does not answer at startup stops it, naming the variable; later outages are survived. */
async function orExit<T>(variable: string, start: () => Promise<T>): Promise<T> {
  try {
    return await start()
  } catch (err) {
    console.error(`startup error: ${variable}: ${(err as Error).message}`)
    process.exit(1)
  }
}

const store: PostgresStore | undefined =
  config.ENABLE_PERSISTENCE && config.POSTGRES_DSN
    ? await orExit('POSTGRES_DSN', () =>
        postgresStore({
          dsn: config.POSTGRES_DSN!,
          nodeId,
          messageRetentionDays: config.MESSAGE_RETENTION_DAYS,
          auditRetentionDays: config.AUDIT_RETENTION_DAYS,
          maxBacklog: config.STORE_MAX_BACKLOG,
          onError: () => metrics.storeErrors.inc(),
        }),
      )
    : undefined
const origin = store?.origin

// One set of Redis connections per node and one heartbeat, handed to whatever needs them.
const connections = config.REDIS_URL ? redisConnections(config.REDIS_URL, config.REDIS_CLUSTER) : undefined
const nodes: Cluster = connections ? redisCluster({ cmd: connections.cmd, prefix: config.REDIS_PREFIX, nodeId }) : singleNode(nodeId)
const redisDeps = connections && { connections, nodes }
// Who is online, cluster-wide, kept once (presence, liveness, Pusher occupancy, connection counts): one write per fact.
const ledger = connections
  ? redisLedger({
      cmd: connections.cmd,
      prefix: config.REDIS_PREFIX,
      nodes,
      onError: () => metrics.brokerErrors.inc(),
      bun: connections.scripts,
    })
  : memoryLedger()
const redis = connections
  ? redisBroker({
      redis: connections,
      nodes,
      ledger,
      cluster: config.REDIS_CLUSTER,
      prefix: config.REDIS_PREFIX,
      nodeId,
      historyLimit: config.HISTORY_LIMIT,
      historyTtlMs: config.HISTORY_TTL_S * 1000,
      reactionCaps: {
        perMessage: config.MAX_REACTIONS_PER_MESSAGE,
        perUser: config.MAX_REACTIONS_PER_USER,
        pinsPerRoom: config.PINS_MAX_PER_ROOM,
      },
      loadMessages: store && ((room, ids) => store.messages(room, ids)),
      origin,
      store,
      onError: () => metrics.brokerErrors.inc(),
    })
  : undefined
const broker: Broker =
  redis ??
  memoryBroker({
    historyLimit: config.HISTORY_LIMIT,
    origin,
    store,
    historyTtlMs: config.HISTORY_TTL_S ? config.HISTORY_TTL_S * 1000 : undefined,
    maxRooms: config.MAX_ROOMS,
    reactionCaps: {
      perMessage: config.MAX_REACTIONS_PER_MESSAGE,
      perUser: config.MAX_REACTIONS_PER_USER,
      pinsPerRoom: config.PINS_MAX_PER_ROOM,
    },
    loadMessages: store && ((room, ids) => store.messages(room, ids)),
    ledger,
    onEvict: () => metrics.roomsEvicted.inc(),
  })
// Memberships are durable with PostgreSQL, cluster-wide with Redis, else in this process.
const members: Members = store
  ? postgresMembers(store.sql, () => metrics.storeErrors.inc())
  : redis
    ? redisMembers(redis.client, config.REDIS_PREFIX)
    : memoryMembers()
// Thread lists and markers live where the memberships do.
const threads: Threads = store ? postgresThreads(store.sql) : redis ? redisThreads(redis.client, config.REDIS_PREFIX) : memoryThreads()
// Scheduled messages too: durable with PostgreSQL or Redis; in this process (lost on restart) else.
const scheduled: ScheduledQueue = store
  ? postgresScheduled(store.sql)
  : redis
    ? redisScheduled(redis.client, config.REDIS_PREFIX)
    : memoryScheduled()

const userConns = config.REDIS_URL && config.MAX_CONNECTIONS_PER_USER > 0 ? ledgerUserConns(ledger.book('conns')) : undefined
const authDeps: Partial<AppDeps> = auth ? { authenticate: auth.authenticate, refresh: auth.refresh, checks: auth.checks } : {}
/**
 * `offline` of message.created: the room's members with no live connection in the cluster, up
 * to the cap. Not for the default room, which every user is a member of (an offline list of
 * everyone would be neither bounded nor useful for push).
 */
const offline: OfflineProvider = async (room, sender, online) => {
  if (room === config.DEFAULT_ROOM) return []
  const { members: list } = await members.list(room, undefined, OFFLINE_CAP + 1)
  const ids = list.map((m) => m.id).filter((id) => id !== sender)
  const live = await online(ids)
  return ids.filter((id) => !live.has(id))
}
// Upload metadata where the memberships are; the files on disk (UPLOAD_DIR) or in S3.
const uploads = configuredUploads(config, { sql: store?.sql, redis: connections?.cmd })
// The users and rooms online: written once, followed by the webhooks and push (absent when neither is on).
const online = ledgerOnline((onEdge) => ledger.book('live', onEdge))
const webhooks = createWebhooks({ config, metrics, nodeId, offline, redis: redisDeps, sql: store?.sql, online })
let push: Push | undefined
try {
  // The badge is the hub's unread count; the hub is made below, and push asks only once it runs.
  push = createPush({ config, metrics, nodeId, members, emit: webhooks?.emit, redis: redisDeps, badge: (user) => hub.badge(user), online })
} catch (err) {
  console.error(`config error: ${(err as Error).message}`)
  process.exit(1)
}
// The word filter: a file that cannot be read or compiled stops the start, naming the variable.
let words: WordFilter
try {
  words = createWordFilter({ file: config.MODERATION_WORDS_FILE, action: config.MODERATION_WORDS_ACTION })
} catch (err) {
  console.error(`config error: ${(err as Error).message}`)
  process.exit(1)
}
const followed = webhooks?.hub.emit || push ? online : undefined
const { app, hub, stats, listeners, outbox } = createApp({
  config,
  broker,
  metrics,
  nodeId,
  store,
  members,
  threads,
  scheduled,
  userConns,
  redis: redisDeps,
  ledger,
  online: followed,
  webhooks: webhooks?.hub,
  uploads,
  push: push?.hub,
  words,
  ...authDeps,
})
await orExit('REDIS_URL', () => broker.start(hub.deliver, hub.reset))
await orExit(config.REDIS_URL ? 'REDIS_URL' : 'POSTGRES_DSN', async () => webhooks?.start())
if (push) await orExit('REDIS_URL', () => push.start())
// After every book of the ledger is open: reaping what dead nodes left (and this node's earlier life) tells each its edges.
await orExit('REDIS_URL', () => nodes.start())
// Once the room log runs: the outbox's rows go through it.
if (outbox) await orExit('OUTBOX_DSN', () => outbox.start())
// reusePort: WORKERS share the port, and a renewed TLS certificate takes it over (SIGHUP below).
app.listen({ hostname: config.HOST, port: config.PORT, reusePort: true, ...(tls ? { tls: { cert: tls.cert, key: tls.key } } : {}) })
listeners.set(app.server)
const port = app.server!.port
log.info('listening', {
  host: config.HOST,
  port,
  tls: tls ? { subject: tls.subject, notAfter: tls.notAfter } : false,
  broker: broker.kind,
  store: store ? 'postgres' : 'none',
  auth: config.authMode,
  version: pkg.version,
})
if (config.APP_ENV === 'production' && config.authMode === 'off')
  log.warn('authentication is off: anyone can connect; set JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL')

auth?.start() // a JWKS that cannot be fetched now is retried; it never stops the server
const sweep = setInterval(hub.sweep, 1000)
// Orphan uploads: a few sweeps per TTL, at most one a minute.
const uploadSweep = setInterval(
  () =>
    void uploads.sweep().then(
      (n) => n && log.info('orphan uploads removed', { count: n }),
      (err) => log.warn('orphan sweep failed', { err }),
    ),
  Math.min(60_000, Math.max(200, (config.UPLOAD_ORPHAN_TTL_S * 1000) / 4)),
)
stats.start()

// postgres.js can throw from a socket callback when the database drops a connection
// (porsager/postgres#1208; seen here as a bare ECONNRESET): nothing of ours to catch it, and
// exiting would drop every chat connection for an outage the store already survives.
// Such an error is logged and counted; the node keeps serving.
const uncaught = (kind: string) => (err: unknown) => {
  metrics.uncaught.inc()
  log.error(`${kind}; serving on`, {
    err: err instanceof Error ? err : String(err),
    stack: err instanceof Error ? err.stack?.split('\n').slice(0, 4).join(' | ') : undefined,
  })
}
process.on('uncaughtException', uncaught('uncaught exception'))
process.on('unhandledRejection', uncaught('unhandled rejection'))

let stopping = false
async function shutdown(signal: string) {
  if (stopping) return
  stopping = true
  clearInterval(sweep)
  clearInterval(uploadSweep)
  auth?.stop()
  const graceMs = config.SHUTDOWN_GRACE_S * 1000
  setTimeout(() => {
    log.warn('drain took too long; exiting')
    process.exit(0)
  }, graceMs + 500).unref()
  log.info('draining', { signal, connections: hub.size })
  // No new outbox batch from now on; the one in flight commits while the sockets drain.
  const outboxStopped = outbox?.stop(Math.min(5000, graceMs))
  const left = await hub.drain(Math.max(0, graceMs - 500))
  await outboxStopped
  app.server?.stop(true)
  await stats.stop()
  await push?.stop(Math.min(2000, graceMs))
  await webhooks?.stop(Math.min(2000, graceMs))
  await broker.close()
  await nodes.stop()
  connections?.close()
  await store?.close()
  log.info('stopped', { left })
  process.exit(0)
}
process.on('SIGTERM', () => void shutdown('SIGTERM'))
// A full garbage collection on demand, so that memory can be read without garbage in it
// (bench/churn.ts; an operator chasing a leak).
process.on('SIGUSR2', () => {
  Bun.gc(true)
  const m = process.memoryUsage()
  log.info('garbage collected', { rss: m.rss, heapUsed: m.heapUsed })
})
// SIGHUP rereads what an operator edits in place: the word list (a bad file keeps the list in use), then TLS below.
process.on('SIGHUP', () => {
  if (!config.MODERATION_WORDS_FILE) return
  try {
    log.info('SIGHUP: word list reloaded', { words: hub.words.reload().size })
  } catch (err) {
    log.error('SIGHUP: word list refused; still using the old one', { err: (err as Error).message })
  }
})
process.on('SIGHUP', () => {
  if (!tls || !config.TLS_CERT_FILE || !config.TLS_KEY_FILE) return log.info('SIGHUP: nothing to reload (TLS is off)')
  if (stopping) return
  let next: TlsFiles
  try {
    next = loadTls(config.TLS_CERT_FILE, config.TLS_KEY_FILE)
  } catch (err) {
    return log.error('SIGHUP: TLS files refused; still serving the old certificate', {
      err: err instanceof ConfigError ? err.lines.join('; ') : String(err),
    })
  }
  if (next.cert === tls.cert && next.key === tls.key) return log.info('SIGHUP: TLS files unchanged', { notAfter: tls.notAfter })
  // Bun cannot swap the certificate of a listening server (server.reload ignores `tls`):
  // a new server takes the port with the new files; the old one keeps its open sockets.
  try {
    app.listen({ hostname: config.HOST, port, reusePort: true, tls: { cert: next.cert, key: next.key } })
    listeners.set(app.server)
    tls = next
    log.info('SIGHUP: TLS certificate reloaded for new connections', {
      subject: next.subject,
      notAfter: next.notAfter,
      retiredListeners: listeners.retired,
    })
  } catch (err) {
    log.error('SIGHUP: could not listen with the new certificate; still serving the old one', { err: String(err) })
  }
})
process.on('SIGINT', () => void shutdown('SIGINT'))
if (worker) watchSupervisor(() => void shutdown('supervisor gone'))
