/**
 * ChatClient and conversations (protocol v2): memberships, the conversation list, read
 * markers, unread counts kept from frames, and dm recovery, against a real server. The last
 * tests drive the client with a fake socket for orderings a real server rarely produces.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { ChatClient, ChatError } from '../../client/src/index'
import type { ChatClientOptions, DirectMessage, ReadFrame } from '../../client/src/index'
import { startProxy } from '../helpers/proxy'
import type { Proxy } from '../helpers/proxy'
import { startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { needService } from '../helpers/services'
import { FakeSocket } from '../helpers/fake-socket'

const FAST = { reconnect: { initialMs: 50, maxMs: 300 }, requestTimeoutMs: 8000, pingIntervalMs: 0 } as const
const opened = (c: ChatClient, ms = 5000) => until(() => c.state === 'open', `client open (state ${c.state})`, ms)

describe('conversations against a real server', () => {
  let server: RunningServer
  const clients: ChatClient[] = []
  const make = (o: Partial<ChatClientOptions>) => {
    const c = new ChatClient({ ...FAST, url: server.ws, ...o })
    clients.push(c)
    return c
  }

  beforeAll(async () => {
    server = await startServer({ env: { RATE_LIMIT_PER_SEC: '0' } })
  })
  afterAll(async () => {
    for (const c of clients) c.close()
    await server?.stop()
  })

  test('a dm to an offline user: on connect the recipient has the conversation with 1 unread; the list names the sender', async () => {
    const alice = make({ user: 'c-alice', name: 'Alice' })
    await opened(alice)
    const memberships: { room: string; member: boolean }[] = []
    alice.on('membership', (m) => memberships.push(m))
    const dmEvents: DirectMessage[] = []
    alice.on('dm', (m) => dmEvents.push(m))

    const ack = await alice.dm('c-bob', 'hi Bob')
    expect(ack.room).toMatch(/^dm:[0-9a-f]{40}$/)
    expect(ack.seq).toBe(1)
    const mine = alice.conversation(ack.room!)!
    expect(mine).toMatchObject({ room: ack.room, kind: 'direct', read: 1, unread: 0 })
    expect(mine.last).toMatchObject({ type: 'dm', seq: 1, body: 'hi Bob', from: { id: 'c-alice' }, to: 'c-bob' })
    expect(memberships).toEqual([{ room: ack.room!, member: true }])
    expect(alice.directWith('c-bob')?.room).toBe(ack.room!) // known from the dm itself, before any list
    expect(alice.position(ack.room!).seq).toBe(1) // its own dm counts as seen
    expect(dmEvents).toEqual([]) // the sending connection gets no dm frame of its own

    const bob = make({ user: 'c-bob', name: 'Bob' })
    const totals: number[] = []
    bob.on('unread', (u) => totals.push(u.total))
    let welcomeUnread: number | undefined
    bob.on('welcome', (w) => (welcomeUnread = w.unread))
    await opened(bob)
    await until(() => bob.conversation(ack.room!) !== undefined, 'bob knows the conversation')
    expect(welcomeUnread).toBe(1)
    expect(bob.conversation(ack.room!)).toMatchObject({ kind: 'direct', seq: 1, read: 0, unread: 1 })
    expect(bob.unreadTotal).toBe(1)
    expect(totals.at(-1)).toBe(1)
    expect(bob.conversation(ack.room!)!.with).toBeUndefined() // joined does not name the other user

    const page = await bob.loadConversations()
    expect(page.more).toBe(false)
    expect(page.rooms.map((c) => c.room)).toEqual([ack.room!, 'general']) // most recently active first
    expect(bob.conversation(ack.room!)).toMatchObject({ with: { id: 'c-alice', name: 'Alice' }, unread: 1, last: { body: 'hi Bob' } })
    expect(bob.directWith('c-alice')?.room).toBe(ack.room!)
    expect(bob.conversations.map((c) => c.room)).toEqual([ack.room!, 'general'])
  })

  test('unread counts follow the frames; markRead clears them on every connection of the reader and shows the sender a receipt', async () => {
    const alice = make({ user: 'r-alice', name: 'Alice' })
    const bob = make({ user: 'r-bob', name: 'Bob' })
    const bob2 = make({ user: 'r-bob', name: 'Bob' })
    await Promise.all([opened(alice), opened(bob), opened(bob2)])
    const first = await alice.dm('r-bob', 'one')
    const room = first.room!
    await until(() => bob.conversation(room)?.unread === 1 && bob2.conversation(room)?.unread === 1, 'both bob connections count 1')
    const received: string[] = []
    bob.on('dm', (m) => received.push(m.body))
    await alice.dm('r-bob', 'two')
    const third = await alice.dm('r-bob', 'three')
    await until(() => bob.conversation(room)?.unread === 3 && bob2.conversation(room)?.unread === 3, 'three unread on both')
    expect(received).toEqual(['two', 'three'])
    expect(bob.unreadTotal).toBe(3)
    expect(bob.conversation(room)!.last).toMatchObject({ seq: third.seq, body: 'three' })

    const aliceReads: ReadFrame[] = []
    alice.on('read', (r) => aliceReads.push(r))
    const bob2Totals: number[] = []
    bob2.on('unread', (u) => bob2Totals.push(u.total))
    await bob.markRead(room) // up to the last seq it knows
    expect(bob.conversation(room)).toMatchObject({ read: third.seq, unread: 0 })
    expect(bob.unreadTotal).toBe(0)
    await until(() => bob2.conversation(room)?.unread === 0, 'the other connection of bob is told')
    expect(bob2.conversation(room)!.read).toBe(third.seq!)
    expect(bob2Totals.at(-1)).toBe(0)
    await until(() => aliceReads.length === 1, 'alice gets the read receipt')
    expect(aliceReads[0]).toMatchObject({ type: 'read', room, user: { id: 'r-bob', name: 'Bob' }, seq: third.seq })
    expect(alice.conversation(room)!.readBy).toEqual([{ user: { id: 'r-bob', name: 'Bob' }, seq: third.seq! }])

    // Marking read again sends nothing; a seq past the room's last is refused by the server.
    const frames: string[] = []
    const off = bob.on('frame', (f) => frames.push(f.type))
    await bob.markRead(room)
    const past = await bob.markRead(room, 999).catch((e) => e)
    off()
    expect(past).toBeInstanceOf(ChatError)
    expect(past.code).toBe('bad_request')
    expect(frames.filter((t) => t === 'ack')).toHaveLength(0)

    // Partly read: only what is above the marker stays unread.
    await alice.dm('r-bob', 'four')
    const five = await alice.dm('r-bob', 'five')
    await until(() => bob.conversation(room)?.unread === 2, 'two new unread')
    await bob.markRead(room, five.seq! - 1)
    expect(bob.conversation(room)!.unread).toBe(1)
    await until(() => bob2.conversation(room)?.unread === 1, 'bob2 follows the partial read')
  })

  test("a member room: joinAsMember lists it; chat by others counts, the user's own message reads up to it", async () => {
    const ann = make({ user: 'm-ann', name: 'Ann' })
    const ben = make({ user: 'm-ben', name: 'Ben' })
    const ben2 = make({ user: 'm-ben', name: 'Ben' })
    await Promise.all([opened(ann), opened(ben), opened(ben2)])
    const benMemberships: { room: string; member: boolean }[] = []
    ben2.on('membership', (m) => benMemberships.push(m))
    const joined = await ben.joinAsMember('team')
    expect(joined).toMatchObject({ room: 'team', member: true, unread: 0 })
    await ann.joinAsMember('team')
    // The other connection of the user is made a member too, unasked.
    await until(() => ben2.conversation('team') !== undefined, 'ben2 is a member of team')
    expect(benMemberships).toEqual([{ room: 'team', member: true }])

    await ann.send('team', 'a1')
    await ann.send('team', 'a2')
    await until(() => ben.conversation('team')?.unread === 2 && ben2.conversation('team')?.unread === 2, 'two unread for ben')
    expect(ann.conversation('team')!.unread).toBe(0)
    const own = await ben.send('team', 'b1') // the sender's marker moves to its message, no read event
    await until(() => ben2.conversation('team')?.unread === 0, "ben2 sees ben's own message clear the count")
    expect(ben.conversation('team')).toMatchObject({ read: own.seq, unread: 0 })
    await until(() => ann.conversation('team')?.unread === 1, "ann to count ben's message")

    const list = await ann.loadConversations({ limit: 1 })
    expect(list.rooms.map((c) => c.room)).toEqual(['team'])
    expect(list.more).toBe(true)
    const rest = await ann.loadConversations({ before: list.next, limit: 10 })
    expect(rest.rooms.map((c) => c.room)).toEqual(['general'])

    await ben.leaveMembership('team')
    expect(ben.conversation('team')).toBeUndefined()
    await until(() => ben2.conversation('team') === undefined, 'ben2 left team too')
    expect(benMemberships.at(-1)).toEqual({ room: 'team', member: false })
    expect(ben2.rooms).not.toContain('team')
    expect((await ben.loadConversations()).rooms.map((c) => c.room)).toEqual(['general'])
  })

  test('an anonymous user has no conversations: dm and joinAsMember are refused', async () => {
    const anon = make({})
    await opened(anon)
    expect(anon.conversation('general')).toMatchObject({ unread: 0 })
    expect((await anon.dm('someone', 'x').catch((e) => e)).code).toBe('forbidden')
    expect((await anon.joinAsMember('team').catch((e) => e)).code).toBe('forbidden')
  })
})

describe('dm recovery', () => {
  let server: RunningServer
  let proxy: Proxy
  beforeAll(async () => {
    // A short log: a re-join from before the sender's own dm would no longer be complete.
    server = await startServer({ env: { RATE_LIMIT_PER_SEC: '0', HISTORY_LIMIT: '5' } })
    proxy = await startProxy(server.port)
  })
  afterAll(async () => {
    proxy?.close()
    await server?.stop()
  })

  test("the sender's own dm counts as seen: after a drop the missed dms are replayed once, with no gap and no echo", async () => {
    const joins: Record<string, unknown>[] = []
    // WebSocket only: the spy sees the WebSocket's frames (a blocked proxy would otherwise send the client to SSE).
    const alice = new ChatClient({
      ...FAST,
      url: proxy.ws,
      user: 'g-alice',
      name: 'Alice',
      WebSocket: joinSpy(joins) as never,
      transports: ['websocket'],
    })
    const bob = new ChatClient({ ...FAST, url: server.ws, user: 'g-bob', name: 'Bob' })
    try {
      await Promise.all([opened(alice), opened(bob)])
      const got: DirectMessage[] = []
      alice.on('dm', (m) => got.push(m))
      const gaps: unknown[] = []
      const resets: unknown[] = []
      alice.on('gap', (g) => gaps.push(g))
      alice.on('reset', (r) => resets.push(r))

      await bob.dm('g-alice', 'hello Alice') // seq 1
      await until(() => got.length === 1, "alice got bob's dm")
      const mine = await alice.dm('g-bob', 'hi Bob, I am about to go offline') // seq 2: no frame comes back
      const room = mine.room!
      expect(mine.seq).toBe(2)
      expect(alice.position(room).seq).toBe(2)

      proxy.block()
      proxy.drop()
      await until(() => alice.state === 'reconnecting', 'alice dropped')
      const missed: number[] = []
      for (let i = 0; i < 5; i++) missed.push((await bob.dm('g-alice', `while you were away ${i}`)).seq!) // seqs 3..7: the log keeps 3..7
      proxy.unblock()
      await until(() => got.length === 6, 'the five missed dms', 8000)

      expect(got.map((m) => m.seq)).toEqual([1, ...missed])
      expect(got.every((m) => m.from.id === 'g-bob')).toBe(true) // its own dm is not echoed by the replay
      expect(gaps).toEqual([])
      expect(resets).toEqual([])
      expect(joins.filter((f) => f.room === room)).toEqual([expect.objectContaining({ since: 2 })])
      expect(alice.position(room).seq).toBe(7)
      expect(alice.conversation(room)).toMatchObject({ read: 2, unread: 5, last: { seq: 7 } })
    } finally {
      alice.close()
      bob.close()
    }
  }, 20_000)
})

const withRedis = await needService('Redis', 6379)

describe('first dms with Redis', () => {
  let server: RunningServer
  beforeAll(async () => {
    server = await startServer({
      env: { RATE_LIMIT_PER_SEC: '0', REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: `client-conv-${process.pid}-${Date.now()}:` },
    })
  })
  afterAll(async () => {
    await server?.stop()
  })

  withRedis(
    'dms sent back to back to a connected user: its joined and its frames count each message once',
    async () => {
      // The recipient's connection is made a member while the messages are being appended: the
      // count in its `joined` must stop at the seq of that joined, or the live frames count twice.
      const wrong: string[] = []
      for (let i = 0; i < 30; i++) {
        const a = new ChatClient({ ...FAST, url: server.ws, user: `fa${i}`, name: 'A' })
        const b = new ChatClient({ ...FAST, url: server.ws, user: `fb${i}`, name: 'B' })
        try {
          await Promise.all([opened(a), opened(b)])
          const [first] = await Promise.all([a.dm(`fb${i}`, 'x'), a.dm(`fb${i}`, 'y'), a.dm(`fb${i}`, 'z')])
          await until(() => b.position(first.room!).seq === 3, 'the three dms arrived')
          const unread = b.conversation(first.room!)!.unread
          if (unread !== 3) wrong.push(`pair ${i}: ${unread}`)
        } finally {
          a.close()
          b.close()
        }
      }
      expect(wrong).toEqual([])
    },
    60_000,
  )
})

/** A platform WebSocket that records the `join` frames a client sends. */
function joinSpy(into: Record<string, unknown>[]) {
  return class extends WebSocket {
    override send(data: string) {
      const f = JSON.parse(data)
      if (f.type === 'join') into.push(f)
      super.send(data)
    }
  }
}

