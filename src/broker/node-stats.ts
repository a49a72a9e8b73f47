import type Redis from 'ioredis'
import type { Cluster } from '../cluster/heartbeat'
import { log } from '../log'

/** What a node reads of itself at each tick: counts now, and message totals since it started. */
export interface Reading {
  connections: number
  rooms: number
  /** Chat messages this node accepted and published, since it started. */
  publishedTotal: number
  /** Chat and DM frames this node handed to its local subscribers, since it started. */
  deliveredTotal: number
  /** 'ok', 'off' (not configured) or what is wrong. */
  redis: string
  postgres: string
  draining: boolean
  /** Local member count of this node's rooms, any order. */
  roomSizes: () => Iterable<[string, number]>
}

export interface NodeStat {
  id: string
  version: string
  startedAt: string
  uptimeS: number
  connections: number
  rooms: number
  msgInPerS: number
  msgOutPerS: number
  rssBytes: number
  heapUsedBytes: number
  redis: string
  postgres: string
  draining: boolean
  /** When this was measured (ms since the epoch). */
  at: number
}

export interface Sample {
  t: number
  connections: number
  msgInPerS: number
  msgOutPerS: number
}

export interface RoomStat {
  room: string
  /** Connections in the room, summed over the nodes that report it. */
  members: number
  nodes: number
}

/** One node's record, as kept in Redis under its own key. */
interface Record_ {
  stat: NodeStat
  series: Sample[]
  rooms: [string, number][]
}

export const STATS_INTERVAL_MS = 2_000
/** Samples kept per node: ten minutes. */
const SERIES_LENGTH = 300
/** Rooms each node reports (its busiest). */
const TOP_ROOMS = 50
/** A node whose record is older than this is gone. */
const TTL_MS = STATS_INTERVAL_MS * 5

/** What a read covers: the whole cluster, or this node only (Redis off or failing: `problem` says why). */
export interface StatsScope {
  scope: 'node' | 'cluster'
  problem: string | undefined
}

/** The live view of the cluster for the admin page (see nodeStats). */
export interface NodeStats {
  /** Samples this node every interval (and writes its record to Redis). */
  start(): void
  /** Stops sampling and removes this node's record. */
  stop(): Promise<void>
  /** Each live node's latest record, by id. */
  nodes(): Promise<StatsScope & { nodes: NodeStat[] }>
  /** The cluster's busiest rooms: members summed over the nodes that report each room. */
  rooms(limit: number): Promise<StatsScope & { rooms: RoomStat[] }>
  /** Connections and message rates over the last minutes, summed over the nodes per tick. */
  series(): Promise<StatsScope & { intervalMs: number; points: Sample[] }>
}

export interface NodeStatsOptions {
  nodeId: string
  version: string
  read: () => Reading
  /** Set: every node writes its record to Redis, and reads give every live node's (cluster/heartbeat.ts). */
  redis?: { cmd: Redis; prefix: string; nodes: Cluster }
  intervalMs?: number
}

const round = (n: number) => Math.round(n * 10) / 10

function topRooms(sizes: Iterable<[string, number]>, n: number): [string, number][] {
  const all = [...sizes]
  all.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
  return all.slice(0, n)
}

/**
 * The live view of the cluster for the admin page: each node samples itself every couple of
 * seconds (counts, message rates, memory, dependency state) and, with Redis, writes the
 * record to a key that expires when the node stops writing; reads gather the records of the
 * nodes the cluster's heartbeat says are alive.
 */
