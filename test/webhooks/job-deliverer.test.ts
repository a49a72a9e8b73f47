import { afterAll, describe, expect, test } from 'bun:test'
import Redis from 'ioredis'
import { startJobDeliverer } from '../../src/webhooks/job-deliverer'
import { memorySource } from '../../src/webhooks/queue'
import type { Held, Source } from '../../src/webhooks/queue'
import { redisSource } from '../../src/webhooks/redis-queue'
import { until } from '../helpers/push-receivers'
import { dropRedisPrefix, needService } from '../helpers/services'

/**
 * The per-job deliverer (issue 32 item 4) on both sources, the memory queue and a real Redis
 * stream: every job is finished exactly once (nothing lost, nothing left pending), a failing
 * job is retried on its own while the others finish, one past the retry window is given up
 * and reported, and no lane has more than `perLane` sends in flight.
 */

const redisTest = await needService('Redis', 6379)
const prefix = `test:job-deliverer:${process.pid}:`
const conns: Redis[] = []
afterAll(async () => {
  for (const c of conns) c.disconnect()
  await dropRedisPrefix(prefix)
})

async function run(source: Source) {
  const N = 120
  const now = Date.now()
  // Job 0 is older than the retry window and always fails: given up. Every 7th fails twice, then goes.
  const jobs = Array.from({ length: N }, (_, i) => ({
    id: `j${i}`,
    at: i === 0 ? now - 120_000 : now,
    json: JSON.stringify({ i, lane: i % 2 ? 'a' : 'b' }),
  }))
  const sent = new Map<string, number>()
  const finished: string[] = []
  const expired: string[] = []
  const inflight = new Map<string, number>()
  let worst = 0
  const d = startJobDeliverer({
    source,
    laneOf: (e) => JSON.parse(e.json).lane,
    perLane: 4,
    holdMax: 50,
    takeMax: 10,
    waitMax: 20,
    retryMs: 60_000,
    renewMs: 250,
    name: 'test',
    onExpired: (e) => expired.push(e.id),
    async send(e: Held) {
      const lane = JSON.parse(e.json).lane as string
      inflight.set(lane, (inflight.get(lane) ?? 0) + 1)
      worst = Math.max(worst, inflight.get(lane)!)
      await Bun.sleep(5)
      inflight.set(lane, inflight.get(lane)! - 1)
      const n = (sent.get(e.id) ?? 0) + 1
      sent.set(e.id, n)
      const i = JSON.parse(e.json).i as number
      if (i === 0 || (i % 7 === 0 && n <= 2)) return 'try again'
      finished.push(e.id)
      return undefined
    },
  })
  source.push(jobs)
  await until('every job finished or given up', () => finished.length + expired.length >= N || undefined, 20_000)
  await until('the source empty', () => source.depth() === 0 || undefined, 5000)
  await d.stop(1000)
  expect(expired).toEqual(['j0'])
  expect(finished.sort()).toEqual(
    jobs
      .slice(1)
      .map((j) => j.id)
      .sort(),
  )
  expect(new Set(finished).size).toBe(N - 1)
  expect(sent.get('j7')).toBe(3)
  expect(worst).toBeLessThanOrEqual(4)
  expect(d.held()).toBe(0)
}

describe('job deliverer', () => {
  test('memory source: each job finished once, failing ones retried on their own, old ones given up', async () => {
    await run(memorySource({ bound: 10_000, onDrop: () => {} }))
  })

  test('a lane whose sends all hang does not hold up another lane (one slow provider, the others go on)', async () => {
    const source = memorySource({ bound: 10_000, onDrop: () => {} })
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    const done: string[] = []
    const d = startJobDeliverer({
      source,
      laneOf: (e) => JSON.parse(e.json).lane,
      perLane: 2,
      holdMax: 1000,
      takeMax: 5,
      waitMax: 100,
      retryMs: 60_000,
      renewMs: 250,
      name: 'test',
      async send(e: Held) {
        if (JSON.parse(e.json).lane === 'slow') await gate
        done.push(e.id)
        return undefined
      },
    })
    const at = Date.now()
    // Ten hanging jobs first (more than the slow lane's slots and than one take), then the fast lane's.
    source.push(Array.from({ length: 10 }, (_, i) => ({ id: `slow${i}`, at, json: JSON.stringify({ lane: 'slow' }) })))
    source.push(Array.from({ length: 10 }, (_, i) => ({ id: `fast${i}`, at, json: JSON.stringify({ lane: 'fast' }) })))
    await until(
      'every fast job sent while the slow lane hangs',
      () => done.filter((id) => id.startsWith('fast')).length === 10 || undefined,
      10_000,
    )
    expect(done.filter((id) => id.startsWith('slow'))).toEqual([])
    release()
    await until('the slow ones too', () => done.length === 20 || undefined, 10_000)
    await d.stop(1000)
    expect(source.depth()).toBe(0)
  })

  redisTest('Redis source: the same, and nothing left in the stream or pending', async () => {
    const cmd = new Redis('redis://127.0.0.1:6379')
    const blocking = new Redis('redis://127.0.0.1:6379')
    conns.push(cmd, blocking)
    const source = redisSource({
      cmd,
      blocking,
      prefix,
      nodeId: 'n1',
      bound: 10_000,
      claimMs: 5000,
      onDrop: () => {},
      tag: 'jobs',
      group: 'jobs',
    })
    await source.start()
    await run(source)
    const stream = `${prefix}{jobs}:events`
    expect(await cmd.xlen(stream)).toBe(0)
    expect(((await cmd.xpending(stream, 'jobs')) as [number])[0]).toBe(0)
  })
})