// ---- fake socket: orderings a real server seldom shows ----

const ROOM = 'dm:0123456789abcdef0123456789abcdef01234567'
const dmFrame = (seq: number, from = 'other') => ({
  type: 'dm',
  seq,
  id: `m${seq}`,
  room: ROOM,
  from: { id: from, name: from },
  to: from === 'me' ? 'other' : 'me',
  body: `b${seq}`,
  ts: new Date(seq * 1000).toISOString(),
})

test('an own dm acked after a later frame: the earlier frame is still delivered, the seq tracking has no hole (fake socket)', async () => {
  const c = new ChatClient({
    url: 'ws://x/ws',
    WebSocket: FakeSocket,
    pingIntervalMs: 0,
    reconnect: { initialMs: 10, maxMs: 10, jitter: 0 },
  })
  const seen: number[] = []
  c.on('dm', (m) => seen.push(m.seq))
  await until(() => FakeSocket.last?.readyState === 0, 'socket')
  const ws = FakeSocket.last
  ws.open({ user: { id: 'me', name: 'Me' }, rooms: ['general', ROOM], unread: 0 })
  ws.push({ type: 'joined', room: ROOM, seq: 4, epoch: 'e', recovered: false, member: true, read: 4, unread: 0 })
  const sending = c.dm('other', 'mine')
  const req = ws.sent.find((f) => f.type === 'dm')!
  ws.push({ type: 'ack', id: req.id, msg: 'own', seq: 6, room: ROOM }) // overtook the other user's frame 5
  const ack = await sending
  expect(ack).toMatchObject({ room: ROOM, seq: 6 })
  expect(c.position(ROOM).seq).toBe(4) // 5 is still to come
  ws.push(dmFrame(5))
  ws.push(dmFrame(7))
  expect(seen).toEqual([5, 7])
  expect(c.position(ROOM).seq).toBe(7)
  expect(c.conversation(ROOM)).toMatchObject({ read: 6, unread: 1, last: { seq: 7 } })
  c.close()
})

