import { createApp } from './app'
import { memoryBroker } from './broker/memory'
import type { Broker } from './broker/types'
import { ConfigError, describeVariables, loadConfig } from './config'
import type { Config } from './config'
import { healthcheck } from './healthcheck'
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
try {
  config = loadConfig()
  const notYet = (['REDIS_URL', 'POSTGRES_DSN', 'JWT_SECRET', 'JWT_PUBLIC_KEY', 'JWT_JWKS_URL'] as const).filter((k) => config[k])
  if (notYet.length) throw new ConfigError(notYet.map((k) => `${k}: this build has no engine for it yet; unset it`))
} catch (err) {
  if (!(err instanceof ConfigError)) throw err
  for (const line of err.lines) console.error(`config error: ${line}`)
  process.exit(1)
}

const nodeId = config.NODE_ID ?? `node-${Bun.randomUUIDv7().slice(-8)}`
configureLog(config.LOG_LEVEL, { node: nodeId })
const metrics = createMetrics()
const broker: Broker = memoryBroker({ historyLimit: config.HISTORY_LIMIT })

const { app, hub } = createApp({ config, broker, metrics, nodeId })
await broker.start(hub.deliver)
app.listen({ hostname: config.HOST, port: config.PORT })
const port = app.server!.port
log.info('listening', { host: config.HOST, port, broker: broker.kind, auth: config.authMode, version: pkg.version })
if (config.APP_ENV === 'production' && config.authMode === 'off')
  log.warn('authentication is off: anyone can connect; set JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL')

const sweep = setInterval(hub.sweep, 1000)

let stopping = false
async function shutdown(signal: string) {
  if (stopping) return
  stopping = true
  clearInterval(sweep)
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
