import { afterAll, describe, expect, test as bunTest } from 'bun:test'
import { connect } from '../helpers/client'
import { freshDatabase } from '../helpers/postgres'
import { startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { needService, privateRedis } from '../helpers/services'

/** Rooms are forgotten: an idle room's log expires (HISTORY_TTL_S), and the memory engine keeps at most MAX_ROOMS. */

const servers: RunningServer[] = []
const tag = `${process.pid.toString(36)}${Date.now().toString(36)}`
let n = 0
const room = () => `ret-${tag}-${++n}`
async function node(env: Record<string, string>) {
  const s = await startServer({ env: { RATE_LIMIT_PER_SEC: '0', ...env } })
  servers.push(s)
  return s
}
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop('SIGKILL')))
})
const evicted = async (s: RunningServer) => {
  const text = await (await fetch(`${s.url}/metrics`)).text()
  return Number(/^chat_rooms_evicted_total (\d+)/m.exec(text)?.[1] ?? 0)
}

describe('memory engine', () => {
  bunTest('an idle room nobody is in is forgotten after HISTORY_TTL_S; a room someone is in is kept', async () => {
    const s = await node({ HISTORY_TTL_S: '1' })
    const idle = room()
    const kept = room()
    const c = await connect(s.ws)
    const first = await c.request({ type: 'join', room: idle })
    await c.request({ type: 'chat', room: idle, body: 'soon forgotten' })
    await c.request({ type: 'leave', room: idle })
    const stay = await c.request({ type: 'join', room: kept })
    await c.request({ type: 'chat', room: kept, body: 'kept' })
    await until(async () => (await evicted(s)) >= 1, 'the idle room to be evicted', 8000)
    const again = await c.request({ type: 'join', room: idle })
    expect(again).toMatchObject({ seq: 0 })
    expect(again.epoch).not.toBe(first.epoch)
    expect((await c.request({ type: 'history', room: idle })).messages).toEqual([])
    // the room the connection is still in kept its log and epoch
    expect((await c.request({ type: 'history', room: kept })).messages.map((m: { body: string }) => m.body)).toEqual(['kept'])
    expect((await c.request({ type: 'join', room: kept, since: 0, epoch: stay.epoch })).recovered).toBe(true)
    c.close()
  })

  bunTest('past MAX_ROOMS the least recently active room nobody is in goes first', async () => {
    const s = await node({ MAX_ROOMS: '3' })
    const c = await connect(s.ws) // the default room is one of the three
    const rooms = [room(), room(), room(), room()]
    for (const r of rooms) {
      await c.request({ type: 'join', room: r })
      await c.request({ type: 'chat', room: r, body: `in ${r}` })
      await c.request({ type: 'leave', room: r })
    }
    expect(await evicted(s)).toBeGreaterThanOrEqual(2)
    // the newest is still there, the oldest is gone, the default room (watched) survived
    expect((await c.request({ type: 'history', room: rooms[3]! })).messages).toHaveLength(1)
    expect((await c.request({ type: 'history', room: rooms[0]! })).messages).toHaveLength(0)
    expect((await c.request({ type: 'chat', body: 'general lives' })).seq).toBe(1)
    c.close()
  })
})

const pgTest = await needService('PostgreSQL', 5432)
describe('memory engine with PostgreSQL', () => {
  pgTest('after eviction, history and recovery reach back through the store; seq and epoch continue', async () => {
    const db = await freshDatabase('retention')
    try {
      const s = await node({ HISTORY_TTL_S: '1', POSTGRES_DSN: db.dsn })
      const r = room()
      const c = await connect(s.ws)
      const j = await c.request({ type: 'join', room: r })
      for (const body of ['a', 'b']) await c.request({ type: 'chat', room: r, body })
      await c.request({ type: 'leave', room: r })
      await until(async () => (await evicted(s)) >= 1, 'the idle room to be evicted', 8000)
      const again = await c.request({ type: 'join', room: r, since: 0, epoch: j.epoch })
      expect(again).toMatchObject({ seq: 2, epoch: j.epoch, recovered: true })
      expect(
        c
          .all('chat')
          .filter((m) => m.room === r)
          .map((m) => m.body),
      ).toEqual(['a', 'b', 'a', 'b'])
      expect((await c.request({ type: 'chat', room: r, body: 'c' })).seq).toBe(3)
      c.close()
    } finally {
      await db.drop()
    }
  })
})

