import type Redis from 'ioredis'
import type { Cluster } from '../cluster/heartbeat'
import { log } from '../log'
import type { User } from '../protocol/server-frames'
import UP from './lua/liveness-up.lua' with { type: 'text' }
import DOWN from './lua/liveness-down.lua' with { type: 'text' }

/** `u`: a user's connections; `r`: a room's live members. */
export type Kind = 'u' | 'r'

/**
 * Cluster-wide first and last of users (online/offline) and rooms (occupied/vacated). The hub
 * reports this node's first and last (its own member sets already know them); this turns
 * them into the cluster's. Memory engine: this node is the cluster.
 */
export interface Liveness {
  /** This node now has the first one; resolves true when the cluster had none. */
  up(kind: Kind, id: string, name: string): Promise<boolean>
  /** This node had its last one; resolves true when the cluster has none left. */
  down(kind: Kind, id: string): Promise<boolean>
  /** Which of these users have a live connection anywhere (for `offline` providers). */
  online(userIds: string[]): Promise<Set<string>>
  close(): Promise<void>
}

export function memoryLiveness(): Liveness {
  const users = new Set<string>()
  return {
    async up(kind, id) {
      if (kind === 'u') users.add(id)
      return true
    },
    async down(kind, id) {
      if (kind === 'u') users.delete(id)
      return true
    },
    async online(ids) {
      return new Set(ids.filter((id) => users.has(id)))
    },
    async close() {},
  }
}


/**
 * Per user and per room a hash {node: name} of the nodes that hold one; per node an index of
 * its entries. A node that dies leaves its entries: the node that sees it die (the cluster's
 * heartbeat) removes them and emits the offline/vacated that are due; one script per entry,
 * so exactly one reaper emits each.
 */
export function redisLiveness(opts: { cmd: Redis; prefix: string; nodes: Cluster; onReaped: (kind: Kind, user: User) => void; tag?: string }): Liveness {
  const { cmd, prefix: P } = opts
  const nodeId = opts.nodes.nodeId
  // Its own hash tag per user of the code (webhooks `wh`, push `push`): each counts what it needs.
  const T = opts.tag ?? 'wh'
  const live = (kind: Kind, id: string) => `${P}{${T}}:live:${kind}:${id}`
  const index = (node: string) => `${P}{${T}}:idx:${node}`
  cmd.defineCommand('webhookUp', { numberOfKeys: 2, lua: UP })
  cmd.defineCommand('webhookDown', { numberOfKeys: 2, lua: DOWN })
  const c = cmd as unknown as {
    webhookUp(a: string, b: string, node: string, entry: string, name: string): Promise<number>
    webhookDown(a: string, b: string, node: string, entry: string): Promise<number>
  }

  async function reap(node: string) {
    const entries = await cmd.smembers(index(node))
    for (const entry of entries) {
      const kind = entry[0] as Kind
      const id = entry.slice(2)
      const name = (await cmd.hget(live(kind, id), node)) ?? id
      if ((await c.webhookDown(live(kind, id), index(node), node, entry)) === 1) opts.onReaped(kind, { id, name })
    }
    if (entries.length) log.info('webhook liveness of a dead node reaped', { dead: node, entries: entries.length })
  }

  opts.nodes.onNodeDead(reap)

  return {
    async up(kind, id, name) {
      return (await c.webhookUp(live(kind, id), index(nodeId), nodeId, `${kind}:${id}`, name)) === 1
    },
    async down(kind, id) {
      return (await c.webhookDown(live(kind, id), index(nodeId), nodeId, `${kind}:${id}`)) === 1
    },
    async online(ids) {
      if (ids.length === 0) return new Set()
      const p = cmd.pipeline()
      for (const id of ids) p.exists(live('u', id))
      const r = (await p.exec()) ?? []
      return new Set(ids.filter((_, i) => r[i]?.[1] === 1))
    },
    async close() {},
  }
}
