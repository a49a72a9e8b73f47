import type Redis from 'ioredis'
import { redisKeys } from '../broker/redis-scripts'
import { log } from '../log'
import type { User } from '../protocol/server-frames'

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

/** up: KEYS live hash, node index. ARGV node, entry, name. Returns 1 when the hash was empty. */
const UP = `
local was = redis.call('HLEN', KEYS[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[2])
if was == 0 then return 1 end
return 0
`
/** down (also the reaper's): KEYS live hash, node index. ARGV node, entry. Returns 1 when this emptied the hash. */
const DOWN = `
redis.call('SREM', KEYS[2], ARGV[2])
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HLEN', KEYS[1]) == 0 then return 1 end
return 0
`

const REAP_EVERY_MS = 5_000
/** As the presence layer: a node whose `alive` key lapsed this long ago is dead. */
const NODE_TTL_MS = 20_000

/**
 * Per user and per room a hash {node: name} of the nodes that hold one; per node an index of
 * its entries. A node that dies leaves its entries: any node sees its `alive` key (kept by the
 * broker's heartbeat) gone, removes them, and emits the offline/vacated that are due; one
 * script per entry, so exactly one reaper emits each.
 */
export function redisLiveness(opts: { cmd: Redis; prefix: string; nodeId: string; onReaped: (kind: Kind, user: User) => void; tag?: string }): Liveness & { start(): Promise<void> } {
  const { cmd, prefix: P, nodeId } = opts
  const keys = redisKeys(P)
  // Its own hash tag per user of the code (webhooks `wh`, push `push`): each counts what it needs.
  const T = opts.tag ?? 'wh'
  const live = (kind: Kind, id: string) => `${P}{${T}}:live:${kind}:${id}`
  const index = (node: string) => `${P}{${T}}:idx:${node}`
  const nodes = `${P}{${T}}:nodes`
  cmd.defineCommand('webhookUp', { numberOfKeys: 2, lua: UP })
  cmd.defineCommand('webhookDown', { numberOfKeys: 2, lua: DOWN })
  const c = cmd as unknown as {
    webhookUp(a: string, b: string, node: string, entry: string, name: string): Promise<number>
    webhookDown(a: string, b: string, node: string, entry: string): Promise<number>
  }
  let timer: ReturnType<typeof setInterval> | undefined
  let startedAt = 0

  async function reap(node: string) {
    const entries = await cmd.smembers(index(node))
    for (const entry of entries) {
      const kind = entry[0] as Kind
      const id = entry.slice(2)
      const name = (await cmd.hget(live(kind, id), node)) ?? id
      if ((await c.webhookDown(live(kind, id), index(node), node, entry)) === 1) opts.onReaped(kind, { id, name })
    }
    if ((await cmd.scard(index(node))) === 0) await cmd.srem(nodes, node)
    if (entries.length) log.info('webhook liveness of a dead node reaped', { dead: node, entries: entries.length })
  }

  async function sweep() {
    if (Date.now() - startedAt < NODE_TTL_MS) return // the broker's heartbeats may just be starting
    for (const node of await cmd.smembers(nodes)) {
      if (node === nodeId || (await cmd.exists(keys.nodeAlive(node)))) continue
      await reap(node)
    }
  }

  return {
    async start() {
      await reap(nodeId) // what an earlier life under this NODE_ID left
      await cmd.sadd(nodes, nodeId)
      startedAt = Date.now()
      timer = setInterval(() => sweep().catch((err) => log.debug('webhook liveness sweep failed', { err })), REAP_EVERY_MS)
      timer.unref()
    },
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
    async close() {
      if (timer) clearInterval(timer)
    },
  }
}
