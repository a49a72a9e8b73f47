import { afterAll, beforeAll, describe, expect, test as bunTest } from 'bun:test'
import { testNodes } from '../helpers/nodes'
import { needService } from '../helpers/services'
import { freshDatabase } from '../helpers/postgres'
import { onRedisAndCluster } from '../helpers/redis-suites'
import type { Frame, TestClient } from '../helpers/client'
import type { RunningServer } from '../helpers/server'

/** Polls and slow mode (v4): vote, poll_closed and settings events of the room's log, through the hub on every engine. */

const API_KEY = 'polls-test-key-0123456789abcdef'
const { tag, uid, node, api, as } = testNodes(API_KEY)

async function member(c: TestClient, room: string) {
  const joined = await c.request({ type: 'join', room, member: true })
  expect(joined).toMatchObject({ type: 'joined', room })
  return joined
}

const POLL = { question: 'Lunch?', options: ['pizza', 'sushi', 'salad'] }

function pollSuite(name: string, nodes: () => RunningServer[], test: typeof bunTest) {
  const at = (i: number) => nodes()[i % nodes().length]!
  describe(name, () => {
    test('a poll: votes replace, [] withdraws, tallies live and in history with mine; close by the author once; closed refuses', async () => {
      const room = uid('poll')
      const a = await as(at(0), uid('a'))
      const b = await as(at(1), uid('b'))
      const c = await as(at(2), uid('c'))
      for (const x of [a, b, c]) await member(x, room)
      const ack = await a.request({ type: 'chat', room, body: 'vote please', poll: POLL })
      expect(ack.type).toBe('ack')
      expect(ack.seq).toBeNumber()
      const msg = ack.msg as string
      expect(await b.next({ type: 'chat', id: msg })).toMatchObject({
        poll: {
          question: 'Lunch?',
          options: [
            { text: 'pizza', votes: 0 },
            { text: 'sushi', votes: 0 },
            { text: 'salad', votes: 0 },
          ],
          multiple: false,
          anonymous: false,
          closed: false,
          mine: [],
        },
      })

      const v1 = await b.request({ type: 'vote', room, msg, options: [1] })
      expect(v1).toMatchObject({ type: 'ack', msg, seq: ack.seq + 1 })
      expect(await c.next({ type: 'vote', seq: v1.seq })).toMatchObject({
        room,
        msg,
        user: { id: b.welcome.user.id },
        options: [1],
        tallies: [0, 1, 0],
        ts: expect.any(String),
      })
      await c.request({ type: 'vote', room, msg, options: [1] })
      const moved = await b.request({ type: 'vote', room, msg, options: [2] })
      expect(await a.next({ type: 'vote', seq: moved.seq })).toMatchObject({ tallies: [0, 1, 1] })
      // The same vote again changes nothing: an ack without seq.
      expect((await b.request({ type: 'vote', room, msg, options: [2] })).seq).toBeUndefined()
      const withdrawn = await c.request({ type: 'vote', room, msg, options: [] })
      expect(await a.next({ type: 'vote', seq: withdrawn.seq })).toMatchObject({ options: [], tallies: [0, 0, 1] })
      expect(await b.request({ type: 'vote', room, msg, options: [0, 1] })).toMatchObject({ type: 'error', code: 'bad_request' })
      expect(await b.request({ type: 'vote', room, msg, options: [3] })).toMatchObject({ type: 'error', code: 'bad_request' })
      expect(await b.request({ type: 'vote', room, msg, options: [1.5] })).toMatchObject({ type: 'error', code: 'bad_request' })
      expect(await b.request({ type: 'vote', room, msg: 'nope', options: [0] })).toMatchObject({ type: 'error', code: 'not_found' })

      const shown = (who: TestClient) =>
        who.request({ type: 'history', room }).then((h) => (h.messages as Frame[]).find((m) => m.id === msg)!.poll)
      expect(await shown(b)).toMatchObject({ options: [{ votes: 0 }, { votes: 0 }, { votes: 1 }], mine: [2], closed: false })
      expect((await shown(a)).mine).toEqual([])
      expect((await shown(c)).mine).toEqual([])

      expect(await b.request({ type: 'close_poll', room, msg })).toMatchObject({ type: 'error', code: 'forbidden' })
      const closed = await a.request({ type: 'close_poll', room, msg })
      expect(closed).toMatchObject({ type: 'ack', msg })
      expect(closed.seq).toBeNumber()
      expect(await c.next({ type: 'poll_closed', seq: closed.seq })).toMatchObject({ room, msg, tallies: [0, 0, 1] })
      expect(await a.request({ type: 'close_poll', room, msg })).toMatchObject({ type: 'error', code: 'closed' })
      expect(await b.request({ type: 'vote', room, msg, options: [0] })).toMatchObject({ type: 'error', code: 'closed' })
      expect((await shown(b)).closed).toBe(true)

      // Recovery replays them: a client back from seq of the poll gets every vote and the close.
      const d = await as(at(1), uid('d'))
      expect(await d.request({ type: 'join', room, since: ack.seq })).toMatchObject({ recovered: true })
      const replayed = await d.next({ type: 'poll_closed' })
      expect(replayed.seq).toBe(closed.seq)
      expect(d.all('vote').map((v) => v.tallies)).toEqual([
        [0, 1, 0],
        [0, 2, 0],
        [0, 1, 1],
        [0, 0, 1],
      ])
      for (const x of [a, b, c, d]) x.close()
    }, 30_000)

    test('an anonymous poll: its votes name nobody; a multiple poll takes several options; many voters on every node at once', async () => {
      const room = uid('anon')
      const voters = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => as(at(i), uid(`v${i}`))))
      for (const v of voters) await member(v, room)
      const msg = (await voters[0]!.request({ type: 'chat', room, body: 'secret', poll: { ...POLL, anonymous: true, multiple: true } }))
        .msg as string
      await Promise.all(voters.map((v, i) => v.request({ type: 'vote', room, msg, options: i % 2 ? [0, 2] : [1] })))
      await Promise.all(voters.map((v, i) => v.request({ type: 'vote', room, msg, options: i % 2 ? [2] : [0, 1] })))
      const last = await voters[0]!.next((f) => f.type === 'vote' && f.tallies[0] + f.tallies[1] + f.tallies[2] === 9)
      expect(last.tallies).toEqual([3, 3, 3])
      for (const f of voters[5]!.all('vote')) {
        expect(f.user).toBeUndefined()
        expect(f.anonymous).toBe(true)
      }
      const h = (await voters[1]!.request({ type: 'history', room })).messages as Frame[]
      expect(h.find((m) => m.id === msg)!.poll).toMatchObject({ options: [{ votes: 3 }, { votes: 3 }, { votes: 3 }], mine: [2] })
      for (const v of voters) v.close()
    }, 30_000)

    test('closes_at: the poll closes by itself (one poll_closed from the server); bad polls are bad_request', async () => {
      const room = uid('timed')
      const a = await as(at(0), uid('a'))
      const b = await as(at(1), uid('b'))
      await member(a, room)
      await member(b, room)
      const closes_at = new Date(Date.now() + 1500).toISOString()
      const msg = (await a.request({ type: 'chat', room, body: 'quick', poll: { ...POLL, closes_at } })).msg as string
      expect(await b.next({ type: 'chat', id: msg })).toMatchObject({ poll: { closes_at } })
      await b.request({ type: 'vote', room, msg, options: [0] })
      const closed = await b.next({ type: 'poll_closed', msg }, 8000)
      expect(closed).toMatchObject({ tallies: [1, 0, 0], by: { id: 'server' } })
      expect(await b.request({ type: 'vote', room, msg, options: [1] })).toMatchObject({ type: 'error', code: 'closed' })
      await Bun.sleep(300)
      expect(b.all('poll_closed')).toHaveLength(1)

      const bad = async (poll: unknown) => (await a.request({ type: 'chat', room, body: 'x', poll })).code
      expect(await bad({ question: 'q', options: ['one'] })).toBe('bad_request')
      expect(await bad({ question: 'q', options: Array.from({ length: 11 }, (_, i) => `o${i}`) })).toBe('bad_request')
      expect(await bad({ question: 'q'.repeat(301), options: ['a', 'b'] })).toBe('bad_request')
      expect(await bad({ question: 'q', options: ['a', 'b'.repeat(101)] })).toBe('bad_request')
      expect(await bad({ question: 'q', options: ['a', 'b'], closes_at: new Date(Date.now() - 1000).toISOString() })).toBe('bad_request')
      expect(await bad({ question: 'q', options: ['a', 'b'], closes_at: 'soon' })).toBe('bad_request')
      a.close()
      b.close()
    }, 30_000)

    test('slow mode: owners and moderators set it (frame or API); joined carries it; a member waits (slow_mode, retry_after), moderators do not', async () => {
      const room = uid('slow')
      const mod = await as(at(0), uid('mod'))
      const m = await as(at(1), uid('m'))
      expect((await api(at(0), 'PUT', `/rooms/${room}/roles/${mod.welcome.user.id}`, { role: 'moderator' })).status).toBe(200)
      await member(mod, room)
      expect((await member(m, room)).settings).toEqual({ slow_mode_s: 0 })
      expect(await m.request({ type: 'settings', room, slow_mode_s: 30 })).toMatchObject({ type: 'error', code: 'forbidden' })
      expect(await mod.request({ type: 'settings', room, slow_mode_s: 3601 })).toMatchObject({ type: 'error', code: 'bad_request' })
      const set = await mod.request({ type: 'settings', room, slow_mode_s: 30 })
      expect(set.type).toBe('ack')
      expect(set.seq).toBeNumber()
      expect(await m.next({ type: 'settings', seq: set.seq })).toMatchObject({ room, slow_mode_s: 30, by: { id: mod.welcome.user.id } })

      expect(await m.request({ type: 'chat', room, body: 'one' })).toMatchObject({ type: 'ack' })
      // The second chat through another node: the wait is the room's, not the node's.
      const m2 = await as(at(2), m.welcome.user.id)
      await member(m2, room)
      const slowed = await m2.request({ type: 'chat', room, body: 'two' })
      expect(slowed).toMatchObject({ type: 'error', code: 'slow_mode' })
      expect(slowed.retry_after).toBeGreaterThan(25)
      expect(slowed.retry_after).toBeLessThanOrEqual(30)
      expect(await mod.request({ type: 'chat', room, body: 'mod 1' })).toMatchObject({ type: 'ack' })
      expect(await mod.request({ type: 'chat', room, body: 'mod 2' })).toMatchObject({ type: 'ack' })

      const put = await api(at(1), 'PUT', `/rooms/${room}/settings`, { slow_mode_s: 0 })
      expect(put.status).toBe(200)
      const body = await put.json()
      expect(body).toMatchObject({ room, slow_mode_s: 0 })
      expect(body.seq).toBeNumber()
      expect(await m.next({ type: 'settings', seq: body.seq })).toMatchObject({ slow_mode_s: 0, by: { id: 'server' } })
      expect(await m2.request({ type: 'chat', room, body: 'free again' })).toMatchObject({ type: 'ack' })
      const late = await as(at(0), uid('late'))
      expect((await member(late, room)).settings).toEqual({ slow_mode_s: 0 })
      const bad = await api(at(0), 'PUT', `/rooms/${room}/settings`, { slow_mode_s: -1 })
      expect(bad.status).toBe(400)
      expect((await api(at(0), 'PUT', `/rooms/${room}/settings`, { slow_mode_s: 5, extra: 1 })).status).toBe(400)
      for (const x of [mod, m, m2, late]) x.close()
    }, 30_000)
  })
}

