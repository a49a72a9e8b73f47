/**
 * Scenario `small` (issue 27): many small rooms, the shape of real chat. `--small-rooms` rooms
 * (2 000) of 2–10 members (sizes spread evenly, bench/lib/rooms.ts roomSizes), one sender per
 * room (member 0) keeping `--small-rooms-window` acked sends in flight: the saturated phase.
 * Then a paced phase at half the saturated rate, measuring send → ack latency.
 *
 * Configs (`--small-rooms-configs`, default all four, in this order):
 *   bare     one bare Bun.serve (bench/servers/bare-rooms.ts): join, chat frames and acks of
 *            chat-server's sizes, nothing else: what Bun itself costs for this traffic, the
 *            reference every other config is divided by
 *   memory   one node, memory engine: the one-node engine floor the Redis path is compared with
 *   redis    two nodes (separate chat-server processes) + a private redis-server; member m of
 *            room r on node (r + m) mod 2, so every room spans both nodes
 *   cluster  the same two nodes against a real Redis Cluster (3 primaries + 3 replicas, loopback)
 *
 * Per config and phase: acked msg/s, deliveries/s, server CPU µs per acked message (both
 * nodes' CPU summed / acked messages; its ratio to bare's), Redis CPU µs per message (INFO CPU
 * of every instance, and of the primaries), generator CPU % (its worker processes,
 * bench/rooms-worker.ts, and this one), ack p50 / p99. With --profile, node A of the first
 * Redis config is profiled (bun --cpu-prof; summary: bun run bench/profile.ts).
 */
import { startRedisCluster } from '../test/helpers/redis-cluster'
import type { LatencySummary } from './lib/histogram'
import { startServer } from './lib/proc'
import type { Server } from './lib/proc'
import type { BenchRedis } from './lib/rooms'
import { openRooms, privateRedis, redisCpu, roomSizes, treeCpu } from './lib/rooms'

export interface SmallRoomsOptions {
  rooms: number
  minMembers: number
  maxMembers: number
  window: number
  /** Measured seconds of each phase. */
  seconds: number
  warmupS: number
  idleS: number
  /** The paced phase's msg/s (default: half the saturated rate). */
  rate?: number
  configs: string[]
  /** Directory for node A's CPU profile (the first Redis config), or undefined. */
  profileDir?: string
  env: Record<string, string>
}

export interface SmallRoomsPhase {
  seconds: number
  msgsPerS: number
  deliveriesPerS: number
  errors: number
  serverCpuPct: number
  nodeCpuPct: number[]
  serverCpuUsPerMsg: number
  redisCpuPct?: number
  redisCpuUsPerMsg?: number
  redisPrimariesCpuUsPerMsg?: number
  generatorCpuPct: number
  ack?: LatencySummary
  /** chat-server CPU µs per acked message once the idle phase's CPU is taken out. */
  serverCpuUsPerMsgNet?: number
  /** Paced phase: the rate asked for (half the saturated one). */
  rate?: number
}

export interface SmallRoomsRow {
  config: string
  nodes: number
  rooms: number
  sockets: number
  meanMembers: number
  window: number
  /** Processes of the generator (bench/rooms-worker.ts); absent in results of the in-process generator. */
  generatorWorkers?: number
  connectMs: number
  /**
   * Every socket open, nothing sent (`--small-rooms-idle-s`, 2 s): what the nodes and Redis burn
   * without messages (timers, heartbeats, polling). The per-message figures include it; the
   * `net` ones of the phases take it out.
   */
  idle?: { seconds: number; nodeCpuPct: number[]; serverCpuPct: number; redisCpuPct?: number }
  saturated: SmallRoomsPhase
  paced: SmallRoomsPhase
  unanswered: number
  profiled?: boolean
  /**
   * With --profile: the saturated phase as seconds before node A was told to stop, since the
   * profile covers the process's whole life (connecting 10 000 sockets included):
   * `bun run bench/profile.ts --before-end=<from>,<to>` keeps only that phase's samples.
   */
  profileWindow?: { fromS: number; toS: number }
}

const SMALL_JWT_SECRET = 'bench-small-rooms-secret-0123456789'

const log = (...a: unknown[]) => console.error('[bench:small]', ...a)
const r1 = (x: number) => Math.round(x * 10) / 10

