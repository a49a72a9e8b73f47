import { afterAll, beforeAll, describe, expect, test as bunTest } from 'bun:test'
import { connect } from '../helpers/client'
import type { TestClient } from '../helpers/client'
import { freshDatabase } from '../helpers/postgres'
import { until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { testNodes } from '../helpers/nodes'
import { needService, privateRedis } from '../helpers/services'
import { onRedisAndCluster } from '../helpers/redis-suites'

/**
 * Memberships, direct conversations, read markers and unread counts, on every engine: one node
 * (memory), three nodes through Redis, and PostgreSQL across restarts.
 */

const API_KEY = 'conversations-test-key-0123456789'
const { tag, uid, node, api, as } = testNodes(API_KEY)
const joinedOf = (c: TestClient, room: string) => c.frames.find((f) => f.type === 'joined' && f.room === room)

/**
 * The behaviour every engine must show. `at(i)` picks the node for the i-th participant, so
 * with three nodes the users of one test sit on different nodes.
 */
function conversationSuite(name: string, nodes: () => RunningServer[], test: typeof bunTest) {
  const at = (i: number) => nodes()[i % nodes().length]!

  describe(name, () => {
    test('welcome carries the total unread; the default room is a membership with read and unread', async () => {
      const u = uid('w')
      const c = await as(at(0), u)
      expect(typeof c.welcome.unread).toBe('number')
      const j = await c.next({ type: 'joined', room: 'general' })
      expect(j).toMatchObject({ member: true, unread: 0 })
      expect(typeof j.read).toBe('number')
      c.close()
    })

    test('join as member reaches every connection of the user; the next connect is in the room from the start', async () => {
      const u = uid('m')
      const r = uid('room')
      const one = await as(at(0), u)
      const two = await as(at(1), u)
      await two.next({ type: 'joined', room: 'general' })
      const j = await one.request({ type: 'join', room: r, member: true })
      expect(j).toMatchObject({ type: 'joined', room: r, member: true, read: 0, unread: 0 })
      expect(await two.next({ type: 'joined', room: r })).toMatchObject({ member: true })
      // live on the other connection: it gets the room's messages without asking
      const other = await as(at(2), uid('x'))
      await other.request({ type: 'join', room: r })
      await other.request({ type: 'chat', room: r, body: 'hello members' })
      expect(await two.next({ type: 'chat', room: r })).toMatchObject({ body: 'hello members' })
      const three = await as(at(2), u)
      expect(three.welcome.rooms).toContain(r)
      expect(three.welcome.unread).toBeGreaterThanOrEqual(1)
      expect(await three.next({ type: 'joined', room: r })).toMatchObject({ member: true, unread: 1 })
      for (const c of [one, two, three, other]) c.close()
    })

    test('leave as member takes every connection out; the next connect is not in the room', async () => {
      const u = uid('l')
      const r = uid('room')
      const one = await as(at(0), u)
      const two = await as(at(1), u)
      await one.request({ type: 'join', room: r, member: true })
      await two.next({ type: 'joined', room: r })
      expect(await one.request({ type: 'leave', room: r, member: true })).toMatchObject({ type: 'left', room: r })
      expect(await two.next({ type: 'left', room: r })).toMatchObject({ room: r })
      const three = await as(at(2), u)
      expect(three.welcome.rooms).not.toContain(r)
      const list = await three.request({ type: 'rooms' })
      expect(list.rooms.map((c: { room: string }) => c.room)).not.toContain(r)
      for (const c of [one, two, three]) c.close()
    })

    test('a dm to a user who is offline waits in their direct room: conversation, unread, history, recovery', async () => {
      const alice = uid('alice')
      const bob = uid('bob')
      const a = await as(at(0), alice)
      const a2 = await as(at(1), alice)
      const ack = await a.request({ type: 'dm', to: bob, body: 'are you there?' })
      expect(ack).toMatchObject({ type: 'ack', seq: 1 })
      expect(ack.room).toMatch(/^dm:[0-9a-f]{40}$/)
      expect(await a2.next({ type: 'dm' })).toMatchObject({ room: ack.room, seq: 1, id: ack.msg, from: { id: alice }, to: bob })
      // bob was never connected: he sees it on his first connect
      const b = await as(at(2), bob)
      expect(b.welcome.rooms).toContain(ack.room)
      expect(b.welcome.unread).toBe(1)
      expect(await b.next({ type: 'joined', room: ack.room })).toMatchObject({ member: true, read: 0, unread: 1, seq: 1 })
      const list = await b.request({ type: 'rooms' })
      const conv = list.rooms.find((c: { room: string }) => c.room === ack.room)
      expect(conv).toMatchObject({
        kind: 'direct',
        with: { id: alice, name: alice.toUpperCase() },
        seq: 1,
        read: 0,
        unread: 1,
        last: { type: 'dm', id: ack.msg, body: 'are you there?' },
      })
      const h = await b.request({ type: 'history', room: ack.room })
      expect(h.messages).toEqual([
        expect.objectContaining({
          type: 'dm',
          seq: 1,
          room: ack.room,
          from: { id: alice, name: alice.toUpperCase() },
          to: bob,
          body: 'are you there?',
        }),
      ])
      // live both ways now; the sending connection gets no copy of its own dm
      const back = await b.request({ type: 'dm', to: alice, body: 'yes' })
      expect(back).toMatchObject({ room: ack.room, seq: 2 })
      expect(await a.next({ type: 'dm', seq: 2 })).toMatchObject({ body: 'yes', from: { id: bob } })
      expect(b.all('dm')).toHaveLength(0)
      expect(a.all('dm')).toHaveLength(1)
      // recovery: a connection that saw seq 1 gets exactly seq 2
      const a3 = await as(at(0), alice)
      await a3.next({ type: 'joined', room: ack.room })
      const epoch = joinedOf(a3, ack.room)!.epoch
      const rj = await a3.request({ type: 'join', room: ack.room, since: 1, epoch })
      expect(rj).toMatchObject({ recovered: true, seq: 2 })
      expect(a3.all('dm').map((f) => f.seq)).toEqual([2])
      for (const c of [a, a2, b, a3]) c.close()
    })

    test('nobody but its two users may join, read, list or be made a member of a direct room', async () => {
      const alice = uid('alice')
      const eve = uid('eve')
      const a = await as(at(0), alice)
      const { room } = await a.request({ type: 'dm', to: uid('bob'), body: 'private' })
      const e = await as(at(1), eve)
      for (const f of [
        { type: 'join', room },
        { type: 'join', room, member: true },
        { type: 'history', room },
        { type: 'presence', room },
        { type: 'read', room, seq: 1 },
      ])
        expect(await e.request(f)).toMatchObject({ type: 'error', code: 'forbidden' })
      expect((await e.request({ type: 'rooms' })).rooms.map((c: { room: string }) => c.room)).not.toContain(room)
      const put = await api(at(2), 'PUT', `/rooms/${room}/members/${eve}`, { name: 'Eve' })
      expect(put.status).toBe(403)
      expect(await put.json()).toMatchObject({ error: 'forbidden' })
      expect(e.all('dm')).toHaveLength(0)
      a.close()
      e.close()
    })

    test('read moves the marker (never back), tells the room and the other connections; unread follows', async () => {
      const alice = uid('alice')
      const bob = uid('bob')
      const a = await as(at(0), alice)
      const b1 = await as(at(1), bob)
      const b2 = await as(at(2), bob)
      await b2.next({ type: 'joined', room: 'general' })
      let last: Record<string, any> = {}
      for (const body of ['one', 'two', 'three']) last = await a.request({ type: 'dm', to: bob, body })
      const room = last.room
      await b1.next({ type: 'dm', seq: 3 })
      expect((await b1.request({ type: 'rooms' })).rooms.find((c: { room: string }) => c.room === room)).toMatchObject({
        unread: 3,
        read: 0,
      })
      expect(await b1.request({ type: 'read', room, seq: 2 })).toMatchObject({ type: 'ack' })
      expect(await a.next({ type: 'read', room })).toMatchObject({ user: { id: bob, name: bob.toUpperCase() }, seq: 2 })
      expect(await b2.next({ type: 'read', room })).toMatchObject({ seq: 2 })
      expect((await b1.request({ type: 'rooms' })).rooms.find((c: { room: string }) => c.room === room)).toMatchObject({
        unread: 1,
        read: 2,
      })
      // never back
      await b1.request({ type: 'read', room, seq: 1 })
      expect(await a.next({ type: 'read', room })).toMatchObject({ seq: 2 })
      // past the room's last seq, and a room the reader is not a member of
      expect(await b1.request({ type: 'read', room, seq: 99 })).toMatchObject({ type: 'error', code: 'bad_request' })
      const plain = uid('room')
      await b1.request({ type: 'join', room: plain })
      expect(await b1.request({ type: 'read', room: plain, seq: 0 })).toMatchObject({ type: 'error', code: 'forbidden' })
      // the sender's own messages are never unread, and sending reads up to them
      expect((await a.request({ type: 'rooms' })).rooms.find((c: { room: string }) => c.room === room)).toMatchObject({ unread: 0 })
      const mine = await b1.request({ type: 'dm', to: alice, body: 'four' })
      await until(
        async () => (await b2.request({ type: 'rooms' })).rooms.find((c: { room: string }) => c.room === room)?.read === mine.seq,
        'the marker to follow the sent message',
      )
      expect((await b2.request({ type: 'rooms' })).rooms.find((c: { room: string }) => c.room === room)).toMatchObject({
        unread: 0,
        read: 4,
      })
      for (const c of [a, b1, b2]) c.close()
    })

    test('the conversation list is ordered by the last message and paged with a cursor', async () => {
      const u = uid('lister')
      const c = await as(at(0), u)
      const other = await as(at(1), uid('poster'))
      const rooms = [uid('room'), uid('room'), uid('room')]
      for (const r of rooms) {
        await c.request({ type: 'join', room: r, member: true })
        await other.request({ type: 'join', room: r })
      }
      // activity order: rooms[1], then rooms[2], then rooms[0] (newest first)
      for (const r of [rooms[0], rooms[2], rooms[1]]) {
        await other.request({ type: 'chat', room: r, body: `in ${r}` })
        await Bun.sleep(5)
      }
      const all = await c.request({ type: 'rooms', limit: 100 })
      const mine = all.rooms.map((x: { room: string }) => x.room).filter((r: string) => rooms.includes(r))
      expect(mine).toEqual([rooms[1], rooms[2], rooms[0]])
      expect(all.rooms.find((x: { room: string }) => x.room === rooms[1])).toMatchObject({
        kind: 'room',
        unread: 1,
        last: { type: 'chat', body: `in ${rooms[1]}` },
      })
      const p1 = await c.request({ type: 'rooms', limit: 2 })
      expect(p1.rooms).toHaveLength(2)
      expect(p1.more).toBe(true)
      const p2 = await c.request({ type: 'rooms', limit: 2, before: p1.next })
      const paged = [...p1.rooms, ...p2.rooms].map((x: { room: string }) => x.room)
      expect(paged).toEqual(all.rooms.slice(0, paged.length).map((x: { room: string }) => x.room))
      expect(await c.request({ type: 'rooms', before: 'not-a-cursor' })).toMatchObject({ type: 'error', code: 'bad_request' })
      c.close()
      other.close()
    })

    test('the server API: conversation list, grant and end memberships live, list members, clear errors', async () => {
      const u = uid('api')
      const r = uid('room')
      const c = await as(at(0), u)
      await c.next({ type: 'joined', room: 'general' })
      const put = await api(at(1), 'PUT', `/rooms/${r}/members/${u}`)
      expect(put.status).toBe(200)
      expect(await put.json()).toMatchObject({ room: r, user: { id: u }, member: true, added: true })
      expect(await c.next({ type: 'joined', room: r })).toMatchObject({ member: true, unread: 0 })
      expect(await (await api(at(2), 'PUT', `/rooms/${r}/members/${u}`)).json()).toMatchObject({ added: false })
      const list = await (await api(at(2), 'GET', `/users/${u}/rooms`)).json()
      expect(list.rooms.map((x: { room: string }) => x.room)).toContain(r)
      // a user who never connected: 404 unless named
      const ghost = uid('ghost')
      expect((await api(at(0), 'PUT', `/rooms/${r}/members/${ghost}`)).status).toBe(404)
      expect((await api(at(0), 'GET', `/users/${ghost}/rooms`)).status).toBe(404)
      const named = await api(at(0), 'PUT', `/rooms/${r}/members/${ghost}`, { name: 'Ghost' })
      expect(named.status).toBe(200)
      const members = await (await api(at(1), 'GET', `/rooms/${r}/members`)).json()
      expect(members.members.map((m: { id: string }) => m.id).sort()).toEqual([ghost, u].sort())
      expect(members.members.find((m: { id: string }) => m.id === ghost)).toMatchObject({ name: 'Ghost', read: 0 })
      // bad input
      expect(await (await api(at(0), 'PUT', `/rooms/bad%20room/members/${u}`)).json()).toMatchObject({ error: 'bad_request' })
      expect((await api(at(0), 'PUT', `/rooms/${r}/members/${u}`, { name: 7 })).status).toBe(400)
      expect((await fetch(`${at(0).url}/api/rooms/${r}/members`)).status).toBe(401)
      // ending it takes the user's connections out
      expect((await api(at(2), 'DELETE', `/rooms/${r}/members/${u}`)).status).toBe(200)
      expect(await c.next({ type: 'left', room: r })).toMatchObject({ room: r })
      expect((await api(at(2), 'DELETE', `/rooms/${r}/members/${u}`)).status).toBe(404)
      c.close()
    })

    test('the API disconnects every connection of a user on every node, with the code and reason given', async () => {
      const u = uid('gone')
      const one = await as(at(0), u)
      const two = await as(at(1), u)
      const other = await as(at(2), uid('stays'))
      await two.next({ type: 'joined', room: 'general' })
      const r = await api(at(2), 'POST', `/users/${u}/disconnect`, { code: 4000, reason: 'account suspended' })
      expect(r.status).toBe(200)
      expect(await r.json()).toEqual({ user: u, code: 4000, reason: 'account suspended' })
      for (const c of [one, two]) expect(await c.closed).toEqual({ code: 4000, reason: 'account suspended' })
      expect(other.ws.readyState).toBe(WebSocket.OPEN)
      expect((await api(at(0), 'POST', `/users/${u}/disconnect`, { code: 1006 })).status).toBe(400)
      other.close()
    })

    test('memberships are capped per user with a clear limit error', async () => {
      // the nodes run with MAX_MEMBERSHIPS=5: the default room and four more
      const u = uid('cap')
      const c = await as(at(0), u)
      for (let i = 0; i < 4; i++) expect((await c.request({ type: 'join', room: uid('room'), member: true })).type).toBe('joined')
      const over = await c.request({ type: 'join', room: uid('room'), member: true })
      expect(over).toMatchObject({ type: 'error', code: 'limit' })
      expect(over.message).toContain('MAX_MEMBERSHIPS')
      const r = await api(at(1), 'PUT', `/rooms/${uid('room')}/members/${u}`)
      expect(r.status).toBe(409)
      expect(await r.json()).toMatchObject({ error: 'limit' })
      expect((await c.request({ type: 'rooms' })).rooms).toHaveLength(5)
      c.close()
    })

    test('unread is exact up to 999 and reported as 1000 beyond', async () => {
      const bob = uid('bob')
      const r999 = uid('room')
      const r1001 = uid('room')
      const b = await as(at(0), bob)
      await b.request({ type: 'join', room: r999, member: true })
      await b.request({ type: 'join', room: r1001, member: true })
      b.close()
      const a = await as(at(1), uid('alice'))
      await a.request({ type: 'join', room: r999 })
      await a.request({ type: 'join', room: r1001 })
      // Sent without waiting for each answer (fast on a loaded machine); then every ack is awaited.
      const send = async (room: string, count: number) => {
        const acked = () => a.frames.filter((f) => f.type === 'ack' && typeof f.id === 'string' && f.id.startsWith(`${room}-`)).length
        for (let i = 0; i < count; i++) a.send({ type: 'chat', room, body: `m${i}`, id: `${room}-${i}` })
        await until(() => acked() === count, `${count} acks in ${room}`, 30_000)
        expect(a.frames.filter((f) => f.type === 'error')).toEqual([])
      }
      await send(r999, 999)
      await send(r1001, 1001)
      const b2 = await as(at(2), bob)
      const list = (await b2.request({ type: 'rooms' })).rooms
      expect(list.find((x: { room: string }) => x.room === r999).unread).toBe(999)
      expect(list.find((x: { room: string }) => x.room === r1001).unread).toBe(1000)
      a.close()
      b2.close()
    }, 60_000)
  })
}

// ---- one node, memory engine ----

let one: RunningServer
beforeAll(async () => {
  one = await node({ MAX_MEMBERSHIPS: '5' })
})
conversationSuite('conversations on one node', () => [one], bunTest)

describe('anonymous users', () => {
  bunTest('hold no memberships: the default room is live, dm and join as member are refused', async () => {
    const c = await connect(one.ws)
    expect(c.welcome.unread).toBe(0)
    expect(await c.next({ type: 'joined', room: 'general' })).toMatchObject({ member: true, unread: 0 })
    expect(await c.request({ type: 'join', room: 'x', member: true })).toMatchObject({ type: 'error', code: 'forbidden' })
    expect(await c.request({ type: 'dm', to: 'someone', body: 'hi' })).toMatchObject({ type: 'error', code: 'forbidden' })
    c.close()
  })
})

// ---- three nodes through Redis, and through a real Redis Cluster (memberships keyed by user and by room slot) ----

const { redisTest } = await onRedisAndCluster({
  what: 'conversations',
  node,
  env: { MAX_MEMBERSHIPS: '5' },
  prefix: `conv-${tag}:`,
  suite: conversationSuite,
})

describe('Redis down', () => {
  redisTest(
    'a membership change answers unavailable and is not half-applied',
    async () => {
      const redis = await privateRedis({ keepData: false })
      const s = await node({ REDIS_URL: redis.url, REDIS_PREFIX: 'down:' })
      const u = uid('down')
      const c = await as(s, u)
      await c.next({ type: 'joined', room: 'general' })
      await redis.kill()
      const r = uid('room')
      expect(await c.request({ type: 'join', room: r, member: true })).toMatchObject({ type: 'error', code: 'unavailable' })
      expect((await api(s, 'PUT', `/rooms/${r}/members/${u}`)).status).toBe(503)
      await redis.restart()
      await until(async () => (await fetch(`${s.url}/readyz`)).status === 200, 'readyz after Redis is back', 15_000)
      expect((await c.request({ type: 'rooms' })).rooms.map((x: { room: string }) => x.room)).not.toContain(r)
      c.close()
      await s.stop('SIGKILL')
      await redis.kill()
    },
    40_000,
  )
})

// ---- PostgreSQL: memberships, direct rooms and markers survive restarts ----

const pgTest = await needService('PostgreSQL', 5432)
describe('with PostgreSQL', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>
  let pg: RunningServer[] = []
  beforeAll(async () => {
    if (pgTest === bunTest) db = await freshDatabase('conv')
  })
  afterAll(async () => {
    await Promise.all(pg.map((s) => s.stop('SIGKILL')))
    await db?.drop()
  })

  pgTest('the conversation suite runs on PostgreSQL memberships', async () => {
    pg = [await node({ POSTGRES_DSN: db.dsn, MAX_MEMBERSHIPS: '5' })]
  })
  conversationSuite('conversations with PostgreSQL', () => pg, pgTest)

  pgTest(
    'memberships, direct rooms and read markers survive a restart of every node and of Redis',
    async () => {
      const redis = await privateRedis({ keepData: false })
      const env = { POSTGRES_DSN: db.dsn, REDIS_URL: redis.url, REDIS_PREFIX: 'pgconv:' }
      let [x, y] = await Promise.all([node(env), node(env)])
      const alice = uid('alice')
      const bob = uid('bob')
      const r = uid('room')
      const a = await as(x, alice)
      await a.request({ type: 'join', room: r, member: true })
      const dm1 = await a.request({ type: 'dm', to: bob, body: 'first' })
      await a.request({ type: 'dm', to: bob, body: 'second' })
      const b = await as(y, bob)
      await b.next({ type: 'joined', room: dm1.room })
      await b.request({ type: 'read', room: dm1.room, seq: 1 })
      a.close()
      b.close()
      await until(
        async () => (await db.sql`select read_seq from memberships where room = ${dm1.room} and user_id = ${bob}`)[0]?.read_seq === '1',
        'the marker in PostgreSQL',
      )
      await until(
        async () => Number((await db.sql`select count(*) as n from messages where room = ${dm1.room}`)[0]!.n) === 2,
        'the dms archived',
      )
      // everything restarts, Redis empty
      await Promise.all([x.stop('SIGKILL'), y.stop('SIGKILL'), redis.kill()])
      await redis.restart()
      ;[x, y] = await Promise.all([node(env), node(env)])
      const b2 = await as(x, bob)
      expect(b2.welcome.rooms).toContain(dm1.room)
      // Redis came back empty: the room goes on under a new epoch, past the store's last seq
      const rejoined = await b2.next({ type: 'joined', room: dm1.room })
      expect(rejoined).toMatchObject({ member: true, read: 1, unread: 1 })
      expect(rejoined.seq).toBeGreaterThan(2)
      const conv = (await b2.request({ type: 'rooms' })).rooms.find((c: { room: string }) => c.room === dm1.room)
      expect(conv).toMatchObject({ kind: 'direct', with: { id: alice }, read: 1, unread: 1, last: { body: 'second' } })
      const h = await b2.request({ type: 'history', room: dm1.room })
      expect(h.messages.map((m: { body: string }) => m.body)).toEqual(['first', 'second'])
      const a2 = await as(y, alice)
      expect(a2.welcome.rooms).toEqual(expect.arrayContaining([r, dm1.room]))
      const dm3 = await a2.request({ type: 'dm', to: bob, body: 'third' })
      expect(dm3).toMatchObject({ room: dm1.room, seq: rejoined.seq + 1 })
      expect(await b2.next({ type: 'dm', seq: dm3.seq })).toMatchObject({ body: 'third' })
      a2.close()
      b2.close()
      await Promise.all([x.stop('SIGKILL'), y.stop('SIGKILL')])
      await redis.kill()
    },
    60_000,
  )
})

