import { afterAll, beforeAll, describe, expect } from 'bun:test'
import { RedisClient } from 'bun'
import { scriptClient } from '../../src/broker/script-client'
import { needService, privateRedis } from '../helpers/services'

// The append connection of one Redis (src/broker/script-client.ts) tells a stalled connection
// from a busy one. A private redis-server, as CLIENT PAUSE stops every client of it.
const t = await needService('Redis', 6379)

/** Takes about `ms` of Redis's time per call: a Redis that answers every call, slowly. */
const SLOW = `local t = redis.call('TIME'); local start = t[1] * 1e6 + t[2]
repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] - start >= tonumber(ARGV[1]) * 1000
return ARGV[2]`

describe('script client', () => {
  let redis: Awaited<ReturnType<typeof privateRedis>>
  beforeAll(async () => {
    redis = await privateRedis({ keepData: false })
  })
  afterAll(() => redis?.kill())

  t(
    'calls queued behind a long burst all answer, however old they are, while the connection keeps answering',
    async () => {
      const sc = scriptClient(redis.url, { stallMs: 300 })
      await sc.connect()
      try {
        // 400 calls of 3 ms: the last waits ~1.2 s, four times the stall limit, and is answered.
        // Each carries 8 KiB, so that Redis reads (and answers) a couple at a time: a pipeline of
        // small calls is read whole and answered at once when done, which is a stall from outside.
        const pad = 'x'.repeat(8192)
        const t0 = performance.now()
        const out = await Promise.allSettled(Array.from({ length: 400 }, (_, i) => sc.run(SLOW, [], [3, `r${i}`, pad])))
        const waited = performance.now() - t0
        expect(waited).toBeGreaterThan(1000)
        const failed = out.filter((r) => r.status === 'rejected')
        expect(failed.map((r) => String((r as PromiseRejectedResult).reason))).toEqual([])
        expect(out.map((r) => (r as PromiseFulfilledResult<unknown>).value)).toEqual(Array.from({ length: 400 }, (_, i) => `r${i}`))
      } finally {
        sc.close()
      }
    },
    20_000,
  )

  t(
    'a connection that answers nothing fails its calls and is back once Redis answers again',
    async () => {
      const sc = scriptClient(redis.url, { stallMs: 300 })
      await sc.connect()
      const admin = new RedisClient(redis.url)
      await admin.connect()
      try {
        expect(await sc.run(SLOW, [], [0, 'before'])).toBe('before')
        await admin.send('CLIENT', ['PAUSE', '1500', 'ALL'])
        const t0 = performance.now()
        const stuck = await Promise.allSettled([sc.run(SLOW, [], [0, 'a']), sc.run(SLOW, [], [0, 'b'])])
        const failedAfter = performance.now() - t0
        expect(stuck.map((r) => r.status)).toEqual(['rejected', 'rejected'])
        expect(String((stuck[0] as PromiseRejectedResult).reason)).toContain('no answer in 300 ms')
        // Failed by the stall watchdog (300 ms, checked every 150 ms), not by the pause's end.
        expect(failedAfter).toBeLessThan(1200)
        let after: unknown
        for (let i = 0; i < 60 && after === undefined; i++) {
          await Bun.sleep(100)
          after = await sc.run(SLOW, [], [0, 'after']).catch(() => undefined)
        }
        expect(after).toBe('after')
        expect(sc.connected).toBe(true)
      } finally {
        admin.close()
        sc.close()
      }
    },
    20_000,
  )

  t('an unknown script is loaded once, however many calls of it were in flight; a command goes on the same connection', async () => {
    const sc = scriptClient(redis.url)
    await sc.connect()
    const admin = new RedisClient(redis.url)
    await admin.connect()
    try {
      await admin.send('SCRIPT', ['FLUSH'])
      await admin.send('CONFIG', ['RESETSTAT'])
      // A script text of its own: no earlier test loaded it.
      const lua = `return ARGV[1] .. '${crypto.randomUUID()}'`
      const out = await Promise.all(Array.from({ length: 50 }, (_, i) => sc.run(lua, [], [`c${i}-`])))
      expect(out.every((x, i) => String(x).startsWith(`c${i}-`))).toBe(true)
      const stats = String(await admin.send('INFO', ['commandstats']))
      const loads = Number(/cmdstat_script\|load:calls=(\d+)/.exec(stats)?.[1] ?? 0)
      expect(loads).toBe(1)
      await sc.send('SET', ['sc-key', 'v'])
      expect(await sc.send('GET', ['sc-key'])).toBe('v')
    } finally {
      admin.close()
      sc.close()
    }
  })
})