async function runConfig(config: string, o: SmallRoomsOptions, profile: boolean): Promise<SmallRoomsRow> {
  if (!['bare', 'memory', 'redis', 'cluster'].includes(config))
    throw new Error(`--small-rooms-configs: expected bare, memory, redis or cluster, got ${config}`)
  const redis: BenchRedis | undefined =
    config === 'redis' ? await privateRedis() : config === 'cluster' ? await startRedisCluster() : undefined
  const nodes: Server[] = []
  try {
    // Every member has a token for its own room only: as in an app of conversations, nobody is
    // in the default room (DEFAULT_ROOM), whose presence events would reach every socket on
    // each connect (n² frames while 12 000 sockets open).
    const env: Record<string, string> = { ...o.env, LOG_LEVEL: 'info', JWT_SECRET: SMALL_JWT_SECRET }
    if (redis)
      Object.assign(
        env,
        { REDIS_URL: redis.url, REDIS_PREFIX: `bench-small-${process.pid}:` },
        config === 'cluster' ? { REDIS_CLUSTER: 'true' } : {},
      )
    for (const name of redis ? ['a', 'b'] : ['a']) {
      const kind = config === 'bare' ? 'bare-rooms' : 'chat'
      const r = await startServer(
        kind,
        { ...env, NODE_ID: `bench-small-${name}` },
        { cpuProfDir: profile && name === 'a' ? o.profileDir : undefined },
      )
      if (!r.ok) throw new Error(`${kind} node ${name} (${config}) did not start (exit ${r.code}): ${r.stderr.slice(0, 300)}`)
      nodes.push(r.server)
    }
    const sizes = roomSizes(o.rooms, o.minMembers, o.maxMembers)
    const t0 = performance.now()
    const load = await openRooms(
      nodes.map((s) => s.port),
      sizes,
      'sr',
      2,
      SMALL_JWT_SECRET,
    )
    const connectMs = Math.round(performance.now() - t0)
    log(
      `${config}: ${load.sockets} members in ${o.rooms} rooms on ${nodes.length} node(s) open in ${connectMs} ms (${load.workers} generator processes)`,
    )
    const primaries = redis ? await redis.primaries() : []

    /** One measured window: CPU of every node, of every Redis instance and of the generator (its workers and this process). */
    const phase = async (seconds = o.seconds): Promise<SmallRoomsPhase> => {
      const rc0 = redis ? await Promise.all(redis.ports.map(redisCpu)) : []
      const n0 = nodes.map((s) => treeCpu(s.pid))
      const g0 = load.cpuSeconds()
      load.start()
      const w0 = performance.now()
      await Bun.sleep(seconds * 1000)
      const counted = load.stop()
      const wall = (performance.now() - w0) / 1000
      const g = load.cpuSeconds() - g0
      const nodeCpu = nodes.map((s, i) => treeCpu(s.pid) - n0[i]!)
      const rc1 = redis ? await Promise.all(redis.ports.map(redisCpu)) : []
      const { acked, delivered, errors, ack: hist } = await counted
      const ack = hist.n ? hist.summary() : undefined
      const server = nodeCpu.reduce((s, x) => s + x, 0)
      const rcs = rc1.map((x, i) => x - rc0[i]!)
      const rAll = rcs.reduce((s, x) => s + x, 0)
      const rPrim = rcs.filter((_, i) => primaries.includes(redis!.ports[i]!)).reduce((s, x) => s + x, 0)
      return {
        seconds: Math.round(wall * 100) / 100,
        msgsPerS: Math.round(acked / wall),
        deliveriesPerS: Math.round(delivered / wall),
        errors,
        serverCpuPct: r1((server / wall) * 100),
        nodeCpuPct: nodeCpu.map((x) => r1((x / wall) * 100)),
        serverCpuUsPerMsg: acked ? r1((server / acked) * 1e6) : NaN,
        redisCpuPct: redis ? r1((rAll / wall) * 100) : undefined,
        redisCpuUsPerMsg: redis && acked ? r1((rAll / acked) * 1e6) : undefined,
        redisPrimariesCpuUsPerMsg: redis && acked ? r1((rPrim / acked) * 1e6) : undefined,
        generatorCpuPct: r1((g / wall) * 100),
        ack,
      }
    }

    let idle: SmallRoomsRow['idle']
    if (o.idleS > 0) {
      await Bun.sleep(500) // the joins' own work settles
      const p = await phase(o.idleS)
      idle = { seconds: p.seconds, nodeCpuPct: p.nodeCpuPct, serverCpuPct: p.serverCpuPct, redisCpuPct: p.redisCpuPct }
      log(`${config} idle: ${JSON.stringify(idle)}`)
    }
    const net = (x: SmallRoomsPhase) =>
      idle && x.msgsPerS ? r1((((x.serverCpuPct - idle.serverCpuPct) / 100) * 1e6) / x.msgsPerS) : undefined
    try {
      load.flood(o.window)
      await Bun.sleep(o.warmupS * 1000)
      const satFrom = performance.now()
      const saturated = await phase()
      saturated.serverCpuUsPerMsgNet = net(saturated)
      const satTo = performance.now()
      log(`${config} saturated: ${JSON.stringify(saturated)}`)
      await load.halt()
      // A fixed rate (--small-rooms-rate) compares builds at equal load: the CPU per message
      // of a half-saturated phase moves with the saturated rate it was derived from.
      const rate = o.rate ?? Math.max(1, Math.round(saturated.msgsPerS / 2))
      load.pace(rate)
      await Bun.sleep(o.warmupS * 1000)
      const paced = { ...(await phase()), rate }
      paced.serverCpuUsPerMsgNet = net(paced)
      log(`${config} paced at ${rate} msg/s: ${JSON.stringify(paced)}`)
      const unanswered = await load.halt()
      // Node A stops in the finally below, right after this row is made: close enough (the
      // window is trimmed by half a second at each end for the shutdown's own time).
      const now = performance.now()
      const profileWindow = profile ? { fromS: r1((now - satFrom) / 1000 - 0.5), toS: r1((now - satTo) / 1000 + 0.5) } : undefined
      return {
        config,
        nodes: nodes.length,
        rooms: o.rooms,
        sockets: load.sockets,
        meanMembers: r1(load.sockets / o.rooms),
        window: o.window,
        generatorWorkers: load.workers,
        connectMs,
        idle,
        saturated,
        paced,
        unanswered,
        profiled: profile || undefined,
        profileWindow,
      }
    } finally {
      await load.close()
    }
  } finally {
    await Promise.all(nodes.map((s) => s.stop()))
    await redis?.stop()
  }
}

export async function smallRoomsScenario(o: SmallRoomsOptions): Promise<SmallRoomsRow[]> {
  const rows: SmallRoomsRow[] = []
  let profiled = false
  for (const c of o.configs) {
    const profile: boolean = !!o.profileDir && !profiled && c !== 'memory' && c !== 'bare'
    profiled ||= profile
    rows.push(await runConfig(c, o, profile))
  }
  return rows
}
