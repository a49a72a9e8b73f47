// The cluster's ledger (src/cluster/ledger.ts): one book of facts per use (presence, liveness,
// Pusher occupancy, connection counts), the same promises in memory, on one Redis and on a
// real Redis Cluster: first/last across nodes, counts, paging, a limit, a dead node reaped.
import { afterAll, describe, expect, test } from 'bun:test'
import type Redis from 'ioredis'
import { redisConnection } from '../../src/broker/redis-connect'
import { scriptClient } from '../../src/broker/script-client'
import { redisCluster } from '../../src/cluster/heartbeat'
import type { Cluster } from '../../src/cluster/heartbeat'
import { listAll, memoryLedger, redisLedger } from '../../src/cluster/ledger'
import type { Book, Ledger } from '../../src/cluster/ledger'
import { startRedisCluster, needRedisBinaries } from '../helpers/redis-cluster'
import { dropRedisPrefix, needService } from '../helpers/services'

type Edge = [edge: 'up' | 'down', key: string, member: string, info: string]

interface Node {
  book: Book
  edges: Edge[]
  /** The node dies without a word: its lease lapses (Redis only). */
  die?: () => Promise<void>
}

interface Engine {
  name: string
  test: typeof test
  /** Two nodes of one cluster (memory: the same one twice, it is the cluster). */
  nodes(): Promise<[Node, Node]>
  stop(): Promise<void>
}

const redisTest = await needService('Redis', 6379)
const clusterTest = needRedisBinaries()
let rc: Awaited<ReturnType<typeof startRedisCluster>> | undefined
const cleanups: (() => Promise<void> | void)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
  await rc?.stop()
})

let n = 0
const uid = (s: string) => `${s}-${process.pid}-${n++}`

function memoryEngine(): Engine {
  return {
    name: 'memory',
    test,
    async nodes() {
      const edges: Edge[] = []
      const book = memoryLedger().book('t', (...e) => edges.push(e))
      const one = { book, edges }
      return [one, one]
    },
    async stop() {},
  }
}

/** `bunScripts`: the ledger's writes go through Bun's client (as a node on one Redis runs them), not ioredis. */
function redisEngine(name: string, url: () => string, cluster: boolean, test: Engine['test'], bunScripts = false): Engine {
  return {
    name,
    test,
    async nodes() {
      if (cluster && !rc) rc = await startRedisCluster()
      const prefix = `ledger-${process.pid}-${Date.now().toString(36)}-${n++}:`
      const make = async (
        nodeId: string,
      ): Promise<Node & { heart: Cluster; ledger: Ledger; cmd: Redis; scripts?: ReturnType<typeof scriptClient> }> => {
        const cmd = redisConnection(url(), cluster, 'command')
        await cmd.connect()
        const scripts = bunScripts ? scriptClient(url()) : undefined
        await scripts?.connect()
        // A short lease: a node silent for 600 ms is dead, seen within a 100 ms beat.
        const heart = redisCluster({ cmd, prefix, nodeId, ttlMs: 600, beatMs: 100 })
        const ledger = redisLedger({ cmd, prefix, nodes: heart, bun: scripts })
        const edges: Edge[] = []
        const book = ledger.book('t', (...e) => edges.push(e))
        await heart.start()
        return {
          book,
          edges,
          heart,
          ledger,
          cmd,
          scripts,
          async die() {
            cmd.disconnect() // no more beats, no goodbye: the lease lapses
            scripts?.close()
          },
        }
      }
      const a = await make('node-a')
      const b = await make('node-b')
      cleanups.push(async () => {
        await b.heart.stop()
        await a.heart.stop().catch(() => {})
        a.cmd.disconnect()
        b.cmd.disconnect()
        a.scripts?.close()
        b.scripts?.close()
        if (!cluster) await dropRedisPrefix(prefix)
      })
      return [a, b]
    },
    async stop() {},
  }
}

const factories: Engine[] = [
  memoryEngine(),
  redisEngine('Redis', () => 'redis://127.0.0.1:6379', false, redisTest),
  redisEngine("Redis, writes on Bun's client", () => 'redis://127.0.0.1:6379', false, redisTest, true),
  redisEngine('Redis Cluster', () => rc!.url, true, clusterTest),
]

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 10_000) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await check()) return
    await Bun.sleep(50)
  }
  throw new Error(`timed out waiting for ${what}`)
}

