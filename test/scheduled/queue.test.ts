import { afterAll, describe, expect, test as bunTest } from 'bun:test'
import Redis from 'ioredis'
import postgres from 'postgres'
import { memoryScheduled } from '../../src/members/scheduled'
import type { ScheduledMessage, ScheduledQueue } from '../../src/members/scheduled'
import { postgresScheduled } from '../../src/members/scheduled-postgres'
import { redisScheduled } from '../../src/members/scheduled-redis'
import { migrate } from '../../src/store/migrate'
import { freshDatabase } from '../helpers/postgres'
import { dropRedisPrefix, needService } from '../helpers/services'
import { needRedisBinaries, startRedisCluster } from '../helpers/redis-cluster'
import { redisConnections } from '../../src/broker/redis-connect'

/**
 * The scheduled-message queue engines: the same promises on memory, Redis and PostgreSQL. Two
 * "nodes" (two queues on one Redis or database) claiming at once never get the same message;
 * a claim holds a message for its lease only.
 */

const redisTest = await needService('Redis', 6379)
const pgTest = await needService('PostgreSQL', 5432)
const cleanups: (() => Promise<unknown>)[] = []
afterAll(async () => {
  for (const c of cleanups) await c()
})

type Pair = [ScheduledQueue, ScheduledQueue]
let cluster: Awaited<ReturnType<typeof startRedisCluster>> | undefined
const engines: { name: string; test: typeof bunTest; pair(): Promise<Pair> }[] = [
  {
    name: 'memory',
    test: bunTest,
    async pair() {
      const q = memoryScheduled()
      return [q, q]
    },
  },
  {
    name: 'Redis',
    test: redisTest,
    async pair() {
      const prefix = `schedq-${process.pid}-${Date.now().toString(36)}:`
      const r1 = new Redis('redis://127.0.0.1:6379')
      const r2 = new Redis('redis://127.0.0.1:6379')
      cleanups.push(async () => {
        r1.disconnect()
        r2.disconnect()
        await dropRedisPrefix(prefix)
      })
      return [redisScheduled(r1, prefix), redisScheduled(r2, prefix)]
    },
  },
  {
    name: 'Redis Cluster',
    test: needRedisBinaries(),
    async pair() {
      if (!cluster) {
        const started = (cluster = await startRedisCluster())
        cleanups.push(() => started.stop())
      }
      const c1 = redisConnections(cluster.url, true)
      const c2 = redisConnections(cluster.url, true)
      await Promise.all([c1.connect(), c2.connect()])
      cleanups.unshift(async () => {
        c1.close()
        c2.close()
      })
      return [redisScheduled(c1.cmd, 'schedq:'), redisScheduled(c2.cmd, 'schedq:')]
    },
  },
  {
    name: 'PostgreSQL',
    test: pgTest,
    async pair() {
      const db = await freshDatabase('schedq')
      await migrate(db.sql)
      const s1 = postgres(db.dsn, { max: 4, onnotice: () => {} })
      const s2 = postgres(db.dsn, { max: 4, onnotice: () => {} })
      cleanups.push(async () => {
        await s1.end({ timeout: 1 })
        await s2.end({ timeout: 1 })
        await db.drop()
      })
      return [postgresScheduled(s1), postgresScheduled(s2)]
    },
  },
]

let n = 0
const item = (user: string, at: number, extra: Partial<ScheduledMessage> = {}): ScheduledMessage => ({
  scheduled: `s-${process.pid}-${++n}`,
  user: { id: user, name: user.toUpperCase() },
  room: 'r1',
  body: `body ${n}`,
  send_at: new Date(at).toISOString(),
  ...extra,
})

for (const e of engines) {
  describe(`scheduled queue: ${e.name}`, () => {
    e.test('concurrent claims of two nodes split the due messages: each claimed once; none before its time', async () => {
      const [q1, q2] = await e.pair()
      const now = Date.now()
      const due = Array.from({ length: 40 }, () => item('u1', now - 1000))
      const later = item('u1', now + 60_000)
      for (const m of [...due, later]) expect(await q1.add(m, 1000)).toBe('added')
      expect(await q2.add(later, 1000)).toBe('exists')
      const claims = await Promise.all([q1, q2, q1, q2].map((q) => q.claim(now, 15, 30_000)))
      const ids = claims.flat().map((m) => m.scheduled)
      expect(ids.length).toBe(due.length)
      expect(new Set(ids).size).toBe(due.length)
      expect(ids).not.toContain(later.scheduled)
      // Held: claimed again before the lease ends, nothing; after it, the unfinished come back.
      expect(await q2.claim(now + 1000, 100, 30_000)).toEqual([])
      for (const m of claims[0]!) await q1.done(m)
      const again = (await q2.claim(now + 31_000, 100, 30_000)).map((m) => m.scheduled)
      expect(again.sort()).toEqual(
        claims
          .slice(1)
          .flat()
          .map((m) => m.scheduled)
          .sort(),
      )
    })

    e.test("list is the user's own (one room when asked), by send_at; remove only one's own; the cap", async () => {
      const [q1, q2] = await e.pair()
      const now = Date.now()
      const u = `lister-${n}`
      const b = item(u, now + 20_000)
      const a = item(u, now + 10_000, { room: 'r2', data: { x: [1] } })
      const dm = item(u, now + 15_000, { room: undefined, to: 'friend' })
      for (const m of [b, a, dm]) await q1.add(m, 3)
      expect(await q1.add(item(u, now + 5000), 3)).toBe('limit')
      expect((await q2.list(u)).map((m) => m.scheduled)).toEqual([a.scheduled, dm.scheduled, b.scheduled])
      expect(await q2.list(u, 'r2')).toEqual([a])
      expect(await q2.list('someone-else')).toEqual([])
      expect(await q2.remove('someone-else', a.scheduled)).toBe(false)
      expect(await q2.remove(u, a.scheduled)).toBe(true)
      expect(await q2.remove(u, a.scheduled)).toBe(false)
      expect((await q1.list(u)).map((m) => m.scheduled)).toEqual([dm.scheduled, b.scheduled])
      // Removed: never claimed.
      expect((await q1.claim(now + 30_000, 100, 1000)).map((m) => m.scheduled)).not.toContain(a.scheduled)
    })
  })
}
