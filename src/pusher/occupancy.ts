import type Redis from 'ioredis'
import type { Cluster } from '../cluster/heartbeat'
import CHANGE from './lua/occupancy-change.lua' with { type: 'text' }
import REAP from './lua/occupancy-reap.lua' with { type: 'text' }
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
  }
}

/**
 * Per channel a total, per node its share, all under one hash tag (one slot of a Redis
 * Cluster, so each change is one script). A node that dies leaves its share: the node that
 * sees it die (the cluster's heartbeat, `onNodeDead`) takes the share out, and the channels that
 * leaves vacant get their channel_vacated (`onVacated`) from exactly that one reaper.
 */
export function redisOccupancy(opts: { cmd: Redis; prefix: string; nodes: Cluster; onVacated: (channel: string) => void }): Occupancy {
  const { cmd, prefix: P } = opts
  const nodeId = opts.nodes.nodeId
  const total = `${P}{pusher}:subs`
  const nodeKey = (node: string) => `${P}{pusher}:node:${node}`
  cmd.defineCommand('pusherChange', { numberOfKeys: 2, lua: CHANGE })
  cmd.defineCommand('pusherReap', { numberOfKeys: 2, lua: REAP })
  const c = cmd as unknown as {
    pusherChange(a: string, b: string, channel: string, by: number): Promise<number>
    pusherReap(a: string, b: string): Promise<string[]>
  }

  async function reap(node: string) {
    const gone = await c.pusherReap(total, nodeKey(node))
    for (const channel of gone) opts.onVacated(channel)
    if (gone.length && node !== nodeId) log.info('pusher subscriptions of a dead node reaped', { dead: node, vacated: gone.length })
  }
  opts.nodes.onNodeDead(reap)

  return {
    change: (channel, by) => c.pusherChange(total, nodeKey(nodeId), channel, by),
    async count(channel) {
      return Number((await cmd.hget(total, channel)) ?? 0)
    },
    async all() {
      const h = await cmd.hgetall(total)
      return new Map(Object.entries(h).map(([k, v]) => [k, Number(v)]))
    },
  }
}