for (const e of factories) {
  describe(`ledger: ${e.name}`, () => {
    e.test(
      "first and last are the cluster's: a member up on two nodes is first once and last once",
      async () => {
        const [a, b] = await e.nodes()
        const room = uid('room')
        expect(await a.book.up(room, 'alice', 'Alice')).toBe(true)
        expect(await b.book.up(room, 'alice', 'Alice')).toBe(false)
        expect(await a.book.up(room, 'alice', 'Alice')).toBe(false)
        expect(await a.book.weight(room, 'alice')).toBe(3)
        expect(await a.book.down(room, 'alice')).toBe(false)
        expect(await a.book.down(room, 'alice')).toBe(false)
        expect(await b.book.down(room, 'alice')).toBe(true)
        expect(await a.book.weight(room, 'alice')).toBe(0)
        // A member this node holds none of: nothing taken from the others, not a last.
        expect(await b.book.up(room, 'bob')).toBe(true)
        expect(await a.book.down(room, 'bob')).toBe(e.name === 'memory')
      },
      60_000,
    )

    e.test(
      'count, has and the info kept with a member',
      async () => {
        const [a, b] = await e.nodes()
        const key = uid('key')
        await a.book.up(key, 'alice', 'Alice')
        await b.book.up(key, 'bob', 'Bob')
        await b.book.up(key, 'alice', 'Alice')
        expect(await a.book.count(key)).toBe(2)
        expect(await b.book.has(key, ['alice', 'carol', 'bob'])).toEqual(new Set(['alice', 'bob']))
        expect((await listAll(a.book, key)).sort((x, y) => x.member.localeCompare(y.member))).toEqual([
          { member: 'alice', count: 2, info: 'Alice' },
          { member: 'bob', count: 1, info: 'Bob' },
        ])
        expect(await a.book.count(uid('empty'))).toBe(0)
        expect(await a.book.has(uid('empty'), [])).toEqual(new Set())
      },
      60_000,
    )

    e.test(
      'paging: every member once, pages continued by their cursor',
      async () => {
        const [a, b] = await e.nodes()
        const key = uid('paged')
        // More than a small hash (512 fields, kept compact: HSCAN answers it whole) holds.
        const N = 700
        await Promise.all(Array.from({ length: N }, (_, i) => (i % 2 ? a : b).book.up(key, `m${i}`, `M${i}`)))
        expect(await a.book.count(key)).toBe(N)
        const seen: string[] = []
        let cursor: string | undefined
        let pages = 0
        do {
          const page = await a.book.list(key, cursor, 50)
          for (const f of page.facts) {
            expect(f.info).toBe(`M${f.member.slice(1)}`)
            seen.push(f.member)
          }
          cursor = page.cursor
          pages++
        } while (cursor && pages < 1000)
        expect(pages).toBeGreaterThan(1)
        expect(seen.length).toBe(N)
        expect(new Set(seen).size).toBe(N)
      },
      60_000,
    )

    e.test(
      'acquire holds a limit across nodes; a down frees a place anywhere',
      async () => {
        const [a, b] = await e.nodes()
        const key = uid('users')
        expect(await a.book.acquire(key, 'u', 3)).toBe(true)
        expect(await a.book.acquire(key, 'u', 3)).toBe(true)
        expect(await b.book.acquire(key, 'u', 3)).toBe(true)
        expect(await b.book.acquire(key, 'u', 3)).toBe(false)
        expect(await a.book.acquire(key, 'u', 3)).toBe(false)
        expect(await a.book.weight(key, 'u')).toBe(3)
        expect(await b.book.acquire(key, 'other', 3)).toBe(true)
        expect(await a.book.down(key, 'u')).toBe(false)
        expect(await b.book.acquire(key, 'u', 3)).toBe(true)
        expect(await a.book.weight(key, 'u')).toBe(3)
      },
      60_000,
    )

    if (e.name !== 'memory')
      e.test(
        "a dead node's facts are reaped: its lasts reach a live node once, what others hold stays",
        async () => {
          const [a, b] = await e.nodes()
          const key = uid('room')
          await a.book.up(key, 'only-a', 'Only A')
          await a.book.up(key, 'both', 'Both')
          await b.book.up(key, 'both', 'Both')
          await a.book.acquire(key, 'limited', 1)
          expect(await b.book.acquire(key, 'limited', 1)).toBe(false)
          await a.die!()
          await until('node a reaped', async () => (await b.book.count(key)) === 1)
          expect(await b.book.has(key, ['only-a', 'both', 'limited'])).toEqual(new Set(['both']))
          expect(await b.book.weight(key, 'both')).toBe(1)
          // Its place is free again: the dead node's connection no longer counts.
          expect(await b.book.acquire(key, 'limited', 1)).toBe(true)
          const downs = b.edges.filter(([edge, k]) => edge === 'down' && k === key).map(([, , m, info]) => [m, info])
          expect(downs.sort()).toEqual([
            ['limited', 'limited'],
            ['only-a', 'Only A'],
          ])
        },
        60_000,
      )
  })
}

