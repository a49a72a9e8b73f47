import { afterAll, beforeAll, describe, expect, test as bunTest } from 'bun:test'
import { testNodes } from '../helpers/nodes'
import { needService } from '../helpers/services'
import { freshDatabase } from '../helpers/postgres'
import { dropRedisPrefix } from '../helpers/services'
import type { Frame, TestClient } from '../helpers/client'
import type { RunningServer } from '../helpers/server'

/**
 * Scheduled messages (PROTOCOL-v4): `chat` / `dm` + `send_at` are kept and sent at their time as
 * the user's message, exactly once whichever nodes run, and kept across restarts with Redis or
 * PostgreSQL.
 */

const API_KEY = 'scheduled-test-key-0123456789abcdef'
const { tag, uid, node, api, as } = testNodes(API_KEY)
const inMs = (ms: number) => new Date(Date.now() + ms).toISOString()

async function member(c: TestClient, room: string) {
  expect(await c.request({ type: 'join', room, member: true })).toMatchObject({ type: 'joined', room })
}

let one: RunningServer
describe('one node (memory)', () => {
  bunTest(
    'start',
    async () => {
      one = await node()
    },
    30_000,
  )

  bunTest(
    'a chat with send_at: acked with its id and time, listed, sent at send_at as the user, then gone',
    async () => {
      const room = uid('s')
      const a = await as(one, uid('a'))
      const b = await as(one, uid('b'))
      await member(a, room)
      await member(b, room)
      const at = inMs(1500)
      const ack = await a.request({ type: 'chat', room, body: 'later', data: { k: 1 }, send_at: at })
      expect(ack).toMatchObject({ type: 'ack', send_at: at })
      expect(ack.scheduled).toBeString()
      expect(ack.msg).toBeUndefined()
      const listed = await a.request({ type: 'scheduled' })
      expect(listed).toMatchObject({
        type: 'scheduled',
        messages: [{ scheduled: ack.scheduled, room, body: 'later', data: { k: 1 }, send_at: at }],
      })
      expect((await a.request({ type: 'scheduled', room: `${room}-other` })).messages).toEqual([])
      // Only its author sees it.
      expect((await b.request({ type: 'scheduled' })).messages).toEqual([])
      expect(b.all('chat').filter((f) => f.body === 'later')).toEqual([])
      const got = await b.next((f) => f.type === 'chat' && f.body === 'later', 5000)
      expect(got).toMatchObject({ room, from: { id: a.welcome.user.id }, data: { k: 1 } })
      expect(Date.parse(got.ts)).toBeGreaterThanOrEqual(Date.parse(at))
      expect((await a.request({ type: 'scheduled' })).messages).toEqual([])
      a.close()
      b.close()
    },
    20_000,
  )

  bunTest(
    'a retry of a scheduling frame (same id) is the same scheduled message: sent once',
    async () => {
      const room = uid('retry')
      const a = await as(one, uid('a'))
      await member(a, room)
      const f = { type: 'chat', room, body: 'retried', send_at: inMs(800), id: 'client-1' }
      const first = await a.request(f)
      const again = await a.request(f)
      expect(again.scheduled).toBe(first.scheduled)
      expect((await a.request({ type: 'scheduled' })).messages.length).toBe(1)
      await a.next((x) => x.type === 'chat' && x.body === 'retried', 5000)
      await Bun.sleep(1200)
      expect(a.all('chat').filter((x) => x.body === 'retried').length).toBe(1)
      a.close()
    },
    20_000,
  )

  bunTest(
    'a scheduled dm reaches its recipient; a reply scheduled keeps reply_to',
    async () => {
      const room = uid('r')
      const a = await as(one, uid('a'))
      const b = await as(one, uid('b'))
      await member(a, room)
      await member(b, room)
      const root = (await b.request({ type: 'chat', room, body: 'root' })).msg
      expect(await a.request({ type: 'dm', to: b.welcome.user.id, body: 'psst later', send_at: inMs(800) })).toMatchObject({ type: 'ack' })
      expect(await a.request({ type: 'chat', room, body: 'reply later', reply_to: root, send_at: inMs(800) })).toMatchObject({
        type: 'ack',
      })
      expect(await b.next((f) => f.type === 'dm' && f.body === 'psst later', 5000)).toMatchObject({ from: { id: a.welcome.user.id } })
      expect(await b.next((f) => f.type === 'chat' && f.body === 'reply later', 5000)).toMatchObject({ reply_to: root })
      a.close()
      b.close()
    },
    20_000,
  )

  bunTest(
    'send_at in the past, not a time, or past 30 days: bad_request naming send_at; attachments refused',
    async () => {
      const room = uid('bad')
      const a = await as(one, uid('a'))
      await member(a, room)
      for (const send_at of [inMs(-1000), 'tomorrow', '2026-13-45T99:00:00Z', inMs(31 * 24 * 3600 * 1000), 12]) {
        const e = await a.request({ type: 'chat', room, body: 'x', send_at })
        expect(e).toMatchObject({ type: 'error', code: 'bad_request' })
        expect(e.message).toContain('send_at')
      }
      expect(await a.request({ type: 'chat', room, body: 'x', send_at: inMs(29 * 24 * 3600 * 1000) })).toMatchObject({ type: 'ack' })
      const e = await a.request({ type: 'chat', room, body: 'x', attachments: ['u1'], send_at: inMs(5000) })
      expect(e).toMatchObject({ type: 'error', code: 'bad_request' })
      // Scheduling in a room the connection is not in is refused like a chat.
      expect(await a.request({ type: 'chat', room: uid('elsewhere'), body: 'x', send_at: inMs(5000) })).toMatchObject({
        type: 'error',
        code: 'forbidden',
      })
      a.close()
    },
    20_000,
  )

  bunTest(
    "unschedule: one's own only (another's or unknown is not_found); an unscheduled message is never sent",
    async () => {
      const room = uid('un')
      const a = await as(one, uid('a'))
      const b = await as(one, uid('b'))
      await member(a, room)
      await member(b, room)
      const { scheduled } = await a.request({ type: 'chat', room, body: 'never', send_at: inMs(1000) })
      expect(await b.request({ type: 'unschedule', scheduled })).toMatchObject({ type: 'error', code: 'not_found' })
      expect(await a.request({ type: 'unschedule', scheduled: 'nope' })).toMatchObject({ type: 'error', code: 'not_found' })
      expect(await a.request({ type: 'unschedule', scheduled })).toMatchObject({ type: 'ack' })
      expect(await a.request({ type: 'unschedule', scheduled })).toMatchObject({ type: 'error', code: 'not_found' })
      await b.request({ type: 'chat', room, body: 'marker' })
      await Bun.sleep(2500)
      expect(b.all('chat').filter((f) => f.body === 'never')).toEqual([])
      a.close()
      b.close()
    },
    20_000,
  )

  bunTest(
    "refused at send_at (banned since): the author's connections get error {code, scheduled}; nothing is sent",
    async () => {
      const room = uid('ban')
      const owner = await as(one, uid('o'))
      expect((await api(one, 'PUT', `/rooms/${room}/roles/${owner.welcome.user.id}`, { role: 'owner' })).status).toBe(200)
      const a = await as(one, uid('a'))
      await member(owner, room)
      await member(a, room)
      const { scheduled } = await a.request({ type: 'chat', room, body: 'too late', send_at: inMs(1200) })
      const a2 = await as(one, a.welcome.user.id) // the author's other connection hears it too
      expect(await owner.request({ type: 'ban', room, user: a.welcome.user.id })).toMatchObject({ type: 'ack' })
      for (const c of [a, a2]) {
        const e = await c.next((f) => f.type === 'error' && f.scheduled === scheduled, 5000)
        expect(e).toMatchObject({ code: 'forbidden' })
        expect(e.message).toContain('banned')
      }
      expect(owner.all('chat').filter((f) => f.body === 'too late')).toEqual([])
      for (const c of [owner, a, a2]) c.close()
    },
    20_000,
  )

  bunTest(
    'a dm scheduled to a user who blocks the author since is refused at send_at',
    async () => {
      const a = await as(one, uid('a'))
      const b = await as(one, uid('b'))
      const { scheduled } = await a.request({ type: 'dm', to: b.welcome.user.id, body: 'blocked later', send_at: inMs(1000) })
      expect(await b.request({ type: 'block', user: a.welcome.user.id })).toMatchObject({ type: 'ack' })
      expect(await a.next((f) => f.type === 'error' && f.scheduled === scheduled, 5000)).toMatchObject({ code: 'forbidden' })
      expect(b.all('dm')).toEqual([])
      a.close()
      b.close()
    },
    20_000,
  )
})