const redisTest = await needService('Redis', 6379)
describe('Redis engine', () => {
  redisTest("an idle room's state and stream expire after HISTORY_TTL_S", async () => {
    const prefix = `ret-${tag}:`
    const s = await node({ HISTORY_TTL_S: '1', REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: prefix })
    const r = room()
    const c = await connect(s.ws)
    await c.request({ type: 'join', room: r })
    await c.request({ type: 'chat', room: r, body: 'expiring' })
    const redis = new (await import('ioredis')).default('redis://127.0.0.1:6379')
    try {
      const keys = [`${prefix}{${r}}:state`, `${prefix}{${r}}:log`]
      expect(await redis.exists(...keys)).toBe(2)
      const ttl = await redis.pttl(keys[1]!)
      expect(ttl).toBeGreaterThan(0)
      // Each refresh sets 1.25 × HISTORY_TTL_S (refreshes come at most once per quarter of it).
      expect(ttl).toBeLessThanOrEqual(1250)
      await until(async () => (await redis.exists(...keys)) === 0, 'the keys to expire', 5000)
    } finally {
      redis.disconnect()
      c.close()
    }
  })

  redisTest("a busy room's keys are given their TTL once per quarter HISTORY_TTL_S, not on every message", async () => {
    // A private Redis: its command counts are this node's alone.
    const own = await privateRedis({ keepData: false })
    const s = await node({ REDIS_URL: own.url, REDIS_PREFIX: `ret-${tag}:` })
    const r = room()
    const c = await connect(s.ws)
    const redis = new (await import('ioredis')).default(own.url)
    try {
      await c.request({ type: 'join', room: r })
      await c.request({ type: 'chat', room: r, body: 'first' })
      await redis.config('RESETSTAT')
      for (let i = 0; i < 20; i++) await c.request({ type: 'chat', room: r, body: `message ${i}` })
      const stats = await redis.info('commandstats')
      // Before: five PEXPIREs per message (100 here); HISTORY_TTL_S is a day, so none is due.
      expect(Number(/cmdstat_pexpire:calls=(\d+)/.exec(stats)?.[1] ?? 0)).toBe(0)
      expect(Number(/cmdstat_xadd:calls=(\d+)/.exec(stats)?.[1] ?? 0)).toBe(20)
      // Every key the room's messages made still has its TTL.
      for (const k of ['state', 'log', 'msgs', 'msgorder']) expect(await redis.pttl(`ret-${tag}:{${r}}:${k}`)).toBeGreaterThan(0)
    } finally {
      redis.disconnect()
      c.close()
      await own.kill()
    }
  })

  redisTest('a room that goes quiet after a burst of messages loses every key, its message list included', async () => {
    const prefix = `ret-${tag}:`
    const s = await node({ HISTORY_TTL_S: '1', REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: prefix })
    const r = room()
    const c = await connect(s.ws)
    const redis = new (await import('ioredis')).default('redis://127.0.0.1:6379')
    try {
      await c.request({ type: 'join', room: r })
      // Messages for ~0.6 s: some refresh the TTL (a quarter of it old), most do not.
      for (let i = 0; i < 12; i++) {
        await c.request({ type: 'chat', room: r, body: `burst ${i}` })
        await Bun.sleep(50)
      }
      const keys = ['state', 'log', 'msgs', 'msgorder'].map((k) => `${prefix}{${r}}:${k}`)
      expect(await redis.exists(...keys)).toBe(4)
      for (const k of keys) {
        const ttl = await redis.pttl(k)
        expect(ttl).toBeGreaterThan(0)
        expect(ttl).toBeLessThanOrEqual(1250)
      }
      await until(async () => (await redis.exists(...keys)) === 0, 'the keys to expire', 5000)
      // The room goes on from a new state: a message is accepted, all its keys with a TTL again.
      const a = await c.request({ type: 'chat', room: r, body: 'after' })
      expect(a.type).toBe('ack')
      for (const k of keys) expect(await redis.pttl(k)).toBeGreaterThan(0)
    } finally {
      redis.disconnect()
      c.close()
    }
  })
})
