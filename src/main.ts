import { createApp } from './app'
import type { AppDeps } from './app'
import { createJwtAuth } from './auth/jwt'
import type { JwtAuth } from './auth/jwt'
import { memoryBroker } from './broker/memory'
import { redisBroker } from './broker/redis'
import type { Broker } from './broker/types'
import { ConfigError, describeVariables, loadConfig } from './config'
import type { Config } from './config'
import { configureLog, log } from './log'
import { createMetrics } from './metrics'
import pkg from '../package.json'

const args = process.argv.slice(2)
if (args.includes('--version') || args.includes('-v')) {
  console.log(`chat-server ${pkg.version}`)
  process.exit(0)
}
if (args.includes('--help') || args.includes('-h')) {
  console.log(`chat-server ${pkg.version}: a real-time chat server (WebSocket at /ws)

Usage: chat-server [--help] [--version]
Configured by environment variables (a .env file in the working directory is read too):

${describeVariables()}`)
  process.exit(0)
}

let config: Config
let auth: JwtAuth | undefined
try {
  config = loadConfig()
  const notYet = (['POSTGRES_DSN'] as const).filter((k) => config[k])
  if (notYet.length) throw new ConfigError(notYet.map((k) => `${k}: this build has no engine for it yet; unset it`))
  if (config.authMode !== 'off') auth = await createJwtAuth(config)
} catch (err) {
  if (!(err instanceof ConfigError)) throw err
  for (const line of err.lines) console.error(`config error: ${line}`)
  process.exit(1)
}

const nodeId = config.NODE_ID ?? `node-${Bun.randomUUIDv7().slice(-8)}`
configureLog(config.LOG_LEVEL, { node: nodeId })
const metrics = createMetrics()
const broker: Broker = config.REDIS_URL
  ? redisBroker({
      url: config.REDIS_URL,
      prefix: config.REDIS_PREFIX,
      nodeId,
      historyLimit: config.HISTORY_LIMIT,
      onError: () => metrics.brokerErrors.inc(),
    })
  : memoryBroker({ historyLimit: config.HISTORY_LIMIT })

const authDeps: Partial<AppDeps> = auth ? { authenticate: auth.authenticate, refresh: auth.refresh, checks: auth.checks } : {}
const { app, hub } = createApp({ config, broker, metrics, nodeId, ...authDeps })
try {
  await broker.start(hub.deliver)
} catch (err) {
  // Redis must answer at startup; later outages are survived (chat answers `unavailable`).
  console.error(`startup error: REDIS_URL: ${(err as Error).message}`)
  process.exit(1)
}
app.listen({ hostname: config.HOST, port: config.PORT })
const port = app.server!.port
log.info('listening', { host: config.HOST, port, broker: broker.kind, auth: config.authMode, version: pkg.version })
if (config.APP_ENV === 'production' && config.authMode === 'off')
  log.warn('authentication is off: anyone can connect; set JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL')

auth?.start() // a JWKS that cannot be fetched now is retried; it never stops the server
const sweep = setInterval(hub.sweep, 1000)

let stopping = false
async function shutdown(signal: string) {
  if (stopping) return
  stopping = true
  clearInterval(sweep)
  auth?.stop()
  const graceMs = config.SHUTDOWN_GRACE_S * 1000
  setTimeout(() => {
    log.warn('drain took too long; exiting')
    process.exit(0)
  }, graceMs + 500).unref()
  log.info('draining', { signal, connections: hub.size })
  const left = await hub.drain(Math.max(0, graceMs - 500))
  app.server?.stop(true)
  await broker.close()
  log.info('stopped', { left })
  process.exit(0)
}
process.on('SIGTERM', () => void shutdown('SIGTERM'))
process.on('SIGINT', () => void shutdown('SIGINT'))