const redisTest = await needService('Redis', 6379)
describe('with Redis', () => {
  const prefix = `sched-${tag}:`
  const env = { REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: prefix }
  afterAll(() => dropRedisPrefix(prefix))

  redisTest(
    'two nodes: every scheduled message is sent exactly once',
    async () => {
      const [n1, n2] = await Promise.all([node(env), node(env)])
      const room = uid('once')
      const a = await as(n1, uid('a'))
      const watcher = await as(n2, uid('w'))
      await member(a, room)
      await member(watcher, room)
      const at = inMs(2500)
      const N = 20
      for (let i = 0; i < N; i++)
        expect(await a.request({ type: 'chat', room, body: `once ${i}`, send_at: at })).toMatchObject({ type: 'ack' })
      await watcher.next((f) => f.type === 'chat' && f.body === `once ${N - 1}`, 10_000)
      await Bun.sleep(2000) // time for a second send, if there were one
      const bodies = watcher.all('chat').map((f) => f.body as string)
      expect(bodies.filter((b) => b.startsWith('once ')).sort()).toEqual(Array.from({ length: N }, (_, i) => `once ${i}`).sort())
      const h = (await watcher.request({ type: 'history', room, limit: 100 })).messages as Frame[]
      expect(h.filter((m) => m.type === 'chat').length).toBe(N)
      a.close()
      watcher.close()
    },
    60_000,
  )

  redisTest(
    'kept across a restart: scheduled on a node that stops, sent by a new one at send_at',
    async () => {
      const room = uid('restart')
      const n1 = await node(env)
      const user = uid('a')
      const a = await as(n1, user)
      await member(a, room)
      const at = inMs(12_000)
      const { scheduled } = await a.request({ type: 'chat', room, body: 'survives', send_at: at })
      a.close()
      await n1.stop()
      const n2 = await node(env)
      const b = await as(n2, uid('b'))
      expect(await b.request({ type: 'join', room })).toMatchObject({ type: 'joined' })
      const a2 = await as(n2, user)
      expect((await a2.request({ type: 'scheduled' })).messages).toMatchObject([{ scheduled, body: 'survives' }])
      const got = await b.next((f) => f.type === 'chat' && f.body === 'survives', 15_000)
      expect(got.from.id).toBe(user)
      expect(Date.parse(got.ts)).toBeGreaterThanOrEqual(Date.parse(at))
      b.close()
      a2.close()
    },
    60_000,
  )
})

