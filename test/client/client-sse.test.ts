/**
 * The client's fallback to Server-Sent Events (PROTOCOL-v4 "Transports"): behind a proxy that
 * refuses WebSocket upgrades the client connects over `GET /sse` + `POST /sse/:session` by
 * itself, chats with a /ws user both ways, and resumes across a server restart with nothing
 * lost or doubled; `transports: ['websocket']` never falls back. Then the transport alone,
 * with a fake fetch: POST batching, order, one POST in flight, how a session ends.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { ChatClient, SseSocket } from '../../client/src/index'
import type { ChatClientOptions, FetchLike } from '../../client/src/index'
import { connect } from '../helpers/client'
import { FakeSocket } from '../helpers/fake-socket'
import type { TestClient } from '../helpers/client'
import { startHttpProxy } from '../helpers/http-proxy'
import type { HttpProxy } from '../helpers/http-proxy'
import { startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { dropRedisPrefix, needService } from '../helpers/services'

const FAST = { reconnect: { initialMs: 50, maxMs: 300 }, requestTimeoutMs: 15_000, pingIntervalMs: 0 } as const
const opened = (c: ChatClient, ms = 10_000) => until(() => c.state === 'open', `client open (state ${c.state})`, ms)

const redisTest = await needService('Redis', 6379)

describe('a client behind a proxy that refuses WebSockets', () => {
  const prefix = `test:ssefallback:${process.pid}:`
  const env = { REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: prefix, RATE_LIMIT_PER_SEC: '0', SHUTDOWN_GRACE_S: '1' }
  let server: RunningServer
  let proxy: HttpProxy
  const clients: ChatClient[] = []
  const sockets: TestClient[] = []
  const proxies: HttpProxy[] = []
  const make = (o: Partial<ChatClientOptions>, via = proxy) => {
    const c = new ChatClient({ ...FAST, url: via.ws, ...o })
    clients.push(c)
    return c
  }
  const wsUser = async (user: string, room: string) => {
    const t = await connect(server.ws, { user, name: user })
    sockets.push(t)
    expect((await t.request({ type: 'join', room })).type).toBe('joined')
    return t
  }
  const newProxy = () => {
    const p = startHttpProxy(server.port)
    proxies.push(p)
    return p
  }

  beforeAll(async () => {
    if (redisTest !== test) return
    server = await startServer({ env })
    proxy = newProxy()
  })
  afterAll(async () => {
    for (const c of clients) c.close()
    for (const t of sockets) t.close()
    for (const p of proxies) p.close()
    await server?.stop()
    await dropRedisPrefix(prefix)
  })

  redisTest(
    'the upgrade is refused: the client connects over SSE and chats with a /ws user both ways, 150 sends in one burst in order',
    async () => {
      const room = 'sse-both-ways'
      const ann = make({ user: 'sse-ann', name: 'Ann' })
      await opened(ann)
      expect(ann.transport).toBe('sse')
      expect(proxy.refused).toBeGreaterThan(0)
      expect(proxy.seen).toContain('GET /sse')
      await ann.join(room)
      const bob = await wsUser('ws-bob', room)
      const annGot: string[] = []
      ann.on('chat', (m) => m.room === room && annGot.push(m.body))

      const ack = await ann.send(room, 'from sse')
      expect(ack.seq).toBeGreaterThan(0)
      expect(await bob.next({ type: 'chat', body: 'from sse' })).toMatchObject({ from: { id: 'sse-ann' }, seq: ack.seq })
      await bob.request({ type: 'chat', room, body: 'from ws' })
      await until(() => annGot.includes('from ws'), 'the /ws message over SSE')

      // More than one POST can carry (100 frames): batched, one POST at a time, the server's seqs in send order.
      const acks = await Promise.all(Array.from({ length: 150 }, (_, i) => ann.send(room, `burst ${i}`)))
      const seqs = acks.map((a) => a.seq!)
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
      await until(() => bob.all('chat').filter((f) => f.body.startsWith('burst ')).length === 150, 'bob got the burst', 15_000)
      expect(
        bob
          .all('chat')
          .filter((f) => f.body.startsWith('burst '))
          .map((f) => f.body),
      ).toEqual(acks.map((_, i) => `burst ${i}`))
      await until(() => annGot.length === 152, `ann's own burst back (${annGot.length})`, 15_000)
      expect(proxy.seen.filter((s) => s.startsWith('POST /sse/')).length).toBeLessThan(150)
    },
    60_000,
  )

  redisTest(
    'a server restart: the client resumes over SSE; what it sent offline and what was sent while it was away arrive once',
    async () => {
      const room = 'sse-restart'
      const cara = make({ user: 'sse-cara', name: 'Cara' })
      await opened(cara)
      await cara.join(room)
      const got: string[] = []
      cara.on('chat', (m) => m.room === room && got.push(m.body))
      let dave = await wsUser('ws-dave', room)
      await dave.request({ type: 'chat', room, body: 'before 1' })
      await cara.send(room, 'before 2')
      await until(() => got.length === 2, 'both messages before the restart')
      const refusedBefore = proxy.refused

      const port = server.port
      await server.stop()
      await until(() => cara.state === 'reconnecting', 'cara sees the drop')
      const offline = cara.send(room, 'offline from cara') // in the outbox
      proxy.hold(true) // cara stays away while dave writes
      server = await startServer({ env: { ...env, PORT: String(port) } })
      dave = await wsUser('ws-dave', room)
      await dave.request({ type: 'chat', room, body: 'gap 1' })
      await dave.request({ type: 'chat', room, body: 'gap 2' })
      proxy.hold(false)
      await opened(cara, 20_000)
      expect(cara.transport).toBe('sse')
      expect((await offline).seq).toBeGreaterThan(0)
      await dave.next({ type: 'chat', body: 'offline from cara' }, 10_000)
      await dave.request({ type: 'chat', room, body: 'after' })
      await cara.send(room, 'after from cara')
      await dave.next({ type: 'chat', body: 'after from cara' }, 10_000)
      await until(() => got.includes('after from cara'), 'cara got her own last message')

      // The outbox goes out after the re-join: cara's offline message follows what dave wrote meanwhile.
      expect(got).toEqual(['before 1', 'before 2', 'gap 1', 'gap 2', 'offline from cara', 'after', 'after from cara'])
      expect(dave.all('chat').filter((f) => f.body === 'offline from cara').length).toBe(1)
      // SSE worked where the WebSocket did not: the reconnects went straight to SSE.
      expect(proxy.refused).toBe(refusedBefore)
    },
    90_000,
  )

  redisTest(
    "transports: ['websocket'] alone never falls back",
    async () => {
      const only = newProxy()
      const c = make({ user: 'ws-only', transports: ['websocket'] }, only)
      let attempts = 0
      c.on('reconnecting', () => attempts++)
      await until(() => attempts >= 3, 'three failed attempts')
      expect(c.state).not.toBe('open')
      expect(c.transport).toBe('websocket')
      expect(only.refused).toBeGreaterThanOrEqual(3)
      expect(only.seen.filter((s) => s.includes('/sse'))).toEqual([])
    },
    30_000,
  )

  redisTest(
    "transports: ['sse'] never tries a WebSocket",
    async () => {
      const p = newProxy()
      const c = make({ user: 'sse-only', transports: ['sse'] }, p)
      await opened(c)
      expect(c.transport).toBe('sse')
      expect(p.refused).toBe(0)
      expect(p.seen.filter((s) => s === 'GET /ws')).toEqual([])
    },
    30_000,
  )

  redisTest(
    'after websocketRetryMs a reconnect tries the WebSocket again, and resumes on it',
    async () => {
      const room = 'sse-upgrade'
      const p = newProxy()
      const eve = make({ user: 'sse-eve', websocketRetryMs: 200 }, p)
      await opened(eve)
      expect(eve.transport).toBe('sse')
      await eve.join(room)
      const got: string[] = []
      eve.on('chat', (m) => m.room === room && got.push(m.body))
      const fred = await wsUser('ws-fred', room)
      await fred.request({ type: 'chat', room, body: 'one' })
      await until(() => got.includes('one'), 'one over SSE')
      p.allowWebSocket(true)
      await Bun.sleep(300)
      p.dropStreams()
      await until(() => eve.state !== 'open', 'the drop')
      await fred.request({ type: 'chat', room, body: 'two' })
      await opened(eve)
      expect(eve.transport).toBe('websocket')
      await fred.request({ type: 'chat', room, body: 'three' })
      await until(() => got.includes('three'), 'three over the WebSocket')
      expect(got).toEqual(['one', 'two', 'three'])
    },
    30_000,
  )
})

// ---------------------------------------------------------------- the transport alone, fake fetch

interface FakeCall {
  url: string
  init: Parameters<FetchLike>[1]
  answer: (status: number) => void
}

/** A fetch whose GET is a stream the test writes, and whose POSTs wait until the test answers them. */
function fakeFetch() {
  const enc = new TextEncoder()
  let stream!: ReadableStreamDefaultController<Uint8Array>
  const gets: FakeCall[] = []
  const posts: FakeCall[] = []
  const fetch: FetchLike = (url, init) =>
    new Promise((resolve) => {
      const answer = (status: number) => resolve({ status, body: null, text: async () => '{}' })
      if (init.method === 'POST') return posts.push({ url, init, answer })
      gets.push({ url, init, answer })
      resolve({
        status: 200,
        body: new ReadableStream<Uint8Array>({ start: (c) => void (stream = c) }),
        text: async () => '',
      })
    })
  return {
    fetch,
    gets,
    posts,
    event: (frame: unknown) => stream.enqueue(enc.encode(`data: ${JSON.stringify(frame)}\n\n`)),
    raw: (text: string) => stream.enqueue(enc.encode(text)),
    end: () => stream.close(),
  }
}

