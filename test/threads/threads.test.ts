import { afterAll, beforeAll, describe, expect, test as bunTest } from 'bun:test'
import { testNodes } from '../helpers/nodes'
import { needService } from '../helpers/services'
import { freshDatabase } from '../helpers/postgres'
import { onRedisAndCluster } from '../helpers/redis-suites'
import type { Frame, TestClient } from '../helpers/client'
import type { RunningServer } from '../helpers/server'

/**
 * Threads (PROTOCOL-v4): the replies of a message are its thread; its summary in history, the
 * `threads` list of the threads a user started or replied in, and a thread's own marker.
 */

const API_KEY = 'threads-test-key-0123456789abcdef'
const { tag, uid, node, as } = testNodes(API_KEY)

async function member(c: TestClient, room: string) {
  expect(await c.request({ type: 'join', room, member: true })).toMatchObject({ type: 'joined', room })
}
const reply = async (c: TestClient, room: string, to: string, body: string) => {
  const a = await c.request({ type: 'chat', room, body, reply_to: to })
  expect(a).toMatchObject({ type: 'ack' })
  return a as Frame
}
const list = (c: TestClient, f: Frame = {}) => c.request({ type: 'threads', ...f })

function threadSuite(name: string, nodes: () => RunningServer[], test: typeof bunTest) {
  const at = (i: number) => nodes()[i % nodes().length]!
  describe(name, () => {
    test('history shows each root with its thread; the threads list: started or replied in, newest activity first, with unread', async () => {
      const room = uid('th')
      const a = await as(at(0), uid('a'))
      const b = await as(at(1), uid('b'))
      const c = await as(at(2), uid('c'))
      for (const x of [a, b, c]) await member(x, room)
      const r1 = (await a.request({ type: 'chat', room, body: 'root one' })).msg as string
      const r2 = (await c.request({ type: 'chat', room, body: 'root two (by c)' })).msg as string
      await reply(b, room, r1, 'b replies to one')
      await reply(c, room, r1, 'c replies to one')
      // "Newest activity" is by time: in the same millisecond the order is room, then message.
      await Bun.sleep(5)
      await reply(b, room, r2, 'b replies to two')

      const h = (await a.request({ type: 'history', room })).messages as Frame[]
      const one = h.find((m) => m.id === r1)!
      expect(one.thread).toMatchObject({ count: 2, participants: [{ id: c.welcome.user.id }, { id: b.welcome.user.id }] })
      expect(one.thread.last_ts).toBe(h[h.length - 2]!.ts)
      expect(h.find((m) => m.id === r2)!.thread.count).toBe(1)
      expect(h.filter((m) => m.reply_to).every((m) => m.thread === undefined)).toBe(true)

      // a started r1 (2 unread: b's and c's); b replied in both; c started r2 and replied in r1.
      const la = await list(a)
      expect(la).toMatchObject({ type: 'threads', more: false })
      expect(la.threads.map((t: Frame) => [t.msg, t.count, t.unread])).toEqual([[r1, 2, 2]])
      expect(la.threads[0].root).toMatchObject({ type: 'chat', id: r1, body: 'root one', thread: { count: 2 } })
      const lb = await list(b)
      // Newest activity first: r2's reply came last. b's own replies are never unread to b; c's later one is.
      expect(lb.threads.map((t: Frame) => [t.msg, t.unread])).toEqual([
        [r2, 0],
        [r1, 1],
      ])
      const lc = await list(c)
      expect(lc.threads.map((t: Frame) => [t.msg, t.unread])).toEqual([
        [r2, 1],
        [r1, 0],
      ])
      // A user in neither thread has none.
      const d = await as(at(0), uid('d'))
      expect((await list(d)).threads).toEqual([])
      for (const x of [a, b, c, d]) x.close()
    }, 30_000)

    test('read {thread} moves only the thread marker; the room marker does not move it, nor it the room marker', async () => {
      const room = uid('mark')
      const a = await as(at(0), uid('a'))
      const b = await as(at(1), uid('b'))
      await member(a, room)
      await member(b, room)
      const root = (await a.request({ type: 'chat', room, body: 'root' })).msg as string
      const r1 = await reply(b, room, root, 'one')
      const r2 = await reply(b, room, root, 'two')
      expect((await list(a)).threads[0].unread).toBe(2)
      // The room marker past both replies: the thread stays unread.
      expect(await a.request({ type: 'read', room, seq: r2.seq })).toMatchObject({ type: 'ack' })
      expect((await list(a)).threads[0].unread).toBe(2)
      // The thread marker at the first reply: one left; the room's unread is not changed by it.
      const before = (await a.request({ type: 'rooms' })).rooms.find((x: Frame) => x.room === room)
      expect(await a.request({ type: 'read', room, seq: r1.seq, thread: root })).toMatchObject({ type: 'ack' })
      expect((await list(a)).threads[0].unread).toBe(1)
      const after = (await a.request({ type: 'rooms' })).rooms.find((x: Frame) => x.room === room)
      expect(after.read).toBe(before.read)
      // Never back.
      await a.request({ type: 'read', room, seq: 1, thread: root })
      expect((await list(a)).threads[0].unread).toBe(1)
      await a.request({ type: 'read', room, seq: r2.seq, thread: root })
      expect((await list(a)).threads[0].unread).toBe(0)
      // A thread read of a seq the room has not reached is refused like the room's.
      expect(await a.request({ type: 'read', room, seq: 10_000, thread: root })).toMatchObject({ type: 'error', code: 'bad_request' })
      a.close()
      b.close()
    }, 30_000)

    test('threads {room} filters; limit and before page through with next', async () => {
      const room = uid('page')
      const other = uid('page-other')
      const a = await as(at(0), uid('a'))
      const b = await as(at(1), uid('b'))
      for (const r of [room, other]) {
        await member(a, r)
        await member(b, r)
      }
      const roots: string[] = []
      for (let i = 0; i < 5; i++) {
        const r = i === 4 ? other : room
        const m = (await a.request({ type: 'chat', room: r, body: `root ${i}` })).msg as string
        roots.push(m)
        await reply(b, r, m, `reply ${i}`)
        await Bun.sleep(3) // distinct activity times
      }
      expect((await list(a, { room: other })).threads.map((t: Frame) => t.msg)).toEqual([roots[4]])
      const p1 = await list(a, { room, limit: 2 })
      expect(p1).toMatchObject({ more: true })
      expect(p1.threads.map((t: Frame) => t.msg)).toEqual([roots[3], roots[2]])
      const p2 = await list(a, { room, limit: 2, before: p1.next })
      expect(p2.threads.map((t: Frame) => t.msg)).toEqual([roots[1], roots[0]])
      expect(p2.more).toBe(false)
      expect(await list(a, { before: 'yesterday' })).toMatchObject({ type: 'error', code: 'bad_request' })
      expect(await list(a, { limit: 0 })).toMatchObject({ type: 'error', code: 'bad_request' })
      a.close()
      b.close()
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
threadSuite('threads on one node', () => [one], bunTest)

await onRedisAndCluster({ what: 'threads', node, env: {}, prefix: `threads-${tag}:`, suite: threadSuite })

const pgTest = await needService('PostgreSQL', 5432)
describe('with PostgreSQL', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>
  let pg: RunningServer[] = []
  beforeAll(async () => {
    if (pgTest === bunTest) db = await freshDatabase('threads')
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
  threadSuite('threads with PostgreSQL', () => pg, pgTest)

  pgTest(
    "threads survive a restart: summaries from the archive (beyond the broker's state), lists and markers",
    async () => {
      const room = uid('keep')
      const start = () => node({ POSTGRES_DSN: db.dsn, HISTORY_LIMIT: '3' })
      let s = await start()
      let a = await as(s, uid('a'))
      const bId = uid('b')
      const b = await as(s, bId)
      await member(a, room)
      await member(b, room)
      const root = (await a.request({ type: 'chat', room, body: 'kept root' })).msg as string
      await reply(b, room, root, 'one')
      const two = await reply(b, room, root, 'two')
      await a.request({ type: 'read', room, seq: two.seq - 1, thread: root })
      for (let i = 0; i < 5; i++) await a.request({ type: 'chat', room, body: `filler ${i}` })
      a.close()
      b.close()
      await Bun.sleep(500) // the store's write batch
      await s.stop()
      s = await start()
      a = await as(s, a.welcome.user.id)
      const h = (await a.request({ type: 'history', room, limit: 20 })).messages as Frame[]
      expect(h.find((m) => m.id === root)!.thread).toMatchObject({ count: 2, participants: [{ id: bId, name: bId.toUpperCase() }] })
      const l = await list(a)
      expect(l.threads.map((t: Frame) => [t.msg, t.count, t.unread])).toEqual([[root, 2, 1]])
      expect(l.threads[0].root.thread.count).toBe(2)
      a.close()
      pg.push(s)
    },
    60_000,
  )
})
