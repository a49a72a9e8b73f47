import type Redis from 'ioredis'
import { log } from '../log'
import NOW from './lua/now.lua' with { type: 'text' }
import RENEW from './lua/renew.lua' with { type: 'text' }

/** A node proves it is alive this often... */
export const BEAT_MS = 5_000
/** ...and counts as dead once its lease is this old without a beat. */
export const NODE_TTL_MS = 15_000

/**
 * The nodes of a cluster, from one heartbeat per node: who is alive, and a call when one dies.
 * Everything kept per node elsewhere (presence entries, connection counts, webhook liveness,
 * admin records) hangs on this lease instead of keeping a registry and a TTL of its own.
 */
export interface Cluster {
  readonly nodeId: string
  /** The nodes whose lease holds now, this one included. */
  alive(): Promise<string[]>
  /** The sorted set of leases (node -> until, ms), for scripts that sum per-node state in its slot. */
  readonly leases: string
  /** Runs at every beat of this node, after its lease is renewed (its own per-node keys' TTLs). */
  onBeat(f: () => Promise<void>): void
  /**
   * Runs once per dead node, on whichever nodes see it first; the node leaves the cluster once
   * every handler succeeded (a failing one is retried at the next beat). Handlers are idempotent.
   */
  onNodeDead(f: (node: string) => Promise<void>): void
  start(): Promise<void>
  /** Leaves the cluster: its lease ends now, so whatever it left behind is reaped as a dead node's. */
  stop(): Promise<void>
}

/** One node, one process: nobody else can die. */
export function singleNode(nodeId: string): Cluster {
  const beats: (() => Promise<void>)[] = []
  let timer: Timer | undefined
  return {
    nodeId,
    leases: '',
    alive: async () => [nodeId],
    onBeat: (f) => void beats.push(f),
    onNodeDead() {},
    async start() {
      timer = setInterval(() => {
        for (const b of beats) b().catch(() => {})
      }, BEAT_MS)
      timer.unref()
    },
    async stop() {
      clearInterval(timer)
    },
  }
}

/**
 * The cluster in Redis: a sorted set of nodes scored by when their lease ends
 * (`P{cluster}:nodes`), renewed every BEAT_MS. A node whose lease lapsed is dead: every
 * `onNodeDead` handler runs for it, then it is removed from the set.
 */
export function redisCluster(opts: { cmd: Redis; prefix: string; nodeId: string; ttlMs?: number; beatMs?: number }): Cluster {
  const { cmd, nodeId } = opts
  const ttl = opts.ttlMs ?? NODE_TTL_MS
  const leases = `${opts.prefix}{cluster}:nodes`
  const beats: (() => Promise<void>)[] = []
  const reapers: ((node: string) => Promise<void>)[] = []
  let timer: Timer | undefined
  /** When Redis was (re)connected: other nodes' leases may have lapsed with the outage, so none is reaped for a full TTL. */
  let connectedAt = Date.now()
  cmd.on('ready', () => (connectedAt = Date.now()))
  let beating = false

  async function reap(node: string) {
    for (const f of reapers) await f(node)
    await cmd.zrem(leases, node)
    log.info('a dead node was reaped', { dead: node })
  }

  async function beat() {
    if (beating) return
    beating = true
    try {
      const now = Number(await cmd.eval(RENEW, 1, leases, nodeId, ttl))
      for (const f of beats) await f().catch((err) => log.debug('heartbeat hook failed', { err }))
      if (Date.now() - connectedAt < ttl) return
      for (const node of await cmd.zrangebyscore(leases, '-inf', now))
        if (node !== nodeId) await reap(node).catch((err) => log.warn('dead node not reaped yet', { dead: node, err }))
    } catch (err) {
      log.debug('heartbeat failed', { err })
    } finally {
      beating = false
    }
  }

  return {
    nodeId,
    leases,
    async alive() {
      const now = Number(await cmd.eval(NOW, 1, leases))
      return cmd.zrangebyscore(leases, now, '+inf')
    },
    onBeat: (f) => void beats.push(f),
    onNodeDead: (f) => void reapers.push(f),
    async start() {
      // What an earlier life under this NODE_ID left is a dead node's: reaped before this one beats.
      for (const f of reapers) await f(nodeId)
      connectedAt = Date.now() - ttl // a fresh start may reap at once
      await beat()
      timer = setInterval(() => void beat(), opts.beatMs ?? BEAT_MS)
      timer.unref()
    },
    async stop() {
      clearInterval(timer)
      await cmd.zadd(leases, 0, nodeId).catch(() => {})
    },
  }
}
