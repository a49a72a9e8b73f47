import { afterAll, beforeAll, describe, expect, test as bunTest } from 'bun:test'
import { testNodes } from '../helpers/nodes'
import { needService } from '../helpers/services'
import { freshDatabase } from '../helpers/postgres'
import { onRedisAndCluster } from '../helpers/redis-suites'
import type { TestClient } from '../helpers/client'
import type { RunningServer } from '../helpers/server'

/** Pinned messages: `pinned` / `unpinned` events of the room's log, checked by the sequencer of every engine. */

const API_KEY = 'pins-test-key-0123456789abcdef'
const { tag, uid, node, api, as } = testNodes(API_KEY)
const ENV = { PINS_MAX_PER_ROOM: '2' }

type Pin = { msg: string; by: { id: string }; ts: string; message?: Record<string, unknown> }

async function member(c: TestClient, room: string) {
  expect(await c.request({ type: 'join', room, member: true })).toMatchObject({ type: 'joined', room })
}

function pinSuite(name: string, nodes: () => RunningServer[], test: typeof bunTest) {
  const at = (i: number) => nodes()[i % nodes().length]!
  describe(name, () => {
    test('a moderator pins and unpins; a member may not; refusals, no-ops and the cap; the list', async () => {
      const room = uid('pin')
      const mod = await as(at(0), uid('mod'))
      const a = await as(at(1), uid('a'))
      const outsider = await as(at(2), uid('o'))
      expect((await api(at(0), 'PUT', `/rooms/${room}/roles/${mod.welcome.user.id}`, { role: 'moderator' })).status).toBe(200)
      await member(mod, room)
      await member(a, room)
      const m1 = (await a.request({ type: 'chat', room, body: 'first' })).msg as string
      const m2 = (await a.request({ type: 'chat', room, body: 'second' })).msg as string
      const m3 = (await a.request({ type: 'chat', room, body: 'third' })).msg as string

      const refused = await a.request({ type: 'pin', room, msg: m1 })
      expect(refused).toMatchObject({ type: 'error', code: 'forbidden' })
      expect(refused.message).toMatch(/moderator/)
      expect(await mod.request({ type: 'pin', room, msg: 'no-such-message' })).toMatchObject({ type: 'error', code: 'not_found' })
      expect(await mod.request({ type: 'pin', room, msg: '' })).toMatchObject({ type: 'error', code: 'bad_request' })

      const pinned = await mod.request({ type: 'pin', room, msg: m1 })
      expect(pinned).toMatchObject({ type: 'ack', msg: m1, seq: 4 })
      expect(await a.next({ type: 'pinned' })).toMatchObject({
        type: 'pinned',
        room,
        seq: 4,
        msg: m1,
        by: { id: mod.welcome.user.id },
        ts: expect.any(String),
      })
      // again: nothing new (an ack without seq)
      const again = await mod.request({ type: 'pin', room, msg: m1 })
      expect(again.type).toBe('ack')
      expect(again.seq).toBeUndefined()
      expect(await mod.request({ type: 'pin', room, msg: m2 })).toMatchObject({ type: 'ack', seq: 5 })
      // PINS_MAX_PER_ROOM=2
      const capped = await mod.request({ type: 'pin', room, msg: m3 })
      expect(capped).toMatchObject({ type: 'error', code: 'limit' })
      expect(capped.message).toMatch(/PINS_MAX_PER_ROOM/)

      await a.request({ type: 'edit', room, msg: m1, body: 'first (edited)' })
      const list = await a.request({ type: 'pins', room })
      expect(list).toMatchObject({ type: 'pins', room })
      const pins = list.pins as Pin[]
      expect(pins.map((p) => p.msg)).toEqual([m1, m2])
      expect(pins[0]).toMatchObject({
        by: { id: mod.welcome.user.id },
        ts: expect.any(String),
        message: { type: 'chat', id: m1, body: 'first (edited)', edited_at: expect.any(String) },
      })
      expect(pins[1]!.message).toMatchObject({ id: m2, body: 'second' })
      expect(await outsider.request({ type: 'pins', room })).toMatchObject({ type: 'error', code: 'forbidden' })
      expect(await a.request({ type: 'unpin', room, msg: m2 })).toMatchObject({ type: 'error', code: 'forbidden' })

      expect(await mod.request({ type: 'unpin', room, msg: m2 })).toMatchObject({ type: 'ack', msg: m2, seq: 7 })
      expect(await a.next({ type: 'unpinned' })).toMatchObject({ room, seq: 7, msg: m2, by: { id: mod.welcome.user.id } })
      const none = await mod.request({ type: 'unpin', room, msg: m2 })
      expect(none.type).toBe('ack')
      expect(none.seq).toBeUndefined()
      // room under the cap again
      expect(await mod.request({ type: 'pin', room, msg: m3 })).toMatchObject({ type: 'ack', seq: 8 })

      // deleting a pinned message unpins it; a deleted message cannot be pinned
      expect(await a.request({ type: 'delete', room, msg: m1 })).toMatchObject({ type: 'ack', seq: 9 })
      expect(((await a.request({ type: 'pins', room })).pins as Pin[]).map((p) => p.msg)).toEqual([m3])
      expect(await mod.request({ type: 'pin', room, msg: m1 })).toMatchObject({ type: 'error', code: 'not_found' })
      // and it was unpinned by the delete: the cap has room for one more
      expect(await mod.request({ type: 'pin', room, msg: m2 })).toMatchObject({ type: 'ack', seq: 10 })
      mod.close()
      a.close()
      outsider.close()
    }, 20_000)

    test('pinned and unpinned are in history and in recovery (join with since)', async () => {
      const room = uid('rec')
      const mod = await as(at(0), uid('mod'))
      expect((await api(at(0), 'PUT', `/rooms/${room}/roles/${mod.welcome.user.id}`, { role: 'owner' })).status).toBe(200)
      await member(mod, room)
      const m = (await mod.request({ type: 'chat', room, body: 'pin me' })).msg as string
      const b = await as(at(1), uid('b'))
      await member(b, room)
      b.close()
      expect(await mod.request({ type: 'pin', room, msg: m })).toMatchObject({ type: 'ack', seq: 2 })
      expect(await mod.request({ type: 'unpin', room, msg: m })).toMatchObject({ type: 'ack', seq: 3 })
      expect(await mod.request({ type: 'pin', room, msg: m })).toMatchObject({ type: 'ack', seq: 4 })
      const c = await as(at(2), uid('c'))
      const joined = await c.request({ type: 'join', room, since: 1 })
      expect(joined).toMatchObject({ type: 'joined', room, recovered: true })
      expect(await c.next({ type: 'pinned', seq: 2 })).toMatchObject({ msg: m })
      expect(await c.next({ type: 'unpinned', seq: 3 })).toMatchObject({ msg: m })
      expect(await c.next({ type: 'pinned', seq: 4 })).toMatchObject({ msg: m })
      const h = (await mod.request({ type: 'history', room })).messages as Record<string, unknown>[]
      expect(h.map((f) => f.type)).toEqual(['chat', 'pinned', 'unpinned', 'pinned'])
      mod.close()
      c.close()
    }, 20_000)
  })
}