let one: RunningServer
describe('one node', () => {
  bunTest(
    'start',
    async () => {
      one = await node()
    },
    30_000,
  )
})
pollSuite('polls on one node', () => [one], bunTest)

await onRedisAndCluster({ what: 'polls', node, env: {}, prefix: `polls-${tag}:`, suite: pollSuite })

const pgTest = await needService('PostgreSQL', 5432)
describe('with PostgreSQL', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>
  let pg: RunningServer[] = []
  beforeAll(async () => {
    if (pgTest === bunTest) db = await freshDatabase('polls')
  })
  afterAll(async () => {
    await Promise.all(pg.map((s) => s.stop('SIGKILL')))
    await db?.drop()
  })
  pgTest(
    'start a node on PostgreSQL',
    async () => {
      pg = [await node({ POSTGRES_DSN: db.dsn })]
    },
    30_000,
  )
  pollSuite('polls with PostgreSQL', () => pg, pgTest)

  for (const [what, env] of [
    ['memory', {}],
    ['Redis', { REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: `polls-pg-${tag}:` }],
  ] as const)
    pgTest(
      `votes, the close and slow mode survive a restart (${what} engine with PostgreSQL), beyond the broker's log`,
      async () => {
        const room = uid('keep')
        const start = () => node({ POSTGRES_DSN: db.dsn, HISTORY_LIMIT: '3', ...env })
        let s = await start()
        const a = await as(s, uid('a'))
        expect((await api(s, 'PUT', `/rooms/${room}/roles/${a.welcome.user.id}`, { role: 'owner' })).status).toBe(200)
        await member(a, room)
        const msg = (await a.request({ type: 'chat', room, body: 'kept', poll: POLL })).msg as string
        await a.request({ type: 'vote', room, msg, options: [2] })
        expect(await a.request({ type: 'settings', room, slow_mode_s: 120 })).toMatchObject({ type: 'ack' })
        for (let i = 0; i < 5; i++) await a.request({ type: 'chat', room, body: `filler ${i}` })
        a.close()
        await s.stop('SIGTERM')
        if (what === 'Redis') {
          const { default: Redis } = await import('ioredis')
          const r = new Redis('redis://127.0.0.1:6379')
          const keys = await r.keys(`polls-pg-${tag}:{${room}}:*`)
          expect(keys.length).toBeGreaterThan(0)
          await r.del(...keys)
          r.disconnect()
        }
        s = await start()
        const b = await as(s, uid('b'))
        expect((await member(b, room)).settings).toEqual({ slow_mode_s: 120 })
        expect(await b.request({ type: 'chat', room, body: 'first' })).toMatchObject({ type: 'ack' })
        expect(await b.request({ type: 'chat', room, body: 'second' })).toMatchObject({ type: 'error', code: 'slow_mode' })
        const v = await b.request({ type: 'vote', room, msg, options: [2] })
        expect(await b.next({ type: 'vote', seq: v.seq })).toMatchObject({ tallies: [0, 0, 2] })
        const owner = await as(s, a.welcome.user.id)
        await owner.next({ type: 'joined', room })
        expect(await owner.request({ type: 'close_poll', room, msg })).toMatchObject({ type: 'ack' })
        const h = (await b.request({ type: 'history', room, limit: 100 })).messages as Frame[]
        expect(h.find((m) => m.id === msg)!.poll).toMatchObject({
          options: [{ votes: 0 }, { votes: 0 }, { votes: 2 }],
          closed: true,
          mine: [2],
        })
        b.close()
        owner.close()
      },
      60_000,
    )
})