test('SseSocket: frames queued while a POST is out go in the next one, in order, at most 100 a POST, never two POSTs at once', async () => {
  const f = fakeFetch()
  const s = new SseSocket('http://x/sse?user=u', { fetch: f.fetch, token: 'tok' })
  const seen: string[] = []
  s.onmessage = (e) => seen.push(String(e.data))
  await until(() => s.readyState === 1, 'open')
  expect(f.gets[0]!.init.headers).toMatchObject({ authorization: 'Bearer tok' })
  expect(f.gets[0]!.url).toBe('http://x/sse?user=u') // the token is never in the URL
  s.send('{"type":"ping","id":"early"}') // before the session is known: waits
  await Bun.sleep(5)
  expect(f.posts.length).toBe(0)
  // A comment (keepalive) and an event split across chunks, with CRLF line ends.
  f.raw(':\n\ndata: {"type":"welcome","session":"n1.s')
  f.raw('ess"}\r\n\r\n')
  await until(() => f.posts.length === 1, 'the first POST')
  expect(seen).toEqual(['{"type":"welcome","session":"n1.sess"}'])
  expect(s.session).toBe('n1.sess')
  expect(f.posts[0]!.url).toBe('http://x/sse/n1.sess')
  expect(f.posts[0]!.init.body).toBe('{"type":"ping","id":"early"}')
  for (let i = 0; i < 250; i++) s.send(`{"type":"ping","id":"p${i}"}`)
  await Bun.sleep(5)
  expect(f.posts.length).toBe(1) // one in flight
  const ids = (k: number) => (JSON.parse(f.posts[k]!.init.body!) as { id: string }[]).map((x) => x.id)
  f.posts[0]!.answer(202)
  await until(() => f.posts.length === 2, 'the second POST')
  expect(ids(1)).toEqual(Array.from({ length: 100 }, (_, i) => `p${i}`))
  await Bun.sleep(5)
  expect(f.posts.length).toBe(2)
  f.posts[1]!.answer(202)
  await until(() => f.posts.length === 3, 'the third POST')
  expect(ids(2)).toEqual(Array.from({ length: 100 }, (_, i) => `p${i + 100}`))
  f.posts[2]!.answer(202)
  await until(() => f.posts.length === 4, 'the fourth POST')
  expect(ids(3)).toEqual(Array.from({ length: 50 }, (_, i) => `p${i + 200}`))

  // The session ended on the server: the POST's 404 ends the socket, as a broken WebSocket.
  const closed: { code: number; reason: string }[] = []
  s.onclose = (e) => closed.push(e)
  f.posts[3]!.answer(404)
  await until(() => closed.length === 1, 'closed')
  expect(closed[0]).toEqual({ code: 1006, reason: 'session ended' })
  expect(s.readyState).toBe(3)
  s.send('{"type":"ping"}')
  await Bun.sleep(5)
  expect(f.posts.length).toBe(4)
})

