import { afterAll, describe, expect } from 'bun:test'
import Redis from 'ioredis'
import { connect } from '../helpers/client'
import { until } from '../helpers/server'
import { testNodes } from '../helpers/nodes'
import { dropRedisPrefix, needService } from '../helpers/services'

// What a connect asks Redis before its `welcome` (issue 34: one round trip where there were
// several). A returning user's user channel and default room are subscribed in ONE SUBSCRIBE,
// sent with the read of its memberships, not after it.
const test = await needService('Redis', 6379)
const { node } = testNodes('round-trips-api-key-0001')
const prefix = `rt-${process.pid}-${Date.now().toString(36)}:`
afterAll(() => dropRedisPrefix(prefix))

/** The commands Redis receives from now on about this file's keys (MONITOR), once it is listening. */
async function watchCommands(r: Redis) {
  const monitor = await r.monitor()
  const seen: string[][] = []
  monitor.on('monitor', (_t: string, args: string[]) => {
    if (args.some((a) => a.startsWith(prefix))) seen.push(args)
  })
  await Bun.sleep(50)
  return { seen, at: (pred: (a: string[]) => boolean) => seen.findIndex(pred), stop: () => monitor.disconnect() }
}

describe('the Redis commands of a connect', () => {
  test("a returning user, its default room not watched on this node: one SUBSCRIBE of both channels, sent before its memberships' answer", async () => {
    const s = await node({ REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: prefix, DEFAULT_ROOM: 'lobby' })
    const first = await connect(s.ws, { user: 'rt-user', name: 'RT' })
    expect(first.welcome.rooms).toContain('lobby')
    first.close()
    const r = new Redis(6379, '127.0.0.1')
    // The node stops watching the room once its last connection has left.
    await until(async () => (await r.pubsub('NUMSUB', `${prefix}{lobby}:ch:r`))[1] === 0, 'lobby unwatched')
    const { seen, at, stop } = await watchCommands(r)
    try {
      const again = await connect(s.ws, { user: 'rt-user', name: 'RT' })
      expect(again.welcome.rooms).toContain('lobby')
      await Bun.sleep(50)
      const subscribes = seen.filter((a) => a[0]!.toLowerCase() === 'subscribe')
      expect(subscribes).toEqual([['SUBSCRIBE', `${prefix}{rt-user}:ch:u`, `${prefix}{lobby}:ch:r`]])
      // Sent before the memberships were read: it comes before the read of the room's state.
      const sub = at((a) => a[0]!.toLowerCase() === 'subscribe')
      const rooms = at((a) => a[0]!.toLowerCase() === 'hgetall' && a[1]!.endsWith(':rooms'))
      const state = at((a) => a[0]!.toLowerCase() === 'hmget' && a[1] === `${prefix}{lobby}:state`)
      expect(sub).toBeLessThan(state)
      expect(rooms).toBeLessThan(state)
      again.close()
    } finally {
      stop()
      r.disconnect()
    }
  })

  test("a new user: its default room membership's two sides are written at once, with the room's reads, not after the user's side answered", async () => {
    const s = await node({ REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: prefix, DEFAULT_ROOM: 'hall' })
    const r = new Redis(6379, '127.0.0.1')
    const { at, stop } = await watchCommands(r)
    try {
      const c = await connect(s.ws, { user: 'rt-new', name: 'New' })
      expect(c.welcome.rooms).toContain('hall')
      await Bun.sleep(50)
      const userSide = at((a) => a[0]!.toLowerCase().startsWith('eval') && a[3] === `${prefix}{u:rt-new}:rooms`)
      const roomSide = at((a) => a[0]!.toLowerCase() === 'hset' && a[1] === `${prefix}{hall}:members` && a[2] === 'rt-new')
      // The room's settings are read as its join is prepared, in the same turn as the user's side.
      const settings = at((a) => a[0]!.toLowerCase() === 'hmget' && a[1] === `${prefix}{hall}:state` && a.includes('slow'))
      expect(userSide).toBeGreaterThanOrEqual(0)
      expect(roomSide).toBeGreaterThanOrEqual(0)
      expect(settings).toBeGreaterThanOrEqual(0)
      // Before: the room's side waited for the user side's answer, so it came after the settings' read.
      expect(roomSide).toBeLessThan(settings)
      // Both sides are there, once.
      expect(await r.hget(`${prefix}{u:rt-new}:rooms`, 'hall')).not.toBeNull()
      expect(await r.hget(`${prefix}{hall}:members`, 'rt-new')).toBe('New')
      c.close()
    } finally {
      stop()
      r.disconnect()
    }
  })
})