describe('one write per fact (a server on a private Redis, webhooks and push on)', () => {
  // What a connect writes to Redis about who is online, on a node that already serves the room:
  // the connection count, the user online (read by both webhooks and push) and the presence in
  // the room: one script each. The trackers this ledger replaced wrote five (liveness twice,
  // presence's node index apart from its script).
  redisTest(
    'a connect writes its connection count, its user online and its presence once each; a close likewise',
    async () => {
      const { privateRedis } = await import('../helpers/services')
      const { startServer } = await import('../helpers/server')
      const { connect } = await import('../helpers/client')
      const { webhookReceiver } = await import('../helpers/webhook-receiver')
      const webpush = (await import('web-push')).default
      const redis = await privateRedis({ keepData: false })
      const rx = webhookReceiver()
      const vapid = webpush.generateVAPIDKeys()
      const s = await startServer({
        env: {
          REDIS_URL: redis.url,
          NODE_ID: 'w1',
          WEBHOOK_URL: rx.url,
          WEBHOOK_SECRET: 'a-secret-of-sufficient-length',
          WEBHOOK_BATCH_MS: '10',
          PUSH_VAPID_PUBLIC_KEY: vapid.publicKey,
          PUSH_VAPID_PRIVATE_KEY: vapid.privateKey,
          PUSH_VAPID_SUBJECT: 'mailto:ops@example.com',
          MAX_CONNECTIONS_PER_USER: '5',
        },
      })
      const monitor = Bun.spawn(['redis-cli', '-p', String(new URL(redis.url).port), 'monitor'], { stdout: 'pipe', stderr: 'ignore' })
      try {
        const bob = await connect(s.ws, { user: 'bob' })
        await bob.next({ type: 'joined' })
        let text = ''
        void (async () => {
          for await (const c of monitor.stdout) text += new TextDecoder().decode(c)
        })()
        await Bun.sleep(300) // MONITOR is on
        const userOnline = (type: string) =>
          rx.received.flatMap((r) => r.events).some((e: any) => e.type === type && e.user?.id === 'alice')
        const alice = await connect(s.ws, { user: 'alice' })
        await alice.next({ type: 'joined' })
        await until('user.online of alice', () => userOnline('user.online'))
        await bob.next((f) => f.type === 'presence' && f.event === 'join' && f.user?.id === 'alice')
        const atOpen = text.length
        alice.ws.close()
        await bob.next((f) => f.type === 'presence' && f.event === 'leave' && f.user?.id === 'alice')
        await until('user.offline of alice', () => userOnline('user.offline'))
        await Bun.sleep(200)
        // The commands of the node (scripts run inside Redis are listed apart, as `lua`) that say
        // who is online: scripts and index writes naming alice or her room's presence.
        const facts = (s: string) =>
          s
            .split('\n')
            .filter((l) => !l.includes(' lua] ') && /"(eval|evalsha|sadd|srem|hset|hdel|hincrby)"/i.test(l) && l.includes('alice'))
            .filter((l) => !/rooms"|:members"|"chat:users"|devices|:events"|:state"/.test(l))
        const open = facts(text.slice(0, atOpen))
        const close = facts(text.slice(atOpen))
        expect({ open: open.length, close: close.length }).toEqual({ open: 3, close: 3 })
      } finally {
        monitor.kill()
        await s.stop()
        rx.stop()
        await redis.kill()
      }
    },
    60_000,
  )
})

describe('ledger: Redis back without its data', () => {
  redisTest(
    'every node sends its shares again: the counts come back, and what was gone is an up edge of its book',
    async () => {
      const { privateRedis } = await import('../helpers/services')
      const redis = await privateRedis({ keepData: false })
      const cmd = redisConnection(redis.url, false, 'command')
      try {
        await cmd.connect()
        const heart = redisCluster({ cmd, prefix: 'p:', nodeId: 'solo', ttlMs: 600, beatMs: 100 })
        const ledger = redisLedger({ cmd, prefix: 'p:', nodes: heart })
        const edges: Edge[] = []
        const book = ledger.book('t', (...e) => edges.push(e))
        await heart.start()
        await book.up('room', 'alice', 'Alice')
        await book.up('room', 'alice', 'Alice')
        await book.up('room', 'bob', 'Bob')
        await book.down('room', 'bob')
        await redis.kill()
        await redis.restart() // empty
        await until('the shares sent again', async () => (await book.weight('room', 'alice').catch(() => 0)) === 2)
        expect(await book.count('room')).toBe(1)
        expect(edges).toEqual([['up', 'room', 'alice', 'Alice']])
        // Written again from here on as before: the last goes with its down.
        await book.down('room', 'alice')
        expect(await book.down('room', 'alice')).toBe(true)
        await heart.stop()
      } finally {
        cmd.disconnect()
        await redis.kill()
      }
    },
    60_000,
  )
})
