import { afterAll, describe, expect, test } from 'bun:test'
import { connect } from '../helpers/client'
import { startServer } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { openSse } from '../helpers/sse'

const servers: RunningServer[] = []
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop('SIGKILL')))
})
async function server(env: Record<string, string>) {
  const s = await startServer({ env: { RATE_LIMIT_PER_SEC: '0', ...env } })
  servers.push(s)
  return s
}
const refusal = async (url: string) => {
  const r = await fetch(url)
  return { status: r.status, body: await r.json() }
}

describe('one door: /sse is admitted as /ws', () => {
  test('MAX_CONNECTIONS is one count for /ws and /sse; a stream that ends gives its place back', async () => {
    const s = await server({ MAX_CONNECTIONS: '2' })
    const w = await connect(s.ws, { user: 'door-a' })
    const e = await openSse(s.url, { user: 'door-b' })
    expect(await refusal(`${s.url}/sse?user=door-c`)).toEqual({ status: 429, body: { error: 'limit', reason: 'connections' } })
    const r = await fetch(`${s.url}/ws?user=door-c`, {
      headers: {
        upgrade: 'websocket',
        connection: 'Upgrade',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
        'sec-websocket-version': '13',
      },
    })
    expect(r.status).toBe(429)
    e.close()
    await e.ended
    // The place is given back once the server sees the stream gone.
    let again: Awaited<ReturnType<typeof openSse>> | undefined
    for (let i = 0; i < 50 && !again; i++) again = await openSse(s.url, { user: 'door-d' }).catch(() => Bun.sleep(50).then(() => undefined))
    expect(again?.welcome.user.id).toBe('door-d')
    again?.close()
    w.close()
  })

  test('CONNECT_RATE_PER_SEC: past it, 503 with Retry-After; a bad user: 400 before any stream', async () => {
    const s = await server({ CONNECT_RATE_PER_SEC: '2' })
    const opened = [await openSse(s.url, { user: 'rate-a' }), await openSse(s.url, { user: 'rate-b' })]
    const r = await fetch(`${s.url}/sse?user=rate-c`)
    expect(r.status).toBe(503)
    expect(r.headers.get('retry-after')).toBeString()
    expect(await r.json()).toEqual({ error: 'unavailable', reason: 'connect_rate' })
    for (const c of opened) c.close()
    await Bun.sleep(1100)
    expect(await refusal(`${s.url}/sse?user=${encodeURIComponent('bad id')}`)).toMatchObject({
      status: 400,
      body: { error: 'bad_request' },
    })
  })

  test('ALLOWED_ORIGINS: a foreign page gets 403; a token that does not verify gets 401; a room the token does not allow: forbidden on the stream', async () => {
    const s = await server({ ALLOWED_ORIGINS: 'https://chat.example', JWT_SECRET: 'sse-secret-0123456789-abcdef-xyz' })
    const foreign = await fetch(`${s.url}/sse`, { headers: { origin: 'https://evil.example' } })
    expect(foreign.status).toBe(403)
    expect(await foreign.json()).toEqual({ error: 'forbidden', reason: 'origin_not_allowed' })
    const bad = await fetch(`${s.url}/sse?token=bad`, { headers: { origin: 'https://chat.example' } })
    expect(bad.status).toBe(401)
    expect(await bad.json()).toMatchObject({ error: 'unauthorized' })
    // A token limited to some rooms: a frame for another room is refused on the stream, the rest goes on.
    const { SignJWT } = await import('jose')
    const token = await new SignJWT({ sub: 'sse-limited', rooms: ['general', 'ok-room'] })
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode('sse-secret-0123456789-abcdef-xyz'))
    const e = await openSse(s.url, {}, { authorization: `Bearer ${token}` })
    expect(e.welcome.user.id).toBe('sse-limited')
    expect((await e.post({ type: 'join', room: 'secret-room', id: 'j1' })).status).toBe(202)
    expect(await e.next({ type: 'error', id: 'j1' })).toMatchObject({ code: 'forbidden' })
    expect(await e.request({ type: 'join', room: 'ok-room' })).toMatchObject({ type: 'joined', room: 'ok-room' })
    expect(await e.request({ type: 'chat', room: 'ok-room', body: 'fine' })).toMatchObject({ type: 'ack' })
    e.close()
  })

  test('MAX_CONNECTIONS_PER_USER counts /ws and /sse together', async () => {
    const s = await server({ MAX_CONNECTIONS_PER_USER: '1' })
    const w = await connect(s.ws, { user: 'per-user' })
    expect(await refusal(`${s.url}/sse?user=per-user`)).toEqual({ status: 429, body: { error: 'limit', reason: 'connections_per_user' } })
    w.close()
  })

  test('a POST flood is rate limited as /ws frames are: rate_limited errors, then close 1008 on the stream', async () => {
    const s = await server({ RATE_LIMIT_PER_SEC: '1', RATE_LIMIT_BURST: '2' })
    const e = await openSse(s.url, { user: 'flooder' })
    expect((await e.post(Array.from({ length: 10 }, (_, i) => ({ type: 'ping', id: `f${i}` })))).status).toBe(202)
    expect(await e.next({ type: 'error', code: 'rate_limited' })).toMatchObject({ message: 'too many frames: slow down' })
    expect(await e.next({ type: 'close' })).toEqual({ type: 'close', code: 1008, reason: 'rate limit exceeded' })
    await e.ended
    let status = 0
    for (let i = 0; i < 20 && status !== 404; i++) {
      status = (await e.post({ type: 'ping' })).status
      if (status !== 404) await Bun.sleep(50)
    }
    expect(status).toBe(404)
  })

  test('drain (SIGTERM): each stream gets {"type":"close","code":1001} and then ends; the server exits 0', async () => {
    const s = await server({})
    const e = await openSse(s.url, { user: 'drain-a' })
    await e.next({ type: 'joined' })
    const code = s.stop('SIGTERM')
    const close = await e.next({ type: 'close' })
    expect(close).toEqual({ type: 'close', code: 1001, reason: 'server shutting down' })
    await e.ended
    expect(e.frames.at(-1)).toEqual(close)
    expect(await code).toBe(0)
  })
})
