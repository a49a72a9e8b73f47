import Redis, { Cluster } from 'ioredis'
import type { RedisOptions } from 'ioredis'
import { scriptClient } from './script-client'
import type { ScriptClient } from './script-client'
import { bunSubscriber, clusterSubscriber } from './subscriber'
import type { Subscriber } from './subscriber'

/** Reconnects back off from 100 ms, doubling up to 2 s. */
const backoff = (n: number) => Math.min(100 * 2 ** n, 2000)

/** `redis://user:pass@host:port` seeds; auth and TLS (`rediss://`) of the first one apply to every node. */
function seeds(url: string) {
  const urls = url.split(',').map((s) => new URL(s.trim()))
  const first = urls[0]!
  const auth: RedisOptions = {
    username: first.username ? decodeURIComponent(first.username) : undefined,
    password: first.password ? decodeURIComponent(first.password) : undefined,
    tls: first.protocol === 'rediss:' ? {} : undefined,
  }
  return { nodes: urls.map((u) => ({ host: u.hostname, port: Number(u.port || 6379) })), auth }
}

/**
 * A connection of the Redis engine: `command` (no offline queue, a 3 s timeout: commands fail
 * fast while Redis is away), `blocking` (for blocking reads) or `subscriber`. With `cluster`, a Redis Cluster client that
 * follows the topology (MOVED/ASK, failovers); its subscriber keeps one connection per primary
 * for sharded pub/sub (SSUBSCRIBE) and subscribes again when slots move. Typed as the plain
 * client: the commands the engine uses are the same on both.
 */
export function redisConnection(url: string, cluster: boolean, role: 'command' | 'subscriber' | 'blocking'): Redis {
  const perRole: RedisOptions =
    role === 'command'
      ? { enableOfflineQueue: false, enableAutoPipelining: true, commandTimeout: 3000 }
      : role === 'blocking'
        ? { enableOfflineQueue: false } // blocking reads (XREADGROUP BLOCK): no command timeout
        : { autoResubscribe: false, enableOfflineQueue: true }
  if (!cluster) return new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: backoff, ...perRole })
  const { nodes, auth } = seeds(url)
  const c = new Cluster(nodes, {
    lazyConnect: true,
    enableOfflineQueue: perRole.enableOfflineQueue,
    // Auto-pipelines are grouped by a command's first argument: every script's is a key (the
    // append script is two commands, by key count, for that reason; redis-scripts.ts).
    enableAutoPipelining: perRole.enableAutoPipelining ?? false,
    clusterRetryStrategy: backoff,
    shardedSubscribers: role === 'subscriber',
    // Managed clusters behind TLS announce names that must be looked up as given.
    dnsLookup: (address, callback) => callback(null, address),
    redisOptions: { maxRetriesPerRequest: 1, commandTimeout: perRole.commandTimeout, ...auth },
  })
  return c as unknown as Redis
}

/**
 * A node's connections to Redis, made once (in main) and handed to whatever needs Redis:
 * `cmd` for commands and scripts, `sub` for pub/sub (Bun's client on one Redis, ioredis on a
 * Cluster: subscriber.ts), `blocking` (made on first use) for the blocking reads of queue consumers.
 */
export interface RedisConnections {
  cmd: Redis
  sub: Subscriber
  blocking(): Redis
  /** One Redis (not a Cluster): the append script's own connection, Bun's client (script-client.ts). */
  scripts?: ScriptClient
  /** Connects what is not connected yet. */
  connect(): Promise<void>
  close(): void
}

export function redisConnections(url: string, cluster: boolean): RedisConnections {
  const cmd = redisConnection(url, cluster, 'command')
  const first = url.split(',')[0]!.trim()
  const sub = cluster ? clusterSubscriber(redisConnection(url, true, 'subscriber')) : bunSubscriber(first)
  const scripts = cluster ? undefined : scriptClient(first)
  let blocking: Redis | undefined
  const open = (c: Redis) => (c.status === 'wait' ? c.connect() : Promise.resolve())
  return {
    cmd,
    sub,
    scripts,
    blocking() {
      if (!blocking) {
        blocking = redisConnection(url, cluster, 'blocking')
        blocking.on('error', () => {}) // its reads fail and are retried; the broker reports Redis
      }
      return blocking
    },
    async connect() {
      await Promise.all([...[cmd, ...(blocking ? [blocking] : [])].map(open), sub.connect()])
      if (scripts && !scripts.connected) await scripts.connect()
    },
    close() {
      for (const c of [cmd, sub, blocking]) c?.disconnect()
      scripts?.close()
    },
  }
}