test("SseSocket: a POST stays under maxPostBytes; the server's close event gives the close code", async () => {
  const f = fakeFetch()
  const s = new SseSocket('http://x/sse', { fetch: f.fetch, maxPostBytes: 100 })
  await until(() => s.readyState === 1, 'open')
  f.event({ type: 'welcome', session: 'n.s' })
  const big = (i: number) => JSON.stringify({ type: 'chat', room: 'r', body: 'x'.repeat(30), id: `b${i}` })
  for (let i = 0; i < 4; i++) s.send(big(i))
  await until(() => f.posts.length === 1, 'a POST')
  f.posts[0]!.answer(202)
  await until(() => f.posts.length === 2, 'a POST')
  // Each frame is ~60 bytes: one a POST under a 100-byte cap.
  expect(f.posts.map((p) => p.init.body)).toEqual([big(0), big(1)])
  const closed: { code: number; reason: string }[] = []
  s.onclose = (e) => closed.push(e)
  f.event({ type: 'close', code: 4001, reason: 'token expired' })
  f.end()
  await until(() => closed.length === 1, 'closed')
  expect(closed[0]).toEqual({ code: 4001, reason: 'token expired' })
})

test("the client's transports option: an unknown or empty list is refused", () => {
  expect(() => new ChatClient({ url: 'ws://x/ws', autoConnect: false, transports: [] })).toThrow(/transports/)
  expect(() => new ChatClient({ url: 'ws://x/ws', autoConnect: false, transports: ['polling' as never] })).toThrow(/transports/)
})

