import type Redis from 'ioredis'
import { redisKeys } from '../broker/redis-scripts'
import { log } from '../log'

/**
 * Pusher subscriptions per channel, cluster-wide: what GET /apps/:id/channels lists, a
 * channel's subscription_count, and the first/last subscription that make channel_occupied and
 * channel_vacated. (Presence channels' members are the broker's presence, not this.)
 */
export interface Occupancy {
  /** Resolves with the channel's count after the change (1 after an add: it was vacant). */
  change(channel: string, by: 1 | -1): Promise<number>
  count(channel: string): Promise<number>
  /** Every occupied channel with its count. */
  all(): Promise<Map<string, number>>
  start(): Promise<void>
  close(): void
}

export function memoryOccupancy(): Occupancy {
  const counts = new Map<string, number>()
  return {
    async change(channel, by) {
      const n = (counts.get(channel) ?? 0) + by
      if (n > 0) counts.set(channel, n)
      else counts.delete(channel)
      return Math.max(0, n)
    },
    async count(channel) {
      return counts.get(channel) ?? 0
    },
    async all() {
      return new Map(counts)
    },
    async start() {},
    close() {},
  }
}

/** KEYS total hash, node hash, nodes set. ARGV channel, delta, node. Returns the channel's new total. */
const CHANGE = `
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
local m = redis.call('HINCRBY', KEYS[2], ARGV[1], ARGV[2])
if m <= 0 then redis.call('HDEL', KEYS[2], ARGV[1]) end
redis.call('SADD', KEYS[3], ARGV[3])
if n < 0 then return 0 end
return n
`
/** KEYS total hash, node hash, nodes set. ARGV node. Takes a node's counts out; returns the channels it left vacant. */
const REAP = `
local gone = {}
local per = redis.call('HGETALL', KEYS[2])
for i = 1, #per, 2 do
  local n = redis.call('HINCRBY', KEYS[1], per[i], -tonumber(per[i + 1]))
  if n <= 0 then
    redis.call('HDEL', KEYS[1], per[i])
    table.insert(gone, per[i])
  end
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return gone
`

const REAP_EVERY_MS = 5_000
/** As the broker's presence: a node whose `alive` key lapsed is dead (its heartbeat keeps it). */
const NODE_TTL_MS = 20_000

/**
 * Per channel a total, per node its share, all under one hash tag (one slot of a Redis
 * Cluster, so each change is one script). A node that dies leaves its share: any node sees its
 * `alive` key (the broker's heartbeat) gone and takes the share out, and the channels that
 * leaves vacant get their channel_vacated (`onVacated`) from exactly that one reaper.
 */
export function redisOccupancy(opts: { cmd: Redis; prefix: string; nodeId: string; onVacated: (channel: string) => void }): Occupancy {
  const { cmd, prefix: P, nodeId } = opts
  const total = `${P}{pusher}:subs`
  const nodeKey = (node: string) => `${P}{pusher}:node:${node}`
  const nodes = `${P}{pusher}:nodes`
  const alive = redisKeys(P).nodeAlive
  cmd.defineCommand('pusherChange', { numberOfKeys: 3, lua: CHANGE })
  cmd.defineCommand('pusherReap', { numberOfKeys: 3, lua: REAP })
  const c = cmd as unknown as {
    pusherChange(a: string, b: string, s: string, channel: string, by: number, node: string): Promise<number>
    pusherReap(a: string, b: string, s: string, node: string): Promise<string[]>
  }
  let timer: ReturnType<typeof setInterval> | undefined
  let startedAt = 0

  async function reap(node: string) {
    const gone = await c.pusherReap(total, nodeKey(node), nodes, node)
    for (const channel of gone) opts.onVacated(channel)
    if (gone.length && node !== nodeId) log.info('pusher subscriptions of a dead node reaped', { dead: node, vacated: gone.length })
  }

  async function sweep() {
    if (Date.now() - startedAt < NODE_TTL_MS) return
    for (const node of await cmd.smembers(nodes)) if (node !== nodeId && !(await cmd.exists(alive(node)))) await reap(node)
  }

  return {
    change: (channel, by) => c.pusherChange(total, nodeKey(nodeId), nodes, channel, by, nodeId),
    async count(channel) {
      return Number((await cmd.hget(total, channel)) ?? 0)
    },
    async all() {
      const h = await cmd.hgetall(total)
      return new Map(Object.entries(h).map(([k, v]) => [k, Number(v)]))
    },
    async start() {
      await cmd.connect()
      await reap(nodeId) // what an earlier life under this NODE_ID left
      startedAt = Date.now()
      timer = setInterval(() => sweep().catch((err) => log.debug('pusher occupancy sweep failed', { err })), REAP_EVERY_MS)
      timer.unref()
    },
    close() {
      if (timer) clearInterval(timer)
      cmd.disconnect()
    },
  }
}