const pgTest = await needService('PostgreSQL', 5432)
describe('with PostgreSQL', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>
  beforeAll(async () => {
    if (pgTest === bunTest) db = await freshDatabase('scheduled')
  })
  afterAll(async () => {
    await db?.drop()
    await dropRedisPrefix(`sched-pg-${tag}:`)
  })

  pgTest(
    'PostgreSQL (with Redis): kept across a restart, then two new nodes send each once',
    async () => {
      // Several nodes on one database are a cluster through Redis (the room log); the queue is PostgreSQL's.
      const env = { POSTGRES_DSN: db.dsn, REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: `sched-pg-${tag}:` }
      const n1 = await node(env)
      const room = uid('pg')
      const user = uid('a')
      const a = await as(n1, user)
      await member(a, room)
      const N = 10
      for (let i = 0; i < N; i++) await a.request({ type: 'chat', room, body: `pg ${i}`, send_at: inMs(25_000) })
      const { scheduled } = await a.request({ type: 'chat', room, body: 'pg restart', send_at: inMs(25_000) })
      a.close()
      await n1.stop()
      // Two fresh nodes on the database: neither saw them scheduled.
      const n2 = await node(env)
      const n3 = await node(env)
      const w = await as(n2, uid('w'))
      expect(await w.request({ type: 'join', room })).toMatchObject({ type: 'joined' })
      const a3 = await as(n3, user)
      expect((await a3.request({ type: 'scheduled', room })).messages.map((m: Frame) => m.scheduled)).toContain(scheduled)
      // The room's log says what was sent (live frames may have gone before w joined on a slow machine).
      const sent = async () =>
        ((await w.request({ type: 'history', room, limit: 100 })).messages as Frame[])
          .filter((m) => m.type === 'chat' && String(m.body).startsWith('pg '))
          .map((m) => m.body as string)
      for (let i = 0; i < 60 && !(await sent()).includes('pg restart'); i++) await Bun.sleep(500)
      await Bun.sleep(2500) // time for a second send, if there were one
      expect((await sent()).sort()).toEqual([...Array.from({ length: N }, (_, i) => `pg ${i}`), 'pg restart'].sort())
      w.close()
      a3.close()
    },
    120_000,
  )
})
