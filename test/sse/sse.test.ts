import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { connect } from '../helpers/client'
import { startServer } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { openSse } from '../helpers/sse'

let s: RunningServer
let n = 0
const room = () => `sse-room-${++n}`

beforeAll(async () => {
  s = await startServer({ env: { RATE_LIMIT_PER_SEC: '0', ROOM_PATTERN: '^[a-z0-9-]{1,64}$' } })
})
afterAll(async () => {
  await s.stop()
})

describe('GET /sse + POST /sse/:session on one node', () => {
  test('the stream is text/event-stream; welcome first, with a session of at least 128 random bits', async () => {
    const c = await openSse(s.url, { user: 'sse-alice', name: 'Alice' })
    expect(c.res.headers.get('content-type')).toBe('text/event-stream')
    expect(c.frames[0]!.type).toBe('welcome')
    expect(c.welcome).toMatchObject({ user: { id: 'sse-alice', name: 'Alice' }, rooms: ['general'] })
    expect(c.session).toStartWith(`${c.welcome.node}.`)
    expect(Buffer.from(c.session.slice(c.session.lastIndexOf('.') + 1), 'base64url').length).toBeGreaterThanOrEqual(16)
    expect((await c.next({ type: 'joined' })).room).toBe('general')
    const other = await openSse(s.url, { user: 'sse-alice' })
    expect(other.session).not.toBe(c.session)
    // chat_connect_seconds{transport="sse"} counts the streams, not as /ws connections.
    const metrics = await (await fetch(`${s.url}/metrics`)).text()
    expect(metrics).toMatch(/^chat_connect_seconds_count\{transport="sse"\} 2$/m)
    c.close()
    other.close()
  })

  test('join, chat (ack), history over SSE; the POST answers 202 {}', async () => {
    const r = room()
    const c = await openSse(s.url, { user: 'sse-bob' })
    expect(await c.request({ type: 'join', room: r })).toMatchObject({ type: 'joined', room: r })
    const res = await c.post({ type: 'chat', room: r, body: 'hello over sse', id: 'c1' })
    expect(res.status).toBe(202)
    expect(await res.json()).toEqual({})
    const chat = await c.next({ type: 'chat', body: 'hello over sse' })
    expect(chat).toMatchObject({ room: r, from: { id: 'sse-bob' } })
    const ack = c.frames.find((f) => f.type === 'ack' && f.id === 'c1') ?? (await c.next({ type: 'ack', id: 'c1' }))
    expect(ack.seq).toBe(chat.seq)
    // Several frames in one POST, answered in order.
    expect(
      (
        await c.post([
          { type: 'chat', room: r, body: 'two', id: 'c2' },
          { type: 'chat', room: r, body: 'three', id: 'c3' },
        ])
      ).status,
    ).toBe(202)
    await c.next({ type: 'ack', id: 'c3' })
    expect(c.all('ack').map((a) => a.id)).toEqual(['c1', 'c2', 'c3'])
    const h = await c.request({ type: 'history', room: r })
    expect(h.messages.map((m: { body: string }) => m.body)).toEqual(['hello over sse', 'two', 'three'])
    c.close()
  })

  test('a /ws user and an SSE user chat both ways', async () => {
    const r = room()
    const w = await connect(s.ws, { user: 'ws-carol' })
    const e = await openSse(s.url, { user: 'sse-dave' })
    expect((await w.request({ type: 'join', room: r })).type).toBe('joined')
    expect((await e.request({ type: 'join', room: r })).type).toBe('joined')
    w.send({ type: 'chat', room: r, body: 'from ws' })
    expect(await e.next({ type: 'chat', body: 'from ws' })).toMatchObject({ from: { id: 'ws-carol' } })
    expect((await e.post({ type: 'chat', room: r, body: 'from sse' })).status).toBe(202)
    expect(await w.next({ type: 'chat', body: 'from sse' })).toMatchObject({ from: { id: 'sse-dave' } })
    // A DM to the SSE user reaches its stream (its user topic).
    expect((await w.request({ type: 'dm', to: 'sse-dave', body: 'psst' })).type).toBe('ack')
    expect(await e.next({ type: 'dm', body: 'psst' })).toMatchObject({ from: { id: 'ws-carol' } })
    w.close()
    e.close()
  })

  test('recovery: after the stream is closed and reopened, join {since, epoch} replays what was missed', async () => {
    const r = room()
    const e = await openSse(s.url, { user: 'sse-erin' })
    const joined = await e.request({ type: 'join', room: r })
    const w = await connect(s.ws, { user: 'ws-frank' })
    await w.request({ type: 'join', room: r })
    await w.request({ type: 'chat', room: r, body: 'seen' })
    const seen = await e.next({ type: 'chat', body: 'seen' })
    e.close()
    await e.ended
    for (const body of ['missed-1', 'missed-2']) await w.request({ type: 'chat', room: r, body })
    const again = await openSse(s.url, { user: 'sse-erin' })
    const back = await again.request({ type: 'join', room: r, since: seen.seq, epoch: joined.epoch })
    expect(back).toMatchObject({ type: 'joined', recovered: true })
    const replay = again.frames.filter((f) => f.type === 'chat' && f.room === r).map((f) => f.body)
    expect(replay).toEqual(['missed-1', 'missed-2'])
    w.close()
    again.close()
  })
})

