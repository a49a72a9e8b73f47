import type Redis from 'ioredis'
import type { Cluster } from '../cluster/heartbeat'
import { NODE_TTL_MS } from '../cluster/heartbeat'
import { log } from '../log'
import ACQUIRE from './lua/user-conns-acquire.lua' with { type: 'text' }
import RELEASE from './lua/user-conns-release.lua' with { type: 'text' }

/**
 * Open connections per user, counted across the cluster for MAX_CONNECTIONS_PER_USER.
 *
 * Each node keeps its own counts in a hash of its own (`{cluster}:conns:<node>`, user → count)
 * whose TTL its heartbeat refreshes. A count is the sum over the nodes whose lease in the
 * cluster's set (cluster/heartbeat.ts, same slot) still holds, so the connections of a node
 * that died (SIGKILL, lost host) stop counting once its lease lapses; the node that reaps it
 * deletes its hash. The node's own map in memory is the truth: after Redis lost its data or a
 * write failed, the heartbeat writes the hash again from it.
 *
 * Redis unreachable: connections are admitted (checked against this node's counts only) and
 * the hash is rewritten once Redis is back. Chat itself needs Redis then anyway.
 */



export interface UserConnCounter {
  /** Counts one more connection of `user` unless that reaches `limit`; false = refused. */
  acquire(user: string, limit: number): Promise<boolean>
  release(user: string): void
  start(): Promise<void>
  close(): Promise<void>
}

export function redisUserConns(opts: { cmd: Redis; nodes: Cluster; prefix: string; onError?: () => void }): UserConnCounter {
  const { cmd: redis, nodes } = opts
  if (!nodes.leases.startsWith(`${opts.prefix}{cluster}`)) throw new Error('connection counts: the cluster set must share the {cluster} slot')
  // Every key of the counts shares the cluster set's hash tag: in a Redis Cluster the script
  // reads other nodes' hashes, which must live in the slot of the keys it was given.
  const hashPrefix = `${opts.prefix}{cluster}:conns:`
  const own = hashPrefix + nodes.nodeId
  /** This node's connections per user, as counted here. */
  const local = new Map<string, number>()
  /** Redis may disagree with `local` (a write failed): rewrite the hash at the next heartbeat. */
  let dirty = false
  let warned = false

  const failed = (what: string, err: unknown) => {
    dirty = true
    opts.onError?.()
    if (!warned) log.warn('connection counts: Redis unavailable; per-user limit checked on this node only', { what, err: (err as Error)?.message ?? String(err) })
    warned = true
  }

  async function rewrite() {
    const m = redis.multi().del(own)
    if (local.size) m.hset(own, Object.fromEntries(local)).pexpire(own, NODE_TTL_MS)
    await m.exec()
    dirty = false
    if (warned) log.info('connection counts: Redis available again')
    warned = false
  }

  nodes.onBeat(async () => {
    try {
      const alive = await redis.pexpire(own, NODE_TTL_MS)
      if (dirty || (alive === 0 && local.size > 0)) await rewrite()
    } catch (err) {
      failed('heartbeat', err)
    }
  })
  nodes.onNodeDead(async (node) => {
    await redis.del(hashPrefix + node)
  })

  const bump = (user: string, by: number) => {
    const n = (local.get(user) ?? 0) + by
    if (n > 0) local.set(user, n)
    else local.delete(user)
  }

  return {
    async acquire(user, limit) {
      if ((local.get(user) ?? 0) >= limit) return false
      try {
        const ok = (await redis.eval(ACQUIRE, 2, nodes.leases, own, user, limit, hashPrefix, NODE_TTL_MS)) === 1
        if (ok) bump(user, 1)
        return ok
      } catch (err) {
        failed('acquire', err)
        bump(user, 1)
        return true
      }
    },
    release(user) {
      if (!local.has(user)) return
      bump(user, -1)
      redis.eval(RELEASE, 1, own, user).catch((err) => failed('release', err))
    },
    async start() {
      await redis.del(own) // a restarted node has no connections yet, whatever its last life left
    },
    async close() {
      await redis.del(own).catch(() => {})
    },
  }
}
