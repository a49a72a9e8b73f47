/**
 * Opt-in scenario `npm run bench -- --only=cluster`: many rooms (default 1000 rooms × 10
 * members, one sender in every room keeping `--cluster-window` messages in flight), through
 * one private redis-server vs a real Redis Cluster (3 primaries + 3 replicas on loopback), with
 * WORKERS=1 and 2. Reports acked messages/s, deliveries/s, the CPU of chat-server, of the load
 * generator (bench/lib/rooms.ts: its worker processes and this one) and of every Redis
 * instance, and Redis CPU per message per shard (INFO CPU used_cpu_sys + used_cpu_user, read
 * before and after). Errors are those of the measured window.
 *
 *   --cluster-rooms (1000) --cluster-members (10) --cluster-s (5, measured seconds)
 *   --cluster-window (2 messages in flight per sender) --cluster-configs=single-1,cluster-1,single-2,cluster-2
 */
import { startRedisCluster } from '../test/helpers/redis-cluster'
import { freePort } from '../test/helpers/services'
import { openRooms, privateRedis, redisCpu, treeCpu } from './lib/rooms'
import { startServer } from './lib/proc'

export interface ClusterOptions {
  rooms: number
  members: number
  seconds: number
  window: number
  configs: string[]
}

const log = (...a: unknown[]) => console.error('[bench:cluster]', ...a)

async function runOne(config: string, o: ClusterOptions) {
  const [mode, workers] = config.split('-') as ['single' | 'cluster', string]
  const redis = mode === 'cluster' ? await startRedisCluster() : await privateRedis()
  const port = freePort()
  const env: Record<string, string> = {
    REDIS_URL: redis.url,
    REDIS_PREFIX: 'bench:',
    WORKERS: workers,
    PORT: String(port),
    RATE_LIMIT_PER_SEC: '0',
    MAX_BUFFERED_BYTES: String(256 * 1024 * 1024),
    IDLE_TIMEOUT_S: '960',
    ENABLE_DEMO: 'false',
    LOG_LEVEL: 'warn',
  }
  if (mode === 'cluster') env.REDIS_CLUSTER = 'true'
  // LOG_LEVEL=warn hides `listening`: start with info, the supervisor's line is enough.
  const started = await startServer('chat', { ...env, LOG_LEVEL: 'info' })
  if (!started.ok) throw new Error(`chat-server did not start: ${started.stderr}`)
  const server = started.server
  try {
    await Bun.sleep(workers === '1' ? 200 : 1500) // every worker listening
    const t0 = performance.now()
    const load = await openRooms(
      [port],
      Array.from({ length: o.rooms }, () => o.members),
    )
    log(`${config}: ${o.rooms * o.members} members in ${o.rooms} rooms open in ${Math.round(performance.now() - t0)} ms`)
    load.flood(o.window)
    await Bun.sleep(1000) // warm-up
    const primaries = await redis.primaries()
    const r0 = await Promise.all(redis.ports.map(redisCpu))
    const s0 = treeCpu(server.pid)
    const g0 = load.cpuSeconds()
    load.start()
    const w0 = performance.now()
    await Bun.sleep(o.seconds * 1000)
    const counted = load.stop()
    const wall = (performance.now() - w0) / 1000
    const g = load.cpuSeconds() - g0
    const s1 = treeCpu(server.pid)
    const r1 = await Promise.all(redis.ports.map(redisCpu))
    const { acked, delivered, errors } = await counted
    await load.halt()
    await load.close()
    const perInstance = redis.ports.map((p, i) => ({
      port: p,
      role: primaries.includes(p) ? 'primary' : 'replica',
      cpuPct: Math.round(((r1[i]! - r0[i]!) / wall) * 1000) / 10,
      cpuUsPerMsg: Math.round(((r1[i]! - r0[i]!) / acked) * 1e7) / 10,
    }))
    const result = {
      config,
      rooms: o.rooms,
      members: o.members,
      seconds: Math.round(wall * 10) / 10,
      msgsPerS: Math.round(acked / wall),
      deliveriesPerS: Math.round(delivered / wall),
      errors,
      serverCpuPct: Math.round(((s1 - s0) / wall) * 1000) / 10,
      generatorCpuPct: Math.round((g / wall) * 1000) / 10,
      redisCpuPctTotal: Math.round(perInstance.reduce((s, i) => s + i.cpuPct, 0) * 10) / 10,
      redisCpuUsPerMsgTotal: Math.round(perInstance.reduce((s, i) => s + i.cpuUsPerMsg, 0) * 10) / 10,
      redis: perInstance,
    }
    log(JSON.stringify(result))
    return result
  } finally {
    await server.stop()
    await redis.stop()
  }
}

export async function clusterScenario(o: ClusterOptions) {
  const results = []
  for (const c of o.configs) {
    if (!/^(single|cluster)-\d+$/.test(c)) throw new Error(`--cluster-configs: expected single-N or cluster-N, got ${c}`)
    results.push(await runOne(c, o))
  }
  return results
}

/** A markdown table of the results, for docs/cluster.md. */
export function clusterTable(results: Awaited<ReturnType<typeof clusterScenario>>): string {
  const rows = results.map((r) => {
    const prim = r.redis.filter((i) => i.role === 'primary')
    const perShard = prim.map((i) => i.cpuUsPerMsg).join(' / ')
    const repl = r.redis.filter((i) => i.role === 'replica').reduce((s, i) => s + i.cpuUsPerMsg, 0)
    return `| ${r.config} | ${r.msgsPerS} | ${r.deliveriesPerS} | ${r.serverCpuPct} | ${r.generatorCpuPct} | ${prim.reduce((s, i) => s + i.cpuPct, 0).toFixed(1)} | ${perShard} | ${repl ? repl.toFixed(1) : '–'} | ${r.errors} |`
  })
  return [
    '| config | msgs/s (acked) | deliveries/s | chat-server CPU % | generator CPU % | Redis primaries CPU % | Redis µs CPU/msg per primary | replicas µs/msg (sum) | errors |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n')
}