describe('bad input: clear errors, nothing else affected', () => {
  test('an unknown session, an ended session: 404 {"error":"not_found"}', async () => {
    const bad = await fetch(`${s.url}/sse/nope.AAAAAAAAAAAAAAAAAAAAAA`, { method: 'POST', body: '{"type":"ping"}' })
    expect(bad.status).toBe(404)
    expect(await bad.json()).toEqual({ error: 'not_found' })
    const c = await openSse(s.url, { user: 'sse-gone' })
    const forged = await fetch(`${s.url}/sse/${c.welcome.node}.AAAAAAAAAAAAAAAAAAAAAA`, { method: 'POST', body: '{"type":"ping"}' })
    expect(forged.status).toBe(404)
    c.close()
    await c.ended
    await Bun.sleep(100)
    const ended = await c.post({ type: 'ping' })
    expect(ended.status).toBe(404)
    expect(await ended.json()).toEqual({ error: 'not_found' })
  })

  test('a huge body: 413; 101 frames: 400; not JSON: 400 bad_request; the stream goes on', async () => {
    const r = room()
    const c = await openSse(s.url, { user: 'sse-henry' })
    await c.request({ type: 'join', room: r })
    const huge = await c.post({ type: 'chat', room: r, body: 'x'.repeat(70_000) })
    expect(huge.status).toBe(413)
    expect(await huge.json()).toMatchObject({ error: 'too_large' })
    const many = await c.post(Array.from({ length: 101 }, () => ({ type: 'ping' })))
    expect(many.status).toBe(400)
    expect(await many.json()).toMatchObject({ error: 'bad_request', reason: 'body: at most 100 frames' })
    const notJson = await fetch(`${s.url}/sse/${c.session}`, { method: 'POST', body: 'hello{' })
    expect(notJson.status).toBe(400)
    expect(await notJson.json()).toEqual({ error: 'bad_request', reason: 'body: not valid JSON' })
    // A frame that is JSON but not a frame: the hub's own bad_request, on the stream.
    expect((await c.post({ type: 'nope', id: 'b1' })).status).toBe(202)
    expect(await c.next({ type: 'error', id: 'b1' })).toMatchObject({ code: 'bad_request' })
    // A room the user may not join (the room pattern refuses it): an error frame on the stream.
    expect((await c.post({ type: 'join', room: 'NOT ALLOWED!', id: 'b2' })).status).toBe(202)
    expect(await c.next({ type: 'error', id: 'b2' })).toMatchObject({ code: 'bad_request' })
    // Nothing of it lost what was accepted, and the session still works.
    expect(await c.request({ type: 'chat', room: r, body: 'still here' })).toMatchObject({ type: 'ack' })
    c.close()
  })
})
