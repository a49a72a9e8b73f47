// One door (issue 32, items 2, 5 and 7): /ws and the Pusher face's /app/:key pass the same
// admission (one MAX_CONNECTIONS count, per address, per user, connect rate), the same flood
// rule and the same liveness rule.
import { afterAll, describe, expect, test } from 'bun:test'
import { connect } from '../helpers/client'
import type { TestClient } from '../helpers/client'
import { APP, authEndpoint, pusherClient, pusherEnv, rawPusher } from '../helpers/pusher'
import type { PusherClient } from '../helpers/pusher'
import { rawWs } from '../helpers/raw-ws'
import { startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { needService } from '../helpers/services'
import { upgrade } from '../helpers/upgrade'

const redisTest = await needService('Redis', 6379)

const auth = authEndpoint()
const servers: RunningServer[] = []
const clients: TestClient[] = []
const pushers: PusherClient[] = []
const raws: { destroy: () => void }[] = []

async function server(env: Record<string, string>) {
  const s = await startServer({ env: { ...pusherEnv, RATE_LIMIT_PER_SEC: '0', ...env }, timeoutMs: 40_000 })
  servers.push(s)
  return s
}
const ws = async (s: RunningServer, query: Record<string, string> = {}) => {
  const c = await connect(s.ws, query)
  clients.push(c)
  return c
}
const pusher = async (s: RunningServer, as: { user?: string } = {}) => {
  const c = await pusherClient(s, auth, as)
  pushers.push(c)
  return c
}
const raw = async (port: number, path: string, localAddress?: string) => {
  const r = await rawWs(port, path, { localAddress })
  raws.push(r)
  return r
}
afterAll(async () => {
  for (const c of clients) c.ws.close()
  for (const p of pushers) p.close()
  for (const r of raws) r.destroy()
  await Promise.all(servers.map((s) => s.stop('SIGKILL')))
})

const metric = async (s: RunningServer, line: string) => {
  const text = await (await fetch(`${s.url}/metrics`)).text()
  const m = new RegExp(`^${line.replace(/[{}"]/g, '\\$&')} (\\d+(?:\\.\\d+)?)`, 'm').exec(text)
  return m ? Number(m[1]) : 0
}

describe('one count for every face', () => {
  test('MAX_CONNECTIONS: Pusher sockets and /ws sockets share one count, whichever comes first', async () => {
    const s = await server({ MAX_CONNECTIONS: '4' })
    await pusher(s)
    await pusher(s)
    await ws(s)
    await ws(s)
    // Full: /ws is refused before the upgrade, Pusher in Pusher's way (error, close 4100).
    expect(await upgrade(s.url)).toEqual({ status: 429, body: { error: 'limit', reason: 'connections' } })
    const p = await rawPusher(s)
    expect(p.first).toMatchObject({ event: 'pusher:error', data: { code: 4100, message: expect.stringContaining('MAX_CONNECTIONS') } })
    expect((await p.closed()).code).toBe(4100)
    expect(await metric(s, 'chat_connections')).toBe(4)
    expect(await metric(s, 'chat_connections_refused_total{reason="connections"}')).toBe(2)
    // A /ws socket that leaves makes room for a Pusher one.
    clients.at(-1)!.close()
    await clients.at(-1)!.closed
    await until(async () => (await rawPusher(s)).first.event === 'pusher:connection_established', 'a place for a Pusher socket', 3000)
  })

  test('MAX_CONNECTIONS_PER_IP counts Pusher sockets: a 4th from one address is refused, another address gets in', async () => {
    const s = await server({ MAX_CONNECTIONS_PER_IP: '3' })
    for (let i = 0; i < 3; i++) await pusher(s)
    const fourth = await rawPusher(s)
    expect(fourth.first).toMatchObject({
      event: 'pusher:error',
      data: { code: 4100, message: expect.stringContaining('MAX_CONNECTIONS_PER_IP') },
    })
    expect((await fourth.closed()).code).toBe(4100)
    // The address is full for /ws too.
    expect(await upgrade(s.url)).toEqual({ status: 429, body: { error: 'limit', reason: 'connections_per_ip' } })
    // From 127.0.0.2 (another client address on loopback): both faces admit.
    const other = await raw(s.port, `/app/${APP.key}?protocol=7`, '127.0.0.2')
    expect(other.status).toBe(101)
    await other.until(() => other.texts().length > 0, 'connection_established')
    expect(other.texts()[0].event).toBe('pusher:connection_established')
    const otherWs = await raw(s.port, '/ws', '127.0.0.2')
    expect(otherWs.status).toBe(101)
    expect(await metric(s, 'chat_connections_refused_total{reason="connections_per_ip"}')).toBe(2)
  })

  test('MAX_CONNECTIONS_PER_USER: a user signed in on Pusher counts for /ws, and the reverse; open connections stay', async () => {
    const s = await server({ MAX_CONNECTIONS_PER_USER: '1' })
    const p = await pusher(s, { user: 'alice' })
    p.pusher.signin()
    await p.pusher.user.signinDonePromise
    expect(p.pusher.user.user_data).toMatchObject({ id: 'alice' })
    expect(await upgrade(s.url, { user: 'alice' })).toEqual({ status: 429, body: { error: 'limit', reason: 'connections_per_user' } })
    // Not signed in, a Pusher socket is nobody's: it counts for no user.
    await pusher(s)

    // The reverse: bob on /ws, then a Pusher sign-in as bob is refused (error, then close).
    const bob = await ws(s, { user: 'bob' })
    const r = await rawPusher(s)
    const signed = (await auth.post({ socket_id: r.socketId, user: 'bob' })) as { auth: string; user_data: string }
    r.send({ event: 'pusher:signin', data: signed })
    expect((await r.next((f) => f.event === 'pusher:error')).data).toMatchObject({
      code: 4100,
      message: expect.stringContaining('MAX_CONNECTIONS_PER_USER'),
    })
    expect((await r.closed()).code).toBe(4100)
    // Bob's /ws connection and alice's Pusher one stay.
    expect((await bob.request({ type: 'ping' })).type).toBe('pong')
    expect(p.pusher.connection.state).toBe('connected')
    expect(await metric(s, 'chat_connections_refused_total{reason="connections_per_user"}')).toBe(2)
    // Alice's Pusher socket closes: her place is free for /ws.
    p.close()
    await until(async () => (await upgrade(s.url, { user: 'alice' })).status === 101, "alice's place freed", 3000)
  })
})

describe('per user across a cluster (Redis)', () => {
  redisTest(
    'a user signed in on Pusher on one node counts for /ws on another, and the reverse',
    async () => {
      const env = { REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: `door-${process.pid}-${Date.now()}:`, MAX_CONNECTIONS_PER_USER: '1' }
      const [a, b] = await Promise.all([server({ ...env, NODE_ID: 'door-a' }), server({ ...env, NODE_ID: 'door-b' })])
      const p = await pusher(a, { user: 'carol' })
      p.pusher.signin()
      await p.pusher.user.signinDonePromise
      expect(p.pusher.user.user_data).toMatchObject({ id: 'carol' })
      expect(await upgrade(b.url, { user: 'carol' })).toEqual({ status: 429, body: { error: 'limit', reason: 'connections_per_user' } })
      await ws(b, { user: 'dave' })
      const r = await rawPusher(a)
      r.send({ event: 'pusher:signin', data: await auth.post({ socket_id: r.socketId, user: 'dave' }) })
      expect((await r.closed()).code).toBe(4100)
      // Carol's Pusher socket closes on node A: her place is free on node B.
      p.close()
      await until(async () => (await upgrade(b.url, { user: 'carol' })).status === 101, "carol's place freed across nodes", 5000)
    },
    60_000,
  )
})

describe('connect rate', () => {
  test('CONNECT_RATE_PER_SEC: past it both faces answer 503 connect_rate with Retry-After', async () => {
    const s = await server({ CONNECT_RATE_PER_SEC: '1' })
    const UP = {
      upgrade: 'websocket',
      connection: 'Upgrade',
      'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
      'sec-websocket-version': '13',
    }
    const ask = (path: string) =>
      fetch(`${s.url}${path}`, { headers: UP, signal: AbortSignal.timeout(1500) }).then(
        async (r) => ({ status: r.status, retryAfter: r.headers.get('retry-after'), body: r.status === 101 ? undefined : await r.json() }),
        () => ({ status: 101, retryAfter: null, body: undefined }), // a 101 never completes as a fetch
      )
    const answers = await Promise.all([
      ...Array.from({ length: 5 }, () => ask('/ws')),
      ...Array.from({ length: 5 }, () => ask(`/app/${APP.key}?protocol=7`)),
    ])
    const ws503 = answers.slice(0, 5).filter((a) => a.status === 503)
    const pusher503 = answers.slice(5).filter((a) => a.status === 503)
    // One connection a second, at most a second's worth saved up: of ten at once, at most two pass.
    expect(answers.filter((a) => a.status === 503).length).toBeGreaterThanOrEqual(8)
    expect(ws503.length).toBeGreaterThanOrEqual(3)
    expect(pusher503.length).toBeGreaterThanOrEqual(3)
    for (const a of [...ws503, ...pusher503]) {
      expect(a.body).toEqual({ error: 'unavailable', reason: 'connect_rate' })
      expect(Number(a.retryAfter)).toBeGreaterThanOrEqual(1)
    }
    expect(await metric(s, 'chat_connections_refused_total{reason="connect_rate"}')).toBe(ws503.length + pusher503.length)
    // A second later the node admits again.
    await until(async () => (await upgrade(s.url)).status === 101, 'the rate to admit again', 4000)
  })
})

describe('floods', () => {
  test('a Pusher socket that keeps flooding is closed with 4301, as /ws closes with 1008', async () => {
    const s = await server({ RATE_LIMIT_PER_SEC: '2', RATE_LIMIT_BURST: '5' })
    const flood = await rawPusher(s)
    const other = await rawPusher(s)
    for (let i = 0; i < 12; i++) flood.send({ event: 'pusher:ping', data: {} })
    const closed = await flood.closed()
    expect(closed.code).toBe(4301)
    expect(flood.frames.filter((f) => f.event === 'pusher:pong')).toHaveLength(5)
    const warned = flood.frames.filter((f) => f.event === 'pusher:error')
    expect(warned.slice(0, 3).map((f) => f.data.code)).toEqual([4100, 4100, 4100])
    expect(warned.at(-1)!.data).toMatchObject({ code: 4301, message: expect.stringContaining('rate limit') })
    // The other socket has its own bucket.
    other.send({ event: 'pusher:ping', data: {} })
    expect((await other.next((f) => f.event === 'pusher:pong')).event).toBe('pusher:pong')
  })
})

describe('liveness', () => {
  test('a client that only listens in a busy room, answering pings, stays past several IDLE_TIMEOUT_S; one that never answers is closed', async () => {
    const IDLE_S = 3
    const s = await server({ IDLE_TIMEOUT_S: String(IDLE_S) })
    const listener = await ws(s, { user: 'listener' })
    await listener.next({ type: 'joined' })
    // A raw client in the same room, receiving the traffic, that answers nothing (pings neither).
    const deaf = await raw(s.port, '/ws?user=deaf')
    expect(deaf.status).toBe(101)
    const sender = await ws(s, { user: 'sender' })
    await sender.next({ type: 'joined' })
    let closedAt: number | undefined
    listener.closed.then(() => (closedAt = Date.now()))
    const started = Date.now()
    const RUN_MS = IDLE_S * 1000 * 3 + 1000
    let sent = 0
    // The sender chats every 300 ms (and so is heard); the listener never sends a frame.
    while (Date.now() - started < RUN_MS && closedAt === undefined && sent < 100) {
      sender.send({ type: 'chat', body: `tick ${sent++}` })
      await Bun.sleep(300)
    }
    expect(closedAt).toBeUndefined()
    const last = `tick ${sent - 1}`
    expect(await listener.next((f) => f.type === 'chat' && f.body === last)).toBeTruthy()
    // The deaf client was pinged (traffic kept flowing to it), and closed.
    expect(deaf.isClosed()).toBe(true)
    expect(deaf.frames.some((f) => f.opcode === 9)).toBe(true)
    expect(deaf.texts().filter((f) => f.type === 'chat').length).toBeGreaterThan(0)
    expect(await deaf.closed(100)).toBe(1000)
    expect(s.logs.some((l) => l.msg === 'disconnected' && l.user === 'deaf' && l.reason === 'idle timeout')).toBe(true)
    expect(s.logs.some((l) => l.msg === 'disconnected' && l.user === 'listener')).toBe(false)
  }, 30_000)
})

describe('connect time', () => {
  test('chat_connect_seconds counts /ws (upgrade to welcome) and Pusher (upgrade to connection_established)', async () => {
    const s = await server({})
    await ws(s)
    await pusher(s)
    expect(await metric(s, 'chat_connect_seconds_count{transport="ws"}')).toBe(1)
    expect(await metric(s, 'chat_connect_seconds_count{transport="pusher"}')).toBe(1)
  })
})