test('made a member while connected: the replay before the unasked joined comes out as dm events, once (fake socket)', async () => {
  const c = new ChatClient({ url: 'ws://x/ws', WebSocket: FakeSocket, pingIntervalMs: 0 })
  const seen: number[] = []
  const memberships: unknown[] = []
  c.on('dm', (m) => seen.push(m.seq))
  c.on('membership', (m) => memberships.push(m))
  await until(() => FakeSocket.last?.readyState === 0, 'socket')
  const ws = FakeSocket.last
  ws.open({ user: { id: 'me', name: 'Me' }, unread: 0 })
  ws.push({ type: 'joined', room: 'general', seq: 0, epoch: 'g', recovered: false, member: true, read: 0, unread: 0 })
  ws.push(dmFrame(1)) // replayed from the marker, before the joined
  ws.push({ type: 'joined', room: ROOM, seq: 1, epoch: 'e', recovered: true, member: true, read: 0, unread: 1 })
  ws.push(dmFrame(1)) // a duplicate
  ws.push(dmFrame(2))
  expect(seen).toEqual([1, 2])
  expect(memberships).toEqual([
    { room: 'general', member: true },
    { room: ROOM, member: true },
  ])
  expect(c.conversation(ROOM)).toMatchObject({ kind: 'direct', read: 0, unread: 2, with: { id: 'other' } })
  expect(c.unreadTotal).toBe(2)
  // The user read it on another device: the read event of its own user clears the count.
  ws.push({ type: 'read', room: ROOM, user: { id: 'me', name: 'Me' }, seq: 2 })
  expect(c.conversation(ROOM)!.unread).toBe(0)
  // Another member read up to 1: a receipt, not a change of this user's marker.
  ws.push({ type: 'read', room: ROOM, user: { id: 'other', name: 'Other' }, seq: 1 })
  expect(c.conversation(ROOM)!.readBy).toEqual([{ user: { id: 'other', name: 'Other' }, seq: 1 }])
  expect(c.conversation(ROOM)!.read).toBe(2)
  c.close()
})
