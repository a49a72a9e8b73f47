import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { connect } from '../helpers/client'
import type { TestClient } from '../helpers/client'
import { startServer } from '../helpers/server'
import type { RunningServer } from '../helpers/server'

const API_KEY = 'test-api-key-0123456789'
let s: RunningServer
let n = 0
const room = () => `room-${++n}`

beforeAll(async () => {
  s = await startServer({ env: { API_KEY, RATE_LIMIT_PER_SEC: '0', HISTORY_LIMIT: '50', MAX_BODY_CHARS: '100' } })
})
afterAll(async () => {
  expect(await s.stop()).toBe(0)
})

const api = (path: string, init: RequestInit = {}) =>
  fetch(s.url + path, { ...init, headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json', ...init.headers } })

async function member(r: string, query: Record<string, string> = {}): Promise<TestClient> {
  const c = await connect(s.ws, query)
  expect((await c.request({ type: 'join', room: r })).type).toBe('joined')
  return c
}

describe('connect', () => {
  test('welcome comes first, then the default room is joined', async () => {
    const c = await connect(s.ws, { user: 'alice', name: 'Alice' })
    expect(c.frames[0]!.type).toBe('welcome')
    expect(c.welcome).toMatchObject({ user: { id: 'alice', name: 'Alice' }, rooms: ['general'] })
    expect(c.welcome.conn).toBeString()
    expect(c.welcome.node).toBeString()
    const joined = await c.next({ type: 'joined' })
    expect(joined).toMatchObject({ room: 'general', recovered: false })
    expect(joined.epoch).toBeString()
    c.close()
  })

  test('without ?user a random anon id is given; a bad user id is refused before upgrade', async () => {
    const c = await connect(s.ws)
    expect(c.welcome.user.id).toMatch(/^anon-/)
    c.close()
    const r = await fetch(`${s.url}/ws?user=${encodeURIComponent('bad id')}`, { headers: upgradeHeaders })
    expect(r.status).toBe(400)
    expect(await r.json()).toMatchObject({ error: 'bad_request' })
  })

  test('the seed frame reaches every connected client, the sender included', async () => {
    const clients = await Promise.all([0, 1, 2].map(() => connect(s.ws)))
    await Promise.all(clients.map((c) => c.next({ type: 'joined' })))
    clients[0]!.send({ type: 'chat', body: 'Hello' })
    for (const c of clients)
      expect(await c.next({ type: 'chat', body: 'Hello' })).toMatchObject({ room: 'general', from: { id: clients[0]!.welcome.user.id } })
    clients.forEach((c) => c.close())
  })
})

export const upgradeHeaders = {
  upgrade: 'websocket',
  connection: 'Upgrade',
  'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
  'sec-websocket-version': '13',
}

describe('chat', () => {
  test('ack carries msg and seq; seq rises by one; every member gets the same frame', async () => {
    const r = room()
    const a = await member(r, { user: 'a1' })
    const b = await member(r, { user: 'b1' })
    const acks = []
    for (let i = 0; i < 5; i++) acks.push(await a.request({ type: 'chat', room: r, body: `m${i}`, data: { i } }))
    expect(acks.map((x) => x.seq)).toEqual([1, 2, 3, 4, 5])
    for (const x of acks) expect(x.type).toBe('ack')
    const got = []
    for (let i = 0; i < 5; i++) got.push(await b.next({ type: 'chat', room: r }))
    expect(got.map((f) => f.seq)).toEqual([1, 2, 3, 4, 5])
    expect(got[2]).toMatchObject({ id: acks[2]!.msg, body: 'm2', data: { i: 2 }, from: { id: 'a1', name: 'a1' } })
    expect(new Date(got[2]!.ts).toISOString()).toBe(got[2]!.ts)
    expect((await a.next({ type: 'chat', room: r, seq: 5 })).body).toBe('m4') // the echo
    a.close()
    b.close()
  })

  test('a chat to a room the sender has not joined is forbidden', async () => {
    const c = await connect(s.ws)
    const e = await c.request({ type: 'chat', room: room(), body: 'x' })
    expect(e).toMatchObject({ type: 'error', code: 'forbidden' })
    c.close()
  })

  test('a retry with the same id is accepted once and gets the original ack', async () => {
    const r = room()
    const a = await member(r, { user: 'retrier' })
    const first = await a.request({ type: 'chat', room: r, body: 'once', id: 'same-1' })
    const again = await a.request({ type: 'chat', room: r, body: 'once', id: 'same-1' })
    expect(again).toMatchObject({ msg: first.msg, seq: first.seq })
    const third = await a.request({ type: 'chat', room: r, body: 'next', id: 'same-2' })
    expect(third.seq).toBe(first.seq + 1)
    expect(a.all('chat').filter((f) => f.room === r && f.body === 'once')).toHaveLength(1)
    a.close()
  })
})

describe('bad input gets bad_request naming the field, and the socket stays open', () => {
  const cases: [string, string, RegExp][] = [
    ['not JSON', '{"type":', /not valid JSON/],
    ['unknown type', '{"type":"shout","id":"u1"}', /^type: unknown frame type/],
    ['missing type', '{"body":"x"}', /^type:/],
    ['wrong field type', '{"type":"chat","body":5}', /^body: expected string/],
    ['empty body', '{"type":"chat","body":""}', /^body: must not be empty/],
    ['body too long', JSON.stringify({ type: 'chat', body: 'x'.repeat(101) }), /^body: must be at most 100/],
    ['id too long', JSON.stringify({ type: 'ping', id: 'i'.repeat(65) }), /^id: must be at most 64/],
    ['bad room name', '{"type":"join","room":"no spaces"}', /^room: must be 1..64/],
    ['room name too long', JSON.stringify({ type: 'join', room: 'r'.repeat(65) }), /^room:/],
    ['limit out of range', '{"type":"history","room":"general","limit":500}', /^limit: must be 1..100/],
    ['array frame', '[1,2]', /must be a JSON object/],
    ['NUL in body', JSON.stringify({ type: 'chat', body: 'a\u0000b' }), /^body: must not contain NUL/],
    ['NUL in data', JSON.stringify({ type: 'chat', body: 'ok', data: { k: ['\u0000'] } }), /^data: must not contain NUL/],
  ]
  for (const [name, raw, message] of cases)
    test(name, async () => {
      const c = await connect(s.ws)
      c.sendRaw(raw)
      const e = await c.next({ type: 'error' })
      expect(e.code).toBe('bad_request')
      expect(e.message).toMatch(message)
      expect((await c.request({ type: 'ping' })).type).toBe('pong')
      c.close()
    })

  test('an error answers with the frame id', async () => {
    const c = await connect(s.ws)
    c.sendRaw('{"type":"chat","body":"","id":"e-1"}')
    expect(await c.next({ type: 'error' })).toMatchObject({ code: 'bad_request', id: 'e-1' })
    c.close()
  })
})

describe('rooms', () => {
  test('join, leave, and no delivery after leave', async () => {
    const r = room()
    const a = await member(r)
    const b = await member(r)
    expect(await b.request({ type: 'leave', room: r })).toMatchObject({ type: 'left', room: r })
    await a.request({ type: 'chat', room: r, body: 'after leave' })
    await a.next({ type: 'chat', body: 'after leave' })
    expect((await b.request({ type: 'ping' })).type).toBe('pong')
    expect(b.all('chat').some((f) => f.body === 'after leave')).toBe(false)
    expect(await b.request({ type: 'chat', room: r, body: 'x' })).toMatchObject({ code: 'forbidden' })
    a.close()
    b.close()
  })

  test('presence lists users and announces join and leave', async () => {
    const r = room()
    const a = await member(r, { user: 'pa', name: 'Pa' })
    const b = await connect(s.ws, { user: 'pb', name: 'Pb' })
    await b.request({ type: 'join', room: r })
    expect(await a.next((f) => f.type === 'presence' && f.event === 'join' && f.room === r && f.user.id === 'pb')).toMatchObject({
      user: { id: 'pb', name: 'Pb' },
    })
    const list = await a.request({ type: 'presence', room: r })
    expect(list.users.map((u: { id: string }) => u.id).sort()).toEqual(['pa', 'pb'])
    // a second connection of pb is not a second presence
    const b2 = await connect(s.ws, { user: 'pb', name: 'Pb' })
    await b2.request({ type: 'join', room: r })
    expect((await a.request({ type: 'presence', room: r })).users).toHaveLength(2)
    b.close()
    await b.closed
    expect((await a.request({ type: 'presence', room: r })).users).toHaveLength(2)
    b2.close()
    expect(await a.next({ type: 'presence', event: 'leave', room: r })).toMatchObject({ user: { id: 'pb' } })
    expect((await a.request({ type: 'presence', room: r })).users.map((u: { id: string }) => u.id)).toEqual(['pa'])
    const res = await api(`/api/rooms/${r}/presence`)
    expect(await res.json()).toEqual({ room: r, users: [{ id: 'pa', name: 'Pa' }], count: 1 })
    a.close()
  })

  test('typing reaches the other members, not the typist, and is never stored', async () => {
    const r = room()
    const a = await member(r, { user: 'ta' })
    const b = await member(r, { user: 'tb' })
    a.send({ type: 'typing', room: r })
    expect(await b.next({ type: 'typing' })).toEqual({ type: 'typing', room: r, user: { id: 'ta', name: 'ta' } })
    expect((await a.request({ type: 'ping' })).type).toBe('pong')
    expect(a.all('typing')).toHaveLength(0)
    expect((await a.request({ type: 'history', room: r })).messages).toEqual([])
    a.close()
    b.close()
  })
})

describe('direct messages', () => {
  test("reach every connection of the user and the sender's other connections, not the sending one", async () => {
    const to1 = await connect(s.ws, { user: 'dm-bob' })
    const to2 = await connect(s.ws, { user: 'dm-bob' })
    const from = await connect(s.ws, { user: 'dm-alice' })
    const fromOther = await connect(s.ws, { user: 'dm-alice' })
    const stranger = await connect(s.ws, { user: 'dm-eve' })
    const ack = await from.request({ type: 'dm', to: 'dm-bob', body: 'psst', data: { k: 1 } })
    expect(ack.type).toBe('ack')
    for (const c of [to1, to2, fromOther])
      expect(await c.next({ type: 'dm' })).toMatchObject({
        id: ack.msg,
        from: { id: 'dm-alice' },
        to: 'dm-bob',
        body: 'psst',
        data: { k: 1 },
      })
    expect((await stranger.request({ type: 'ping' })).type).toBe('pong')
    expect((await from.request({ type: 'ping' })).type).toBe('pong')
    expect(stranger.all('dm')).toHaveLength(0)
    expect(from.all('dm')).toHaveLength(0)
    for (const c of [to1, to2, from, fromOther, stranger]) c.close()
  })
})

describe('history', () => {
  test('pages oldest first with more, by frame and by the API', async () => {
    const r = room()
    const a = await member(r)
    for (let i = 1; i <= 7; i++) await a.request({ type: 'chat', room: r, body: `h${i}` })
    const last = await a.request({ type: 'history', room: r, limit: 3 })
    expect(last.messages.map((m: { seq: number }) => m.seq)).toEqual([5, 6, 7])
    expect(last.more).toBe(true)
    const older = await a.request({ type: 'history', room: r, before: 5, limit: 3 })
    expect(older.messages.map((m: { body: string }) => m.body)).toEqual(['h2', 'h3', 'h4'])
    expect(older.more).toBe(true)
    const oldest = await a.request({ type: 'history', room: r, before: 2 })
    expect(oldest.messages.map((m: { seq: number }) => m.seq)).toEqual([1])
    expect(oldest.more).toBe(false)
    const res = await api(`/api/rooms/${r}/messages?before=4&limit=2`)
    expect(res.status).toBe(200)
    const page: any = await res.json()
    expect(page.room).toBe(r)
    expect(page.messages.map((m: { seq: number }) => m.seq)).toEqual([2, 3])
    expect(page.more).toBe(true)
    a.close()
  })

  test('keeps only HISTORY_LIMIT messages per room', async () => {
    const r = room()
    for (let i = 1; i <= 60; i++) await api('/api/publish', { method: 'POST', body: JSON.stringify({ room: r, body: `p${i}` }) })
    const page: any = await (await api(`/api/rooms/${r}/messages?limit=100`)).json()
    expect(page.messages).toHaveLength(50)
    expect(page.messages[0].seq).toBe(11)
    expect(page.more).toBe(false)
  })
})

describe('recovery after reconnect', () => {
  test('join with since and epoch replays exactly the missed messages, then live ones', async () => {
    const r = room()
    const a = await member(r, { user: 'rec-a' })
    let b = await member(r, { user: 'rec-b' })
    for (let i = 1; i <= 3; i++) await a.request({ type: 'chat', room: r, body: `before${i}` })
    await b.next({ type: 'chat', seq: 3 })
    const epoch = (await b.request({ type: 'join', room: r })).epoch
    b.close()
    for (let i = 4; i <= 6; i++) await a.request({ type: 'chat', room: r, body: `missed${i}` })
    b = await connect(s.ws, { user: 'rec-b' })
    const joined = await b.request({ type: 'join', room: r, since: 3, epoch })
    expect(joined).toMatchObject({ room: r, seq: 6, epoch, recovered: true })
    expect(
      b
        .all('chat')
        .filter((f) => f.room === r)
        .map((f) => f.seq),
    ).toEqual([4, 5, 6])
    await a.request({ type: 'chat', room: r, body: 'live' })
    expect(await b.next({ type: 'chat', room: r, body: 'live' })).toMatchObject({ seq: 7 })
    expect(
      b
        .all('chat')
        .filter((f) => f.room === r)
        .map((f) => f.seq),
    ).toEqual([4, 5, 6, 7])
    a.close()
    b.close()
  })

  test('a stale epoch or a since older than the kept window is not recovered', async () => {
    const r = room()
    const a = await member(r)
    await a.request({ type: 'chat', room: r, body: 'x' })
    const b = await connect(s.ws)
    expect(await b.request({ type: 'join', room: r, since: 0, epoch: 'another-epoch' })).toMatchObject({ recovered: false, seq: 1 })
    expect(b.all('chat').filter((f) => f.room === r)).toHaveLength(0)
    const r2 = room()
    for (let i = 1; i <= 60; i++) await api('/api/publish', { method: 'POST', body: JSON.stringify({ room: r2, body: `w${i}` }) })
    const c = await connect(s.ws)
    const epoch = (await c.request({ type: 'join', room: r2 })).epoch
    const d = await connect(s.ws)
    expect(await d.request({ type: 'join', room: r2, since: 5, epoch })).toMatchObject({ recovered: false, seq: 60 })
    expect(await d.request({ type: 'join', room: r, since: 1 })).toMatchObject({ recovered: true })
    for (const x of [a, b, c, d]) x.close()
  })

  test('re-joining the default room with since fills the gap before its live stream, without duplicates', async () => {
    const a = await connect(s.ws)
    const start = (await a.next({ type: 'joined', room: 'general' })).seq
    for (let i = 0; i < 3; i++) await a.request({ type: 'chat', body: `g${i}` })
    const b = await connect(s.ws)
    const live = (await b.next({ type: 'joined', room: 'general' })).seq
    await a.request({ type: 'chat', body: 'g-live' })
    await b.next({ type: 'chat', body: 'g-live' })
    const joined = await b.request({ type: 'join', room: 'general', since: start })
    expect(joined.recovered).toBe(true)
    const seqs = b
      .all('chat')
      .filter((f) => f.room === 'general')
      .map((f) => f.seq)
      .sort((x, y) => x - y)
    expect(seqs).toEqual(Array.from({ length: live - start + 1 }, (_, i) => start + 1 + i))
    a.close()
    b.close()
  })

  test('no gap and no duplicate across the replay/live boundary under concurrent sends', async () => {
    const r = room()
    const senders = await Promise.all([0, 1, 2].map(() => member(r)))
    const watcher = await member(r)
    const epoch = (await watcher.request({ type: 'join', room: r })).epoch
    // Senders publish continuously while recovering clients join with since.
    let sending = true
    const total = { n: 0 }
    const pumps = senders.map(async (c, k) => {
      for (let i = 0; sending && i < 400; i++) {
        await c.request({ type: 'chat', room: r, body: `s${k}-${i}` })
        total.n++
      }
    })
    const checks: Promise<void>[] = []
    for (let j = 0; j < 8; j++) {
      await Bun.sleep(25)
      checks.push(
        (async () => {
          const since = Math.max(0, total.n - 5)
          const c = await connect(s.ws)
          await c.request({ type: 'join', room: r, since, epoch })
          await Bun.sleep(150)
          const seqs = c
            .all('chat')
            .filter((f) => f.room === r)
            .map((f) => f.seq)
          expect(seqs.length).toBeGreaterThan(0)
          seqs.forEach((q, i) => expect(q).toBe(since + 1 + i)) // contiguous, in order, from since+1
          c.close()
        })(),
      )
    }
    await Promise.all(checks)
    sending = false
    await Promise.all(pumps)
    for (const c of [...senders, watcher]) c.close()
  })
})

describe('publish API', () => {
  test('publishes to a room and answers id, room, seq', async () => {
    const r = room()
    const c = await member(r)
    const res = await api('/api/publish', { method: 'POST', body: JSON.stringify({ room: r, body: 'from the server', data: { k: 'v' } }) })
    expect(res.status).toBe(200)
    const out: any = await res.json()
    expect(out).toMatchObject({ room: r, seq: 1 })
    expect(await c.next({ type: 'chat', room: r })).toMatchObject({
      id: out.id,
      seq: 1,
      body: 'from the server',
      data: { k: 'v' },
      from: { id: 'server' },
    })
    c.close()
  })

  test('defaults to DEFAULT_ROOM; Idempotency-Key makes a retry safe', async () => {
    const h = { 'idempotency-key': `k-${Date.now()}` }
    const one: any = await (await api('/api/publish', { method: 'POST', body: JSON.stringify({ body: 'idem' }), headers: h })).json()
    const two = await (await api('/api/publish', { method: 'POST', body: JSON.stringify({ body: 'idem' }), headers: h })).json()
    expect(one.room).toBe('general')
    expect(two).toEqual(one)
  })

  test('bad requests get 400 with the field; a wrong key 401', async () => {
    const bad = await api('/api/publish', { method: 'POST', body: JSON.stringify({ body: '' }) })
    expect(bad.status).toBe(400)
    expect(await bad.json()).toEqual({ error: 'bad_request', reason: 'body: must not be empty' })
    const notJson = await api('/api/publish', { method: 'POST', body: '{' })
    expect(notJson.status).toBe(400)
    const badRoom = await api('/api/rooms/bad%20room/messages')
    expect(badRoom.status).toBe(400)
    const badLimit = await api('/api/rooms/general/messages?limit=0')
    expect(await badLimit.json()).toMatchObject({ error: 'bad_request', reason: 'limit: must be 1..100' })
    const wrong = await fetch(`${s.url}/api/publish`, { method: 'POST', headers: { authorization: 'Bearer nope' }, body: '{"body":"x"}' })
    expect(wrong.status).toBe(401)
    expect(await wrong.json()).toMatchObject({ error: 'unauthorized' })
    const none = await fetch(`${s.url}/api/rooms/general/presence`)
    expect(none.status).toBe(401)
  })
})

describe('HTTP', () => {
  test('healthz, readyz, metrics, unknown path', async () => {
    expect(await (await fetch(`${s.url}/healthz`)).json()).toEqual({ status: 'ok' })
    const ready = await fetch(`${s.url}/readyz`)
    expect(ready.status).toBe(200)
    expect(((await ready.json()) as any).status).toBe('ready')
    const text = await (await fetch(`${s.url}/metrics`)).text()
    for (const name of [
      'chat_connections',
      'chat_rooms',
      'chat_frames_in_total',
      'chat_frames_out_total',
      'chat_messages_published_total',
      'chat_messages_delivered_total',
      'chat_errors_total',
      'chat_rate_limited_total',
      'chat_slow_consumer_closes_total',
      'chat_publish_latency_seconds_bucket',
      'chat_broker_errors_total',
    ])
      expect(text).toContain(name)
    expect(text).toMatch(/chat_frames_in_total\{type="chat"\} [1-9]/)
    expect(text).toMatch(/chat_errors_total\{code="bad_request"\} [1-9]/)
    const missing = await fetch(`${s.url}/nope`)
    expect(missing.status).toBe(404)
    expect(await missing.json()).toEqual({ error: 'not_found' })
  })

  test("chat_messages_delivered_total counts the room's subscribers of each message, the sender included, not those who left", async () => {
    const delivered = async () => Number(/^chat_messages_delivered_total (\d+)$/m.exec(await (await fetch(`${s.url}/metrics`)).text())![1])
    const r = room()
    const [a, b, c] = await Promise.all([member(r), member(r), member(r)])
    expect((await c.request({ type: 'leave', room: r })).type).toBe('left')
    const before = await delivered()
    a!.send({ type: 'chat', room: r, body: 'counted' })
    for (const x of [a!, b!]) await x.next({ type: 'chat', body: 'counted' })
    expect((await delivered()) - before).toBe(2)
    for (const x of [a!, b!, c!]) x.close()
  })

  test('logs are JSON lines and never carry a body', async () => {
    expect(s.logs.length).toBeGreaterThan(0)
    for (const l of s.logs) {
      expect(l.raw).toBeUndefined()
      expect(l.time).toBeString()
      expect(l.level).toBeString()
    }
    const text = JSON.stringify(s.logs)
    expect(text).not.toContain('from the server')
    expect(text).not.toContain('psst')
    expect(s.logs.some((l) => l.msg === 'connected' && l.conn && l.user)).toBe(true)
  })
})