// ---- webhooks of the conversations ----

describe('webhooks', () => {
  bunTest('member.added and member.removed are sent; a dm names its offline recipient', async () => {
    const { webhookReceiver } = await import('../helpers/webhook-receiver')
    const r = webhookReceiver()
    try {
      const s = await node({
        WEBHOOK_URL: r.url,
        WEBHOOK_SECRET: 'w'.repeat(32),
        WEBHOOK_EVENTS: 'member.added,member.removed,message.created',
        WEBHOOK_BATCH_MS: '10',
      })
      const alice = uid('alice')
      const bob = uid('bob')
      const a = await as(s, alice)
      const room = uid('room')
      await a.request({ type: 'join', room, member: true })
      await a.request({ type: 'leave', room, member: true })
      const dm = await a.request({ type: 'dm', to: bob, body: 'ping' })
      await until(() => r.delivered().filter((e) => e.type === 'message.created').length === 1, 'message.created', 10_000)
      await until(() => r.delivered().filter((e) => e.type === 'member.added').length === 3, 'three member.added', 10_000)
      const ev = r.delivered()
      expect(
        ev
          .filter((e) => e.type === 'member.added')
          .map((e) => `${e.room} ${e.user.id}`)
          .sort(),
      ).toEqual([`${room} ${alice}`, `${dm.room} ${alice}`, `${dm.room} ${bob}`].sort())
      expect(ev.find((e) => e.type === 'member.removed')).toMatchObject({ room, user: { id: alice } })
      expect(ev.find((e) => e.type === 'message.created')).toMatchObject({
        room: dm.room,
        user: { id: alice },
        message: { type: 'dm', seq: dm.seq, body: 'ping' },
        offline: [bob],
      })
      a.close()
    } finally {
      r.stop()
    }
  })
})