test('a WebSocket that never answers is given up after connectTimeoutMs: the attempt goes on over SSE (fake socket, fake fetch)', async () => {
  const timers: { at: number; fn: () => void }[] = []
  let now = 0
  const clock = {
    now: () => now,
    setTimeout: (fn: () => void, ms: number) => timers.push({ at: now + ms, fn }) - 1,
    clearTimeout: (h: unknown) => {
      if (typeof h === 'number' && timers[h]) timers[h]!.fn = () => {}
    },
  }
  const advance = (ms: number) => {
    now += ms
    for (const t of timers) if (t.at <= now && t.at >= 0) t.fn(), (t.at = -1)
  }
  const hung: FakeSocket[] = []
  class HungSocket extends FakeSocket {
    constructor(url: string) {
      super(url)
      hung.push(this)
    }
  }
  const f = fakeFetch()
  const c = new ChatClient({
    url: 'ws://x/ws',
    user: 'u',
    WebSocket: HungSocket,
    fetch: f.fetch,
    clock,
    pingIntervalMs: 0,
    connectTimeoutMs: 5000,
  })
  await until(() => hung.length === 1, 'the WebSocket')
  advance(4999)
  await Bun.sleep(5)
  expect(f.gets.length).toBe(0)
  advance(1)
  await until(() => f.gets.length === 1, 'the SSE stream')
  expect(hung[0]!.readyState).toBe(3) // closed by the client
  expect(f.gets[0]!.url).toBe('http://x/sse?user=u')
  f.event({ type: 'welcome', session: 'n.s', conn: 'c', user: { id: 'u', name: 'U' }, node: 'n', rooms: ['general'] })
  await until(() => c.state === 'open', 'open over SSE')
  expect(c.transport).toBe('sse')
  c.close()
})
