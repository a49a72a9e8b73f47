import { redisConnection } from './redis-connect'
import { log } from '../log'

/**
 * Open connections per user, counted across the cluster for MAX_CONNECTIONS_PER_USER.
 *
 * Each node keeps its own counts in a hash of its own (`conns:n:<node>`, user → count) with a
 * TTL its heartbeat refreshes, and announces itself in a sorted set of nodes scored by that
 * expiry (`conns:nodes`). A count is the sum over the nodes still alive, so the connections of
 * a node that died (SIGKILL, lost host) stop counting once its TTL passes, with nobody to clean
 * up after it. The node's own map in memory is the truth: after Redis lost its data or a
 * write failed, the heartbeat writes the hash again from it.
 *
 * Redis unreachable: connections are admitted (checked against this node's counts only) and
 * the hash is rewritten once Redis is back. Chat itself needs Redis then anyway.
 */

export const NODE_TTL_MS = 15_000
const HEARTBEAT_MS = 5_000

const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
local total = 0
for _, n in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  total = total + tonumber(redis.call('HGET', ARGV[5] .. n, ARGV[1]) or '0')
end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('PEXPIRE', KEYS[2], ttl)
return 1`

const RELEASE = `
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1`

/** Refreshes this node's lease; 0 when its hash is gone (Redis lost it) and must be rewritten. */
const HEARTBEAT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return redis.call('PEXPIRE', KEYS[2], ARGV[2])`

export interface UserConnCounter {
  /** Counts one more connection of `user` unless that reaches `limit`; false = refused. */
  acquire(user: string, limit: number): Promise<boolean>
  release(user: string): void
  start(): Promise<void>
  close(): Promise<void>
}

export function redisUserConns(opts: { url: string; cluster: boolean; prefix: string; nodeId: string; onError?: () => void }): UserConnCounter {
  const redis = redisConnection(opts.url, opts.cluster, 'command')
  redis.on('error', () => {}) // reported by the failing commands below, and by the broker
  // One hash tag for every key of the counts: in a Redis Cluster the script reads other nodes'
  // hashes, which must live in the slot of the keys it was given.
  const nodes = `${opts.prefix}{conns}:nodes`
  const hashPrefix = `${opts.prefix}{conns}:n:`
  const own = hashPrefix + opts.nodeId
  /** This node's connections per user, as counted here. */
  const local = new Map<string, number>()
  /** Redis may disagree with `local` (a write failed): rewrite the hash at the next heartbeat. */
  let dirty = false
  let warned = false
  let timer: ReturnType<typeof setInterval> | undefined

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

  async function heartbeat() {
    try {
      const alive = await redis.eval(HEARTBEAT, 2, nodes, own, opts.nodeId, NODE_TTL_MS)
      if (dirty || (alive === 0 && local.size > 0)) await rewrite()
    } catch (err) {
      failed('heartbeat', err)
    }
  }

  const bump = (user: string, by: number) => {
    const n = (local.get(user) ?? 0) + by
    if (n > 0) local.set(user, n)
    else local.delete(user)
  }

  return {
    async acquire(user, limit) {
      if ((local.get(user) ?? 0) >= limit) return false
      try {
        const ok = (await redis.eval(ACQUIRE, 2, nodes, own, user, limit, opts.nodeId, NODE_TTL_MS, hashPrefix)) === 1
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
      await redis.connect()
      await redis.del(own) // a restarted node has no connections yet, whatever its last life left
      await heartbeat()
      timer = setInterval(heartbeat, HEARTBEAT_MS)
      timer.unref?.()
    },
    async close() {
      if (timer) clearInterval(timer)
      await redis.multi().del(own).zrem(nodes, opts.nodeId).exec().catch(() => {})
      redis.disconnect()
    },
  }
}