export function nodeStats(opts: NodeStatsOptions): NodeStats {
  const intervalMs = opts.intervalMs ?? STATS_INTERVAL_MS
  const startedAt = Date.now()
  const series: Sample[] = []
  let last: { t: number; published: number; delivered: number } | undefined
  let rates = { msgInPerS: 0, msgOutPerS: 0 }
  let timer: Timer | undefined

  const P = opts.redis?.prefix ?? ''
  // One hash tag for every admin key: MGET stays in one slot of a Redis Cluster.
  const key = (id: string) => `${P}{admin}:node:${id}`
  const redis = opts.redis?.cmd

  function stat(reading: Reading, now: number): NodeStat {
    const mem = process.memoryUsage()
    return {
      id: opts.nodeId,
      version: opts.version,
      startedAt: new Date(startedAt).toISOString(),
      uptimeS: Math.round((now - startedAt) / 1000),
      connections: reading.connections,
      rooms: reading.rooms,
      ...rates,
      rssBytes: mem.rss,
      heapUsedBytes: mem.heapUsed,
      redis: reading.redis,
      postgres: reading.postgres,
      draining: reading.draining,
      at: now,
    }
  }

  function record(now = Date.now()): Record_ {
    const reading = opts.read()
    return { stat: stat(reading, now), series: [...series], rooms: topRooms(reading.roomSizes(), TOP_ROOMS) }
  }

  /** One tick: the message rates since the last one, a sample, and the record to Redis. */
  async function tick() {
    const now = Date.now()
    const reading = opts.read()
    if (last && now > last.t) {
      const s = (now - last.t) / 1000
      rates = {
        msgInPerS: round((reading.publishedTotal - last.published) / s),
        msgOutPerS: round((reading.deliveredTotal - last.delivered) / s),
      }
    }
    last = { t: now, published: reading.publishedTotal, delivered: reading.deliveredTotal }
    series.push({ t: now, connections: reading.connections, ...rates })
    if (series.length > SERIES_LENGTH) series.shift()
    if (!redis) return
    const rec: Record_ = { stat: stat(reading, now), series, rooms: topRooms(reading.roomSizes(), TOP_ROOMS) }
    await redis.set(key(opts.nodeId), JSON.stringify(rec), 'PX', TTL_MS)
  }

  const safeTick = () => tick().catch((err) => log.debug('node stats: write failed', { err }))

  /** Every live node's record: the cluster's through Redis, else (or when Redis fails) this node's. */
  async function records(): Promise<{ scope: 'cluster' | 'node'; problem?: string; records: Record_[] }> {
    const own = record()
    if (!redis) return { scope: 'node', records: [own] }
    try {
      const ids = (await opts.redis!.nodes.alive()).filter((id) => id !== opts.nodeId)
      const raw = ids.length ? await redis.mget(ids.map(key)) : []
      const others = raw.filter((r): r is string => r !== null).map((r) => JSON.parse(r) as Record_)
      return { scope: 'cluster', records: [own, ...others].sort((a, b) => (a.stat.id < b.stat.id ? -1 : 1)) }
    } catch (err) {
      return { scope: 'node', problem: `redis: ${(err as Error).message}`, records: [own] }
    }
  }

  return {
    start() {
      if (timer) return
      void safeTick()
      timer = setInterval(safeTick, intervalMs)
    },
    async stop() {
      clearInterval(timer)
      timer = undefined
      await redis?.del(key(opts.nodeId)).catch(() => {})
    },
    async nodes() {
      const r = await records()
      return { scope: r.scope, problem: r.problem, nodes: r.records.map((x) => x.stat) }
    },
    /** The cluster's busiest rooms: members summed over the nodes that report each room. */
    async rooms(limit: number) {
      const r = await records()
      const sum = new Map<string, RoomStat>()
      for (const rec of r.records)
        for (const [room, members] of rec.rooms) {
          const s = sum.get(room) ?? { room, members: 0, nodes: 0 }
          s.members += members
          s.nodes += 1
          sum.set(room, s)
        }
      const rooms = [...sum.values()].sort((a, b) => b.members - a.members || (a.room < b.room ? -1 : 1)).slice(0, limit)
      return { scope: r.scope, problem: r.problem, rooms }
    },
    /** Connections and message rates over the last minutes, summed over the nodes per tick. */
    async series() {
      const r = await records()
      const buckets = new Map<number, Sample>()
      for (const rec of r.records)
        for (const s of rec.series) {
          const t = Math.round(s.t / intervalMs) * intervalMs
          const b = buckets.get(t) ?? { t, connections: 0, msgInPerS: 0, msgOutPerS: 0 }
          b.connections += s.connections
          b.msgInPerS = round(b.msgInPerS + s.msgInPerS)
          b.msgOutPerS = round(b.msgOutPerS + s.msgOutPerS)
          buckets.set(t, b)
        }
      return { scope: r.scope, problem: r.problem, intervalMs, points: [...buckets.values()].sort((a, b) => a.t - b.t) }
    },
  }
}