let one: RunningServer
describe('one node', () => {
  bunTest(
    'start',
    async () => {
      one = await node(ENV)
    },
    30_000,
  )
})
pinSuite('pins on one node', () => [one], bunTest)

await onRedisAndCluster({ what: 'pins', node, env: ENV, prefix: `pins-${tag}:`, suite: pinSuite })

const pgTest = await needService('PostgreSQL', 5432)
describe('with PostgreSQL', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>
  let pg: RunningServer[] = []
  beforeAll(async () => {
    if (pgTest === bunTest) db = await freshDatabase('pins')
  })
  afterAll(async () => {
    await Promise.all(pg.map((s) => s.stop('SIGKILL')))
    await db?.drop()
  })
  pgTest(
    'start a node on PostgreSQL',
    async () => {
      pg = [await node({ POSTGRES_DSN: db.dsn, ...ENV })]
    },
    30_000,
  )
  pinSuite('pins with PostgreSQL', () => pg, pgTest)

  for (const [what, env] of [
    ['memory', {}],
    ['Redis', { REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: `pins-pg-${tag}:` }],
  ] as const)
    pgTest(
      `pins survive a restart (${what} engine with PostgreSQL), beyond the broker's log`,
      async () => {
        const room = uid('keep')
        const start = () => node({ POSTGRES_DSN: db.dsn, ...ENV, HISTORY_LIMIT: '3', ...env })
        let s = await start()
        const mod = await as(s, uid('mod'))
        expect((await api(s, 'PUT', `/rooms/${room}/roles/${mod.welcome.user.id}`, { role: 'moderator' })).status).toBe(200)
        await member(mod, room)
        const m = (await mod.request({ type: 'chat', room, body: 'kept' })).msg as string
        const gone = (await mod.request({ type: 'chat', room, body: 'unpinned later' })).msg as string
        expect(await mod.request({ type: 'pin', room, msg: m })).toMatchObject({ type: 'ack' })
        expect(await mod.request({ type: 'pin', room, msg: gone })).toMatchObject({ type: 'ack' })
        expect(await mod.request({ type: 'unpin', room, msg: gone })).toMatchObject({ type: 'ack' })
        // past the broker's log (HISTORY_LIMIT=3)
        for (let i = 0; i < 6; i++) await mod.request({ type: 'chat', room, body: `filler ${i}` })
        mod.close()
        await s.stop('SIGTERM')
        if (what === 'Redis') {
          // Redis lost the room too: the store has the pins.
          const { default: Redis } = await import('ioredis')
          const r = new Redis('redis://127.0.0.1:6379')
          const keys = await r.keys(`pins-pg-${tag}:{${room}}:*`)
          expect(keys.length).toBeGreaterThan(0)
          await r.del(...keys)
          r.disconnect()
        }
        s = await start()
        const again = await as(s, mod.welcome.user.id)
        await again.next({ type: 'joined', room })
        const pins = (await again.request({ type: 'pins', room })).pins as Pin[]
        expect(pins.map((p) => p.msg)).toEqual([m])
        expect(pins[0]!.message).toMatchObject({ id: m, body: 'kept' })
        // still pinned for the sequencer: pinning again is a no-op, and the cap counts it
        const noop = await again.request({ type: 'pin', room, msg: m })
        expect(noop.type).toBe('ack')
        expect(noop.seq).toBeUndefined()
        again.close()
      },
      60_000,
    )
})
