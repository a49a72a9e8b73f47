import { afterAll, describe, expect, test } from 'bun:test'
import { connect } from '../helpers/client'
import { APP, authEndpoint, pusherClient, pusherEnv, sdk } from '../helpers/pusher'
import type { PusherClient } from '../helpers/pusher'
import { startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'

/**
 * pusher-js's HTTP fallbacks (docs/pusher.md, "HTTP fallbacks"): the real pusher-js, its
 * WebSocket pointed at a closed port and only `xhr_streaming` or `xhr_polling` enabled, does
 * all a WebSocket client does on the same hub; raw requests check the bad ones.
 */

let s: RunningServer
const auth = authEndpoint()
let n = 0
const uid = (what: string) => `${what}-${process.pid}-${++n}`

/** The transport pusher-js connected with (its connection's transport). */
const transportOf = (c: PusherClient) => (c.pusher.connection as any).connection?.transport?.name as string | undefined

/** SockJS lines of a response body: `o`, frames of `a[…]` (each parsed), `h`, `c[code,reason]`. */
function lines(body: string) {
  const out: { open: boolean; frames: any[]; heartbeat: boolean; close?: [number, string] } = { open: false, frames: [], heartbeat: false }
  for (const line of body.split('\n')) {
    if (line === 'o') out.open = true
    else if (line.startsWith('a')) for (const f of JSON.parse(line.slice(1)) as string[]) out.frames.push(JSON.parse(f))
    else if (line.startsWith('h')) out.heartbeat = true
    else if (line.startsWith('c')) out.close = JSON.parse(line.slice(1))
  }
  return out
}

/** A session driven by hand, as pusher-js's xhr_polling drives one. */
function rawSession(server: RunningServer, headers: Record<string, string> = {}, key = APP.key) {
  const base = `${server.url}/pusher/app/${key}/${Math.floor(Math.random() * 1000)}/${crypto.randomUUID().slice(0, 8)}`
  return {
    base,
    poll: async () => lines(await (await fetch(`${base}/xhr?protocol=7`, { method: 'POST', headers })).text()),
    send: (frames: unknown[], h: Record<string, string> = {}) =>
      fetch(`${base}/xhr_send`, {
        method: 'POST',
        headers: { ...headers, ...h },
        body: JSON.stringify(frames.map((f) => JSON.stringify(f))),
      }),
    sendRaw: (body: string, h: Record<string, string> = {}) =>
      fetch(`${base}/xhr_send`, { method: 'POST', headers: { ...headers, ...h }, body }),
  }
}

describe('pusher-js over HTTP', () => {
  test('start', async () => {
    s = await startServer({
      env: { ...pusherEnv, RATE_LIMIT_PER_SEC: '0', IDLE_TIMEOUT_S: '6', TRUST_PROXY: '127.0.0.1', MAX_BUFFERED_BYTES: '65536' },
      timeoutMs: 40_000,
    })
  }, 60_000)
  afterAll(() => s?.stop('SIGKILL'))

  for (const transport of ['xhr_streaming', 'xhr_polling'] as const) {
    describe(transport, () => {
      const client = (as: { user?: string; name?: string; forge?: boolean } = {}) => pusherClient(s, auth, as, transport)

      test('connects over it (the WebSocket refused) and hears a public channel, with a /ws user in the room both ways', async () => {
        const c = await client()
        expect(transportOf(c)).toBe(transport)
        expect(c.socketId).toMatch(/^\d+\.\d+$/)
        const room = uid('lobby')
        const ch = await c.subscribe(room)
        const chat = await connect(s.ws, { user: 'carol', name: 'Carol' })
        expect((await chat.request({ type: 'join', room })).type).toBe('joined')
        // /ws -> pusher-js: a `chat` event whose data is the chat frame.
        const heard = c.next(ch, 'chat')
        chat.send({ type: 'chat', room, body: `hello over ${transport}` })
        expect(await heard).toMatchObject({ type: 'chat', room, body: `hello over ${transport}`, from: { id: 'carol' } })
        // The server SDK -> both.
        const both = c.next(ch, 'news')
        await sdk(s).trigger(room, 'news', { n: 1 })
        expect(await both).toEqual({ n: 1 })
        // pusher-js -> /ws: a client event on a private channel of the same room kind.
        const priv = uid('private-mixed')
        expect((await chat.request({ type: 'join', room: priv })).type).toBe('joined')
        const pch = await c.subscribe(priv)
        pch.trigger('client-wave', { hi: 'carol' })
        expect(await chat.next((f) => f.type === 'pusher' && f.event === 'client-wave')).toMatchObject({
          type: 'pusher',
          room: priv,
          event: 'client-wave',
          data: { hi: 'carol' },
        })
        chat.close()
      })

      test('private channels: signed by the auth endpoint; a forged signature refused with subscription_error 401', async () => {
        const c = await client()
        const ch = await c.subscribe(uid('private-orders'))
        const got = c.next(ch, 'paid')
        await sdk(s).trigger(ch.name, 'paid', { n: 2 })
        expect(await got).toEqual({ n: 2 })
        const forged = await client({ forge: true })
        const err = await forged.subscribe(uid('private-orders')).catch((e) => e)
        expect(err.data).toMatchObject({ type: 'AuthError', status: 401 })
      })

      test('presence: members, member_added, and member_removed once the other client disconnects', async () => {
        const channel = uid('presence-lobby')
        const ann = await client({ user: 'ann', name: 'Ann' })
        const a = (await ann.subscribe(channel)) as any
        expect(a.members.count).toBe(1)
        const added = ann.next(a, 'pusher:member_added')
        const bob = await client({ user: 'bob', name: 'Bob' })
        const b = (await bob.subscribe(channel)) as any
        expect(b.members.count).toBe(2)
        expect(await added).toMatchObject({ id: 'bob', info: { name: 'Bob' } })
        const removed = ann.next(a, 'pusher:member_removed', 10_000)
        bob.close()
        expect((await removed).id).toBe('bob')
        expect(a.members.count).toBe(1)
      })

      test('client events reach the other subscriber, not the sender', async () => {
        const channel = uid('private-game')
        const one = await client()
        const two = await client()
        const c1 = await one.subscribe(channel)
        const c2 = await two.subscribe(channel)
        let echoed = 0
        c1.bind('client-move', () => echoed++)
        const got = two.next(c2, 'client-move')
        c1.trigger('client-move', { x: 3 })
        expect(await got).toEqual({ x: 3 })
        const back = one.next(c1, 'client-move')
        c2.trigger('client-move', { x: 4 })
        expect(await back).toEqual({ x: 4 })
        expect(echoed).toBe(1)
      })

      test('signin, then an event to the user from the server SDK', async () => {
        const user = uid('signed')
        const c = await client({ user })
        c.pusher.signin()
        await c.pusher.user.signinDonePromise
        expect(c.pusher.user.user_data).toMatchObject({ id: user })
        const got = new Promise<any>((r) => c.pusher.user.bind('hello', r))
        await until(async () => {
          await sdk(s).sendToUser(user, 'hello', { to: user })
          return Promise.race([got.then(() => true), Bun.sleep(300).then(() => false)])
        }, 'the user event')
        expect(await got).toEqual({ to: user })
      })
    })
  }

  test("a stream past pusher-js's 256 KiB buffer is renewed on the same session: no second `o`, nothing lost", async () => {
    const c = await pusherClient(s, auth, {}, 'xhr_streaming')
    const id = c.socketId
    const ch = await c.subscribe(uid('bulk'))
    const got: number[] = []
    ch.bind('bulk', (d: { i: number }) => got.push(d.i))
    // 40 events of ~9 KB: past 256 KiB on one response, which pusher-js then renews.
    for (let i = 0; i < 40; i++) await sdk(s).trigger(ch.name, 'bulk', { i, pad: 'p'.repeat(9000) })
    await until(() => got.length === 40, 'every event', 15_000)
    expect(got).toEqual([...Array(40).keys()])
    expect(c.pusher.connection.state).toBe('connected')
    expect(c.pusher.connection.socket_id).toBe(id)
  })

  test('the one door: an HTTP session counts in MAX_CONNECTIONS with /ws (429) and is refused with 4100; chat_connect_seconds{transport="pusher"}; drain closes it with 4200', async () => {
    const full = await startServer({ env: { ...pusherEnv, MAX_CONNECTIONS: '1' }, timeoutMs: 40_000 })
    try {
      const first = rawSession(full)
      expect((await first.poll()).frames[0].event).toBe('pusher:connection_established')
      const ws = await fetch(`${full.url}/ws`, {
        headers: {
          upgrade: 'websocket',
          connection: 'upgrade',
          'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
          'sec-websocket-version': '13',
        },
      })
      expect(ws.status).toBe(429)
      const second = await rawSession(full).poll()
      expect(second.frames[0]).toMatchObject({ event: 'pusher:error', data: { code: 4100 } })
      expect(second.close?.[0]).toBe(4100)
      const metrics = await (await fetch(`${full.url}/metrics`)).text()
      expect(metrics).toMatch(/chat_connect_seconds_count\{transport="pusher"\} 1\b/)
      expect(metrics).toMatch(/chat_connections 1\b/)
      // Draining: the held poll is answered with the close 4200 (pusher-js reconnects, to another node).
      const held = first.poll()
      await Bun.sleep(200)
      await full.stop('SIGTERM')
      expect((await held).close?.[0]).toBe(4200)
    } finally {
      await full.stop('SIGKILL')
    }
  }, 60_000)

  test('a raw session: `o` and connection_established on the first poll, frames by xhr_send, answers on the next poll', async () => {
    const r = rawSession(s)
    const first = await r.poll()
    expect(first.open).toBe(true)
    expect(first.frames[0].event).toBe('pusher:connection_established')
    const channel = uid('raw')
    expect((await r.send([{ event: 'pusher:subscribe', data: { channel } }])).status).toBe(204)
    const next = await r.poll()
    expect(next.open).toBe(false)
    expect(next.frames).toContainEqual(expect.objectContaining({ event: 'pusher_internal:subscription_succeeded', channel }))
    // A wrong app key: Pusher's error and close code, in the session's lines.
    const bad = await rawSession(s, {}, 'not-the-key').poll()
    expect(bad.frames[0]).toMatchObject({ event: 'pusher:error', data: { code: 4001 } })
    expect(bad.close?.[0]).toBe(4001)
  })

  test('xhr_send: unknown session 404, huge body 413, not JSON 400, not an array of strings 400, each a JSON body', async () => {
    const unknown = await rawSession(s).send([{ event: 'pusher:ping', data: {} }])
    expect(unknown.status).toBe(404)
    expect((await unknown.json()).error).toBe('not_found')
    const r = rawSession(s)
    await r.poll()
    const huge = await r.sendRaw(JSON.stringify(['x'.repeat(300_000)]))
    expect(huge.status).toBe(413)
    expect(await huge.json()).toMatchObject({ error: 'too_large' })
    const notJson = await r.sendRaw('{nope')
    expect(notJson.status).toBe(400)
    expect((await notJson.json()).reason).toContain('not valid JSON')
    const notStrings = await r.sendRaw('[{"event":"pusher:ping"}]')
    expect(notStrings.status).toBe(400)
    expect((await notStrings.json()).reason).toContain('each a JSON string')
    const badId = await fetch(`${s.url}/pusher/app/${APP.key}/1/${'x'.repeat(65)}/xhr`, { method: 'POST' })
    expect(badId.status).toBe(400)
    expect((await badId.json()).error).toBe('bad_request')
  })

  test('a session is bound to the address that opened it: another address gets 404 on xhr_send and on a poll', async () => {
    const r = rawSession(s, { 'x-forwarded-for': '203.0.113.7' })
    expect((await r.poll()).open).toBe(true)
    const other = await r.send([{ event: 'pusher:ping', data: {} }], { 'x-forwarded-for': '198.51.100.9' })
    expect(other.status).toBe(404)
    const steal = await fetch(`${r.base}/xhr`, { method: 'POST', headers: { 'x-forwarded-for': '198.51.100.9' } })
    expect(steal.status).toBe(404)
    expect((await r.send([{ event: 'pusher:ping', data: {} }])).status).toBe(204)
    expect((await r.poll()).frames).toContainEqual(expect.objectContaining({ event: 'pusher:pong' }))
  })

  test('a session that stops polling is released (its channel vacated); a later poll of its id is a new session', async () => {
    const r = rawSession(s)
    const id = (await r.poll()).frames[0].data
    const channel = uid('idle')
    await r.send([{ event: 'pusher:subscribe', data: { channel } }])
    await r.poll()
    const occupied = async () => (await (await sdk(s).get({ path: `/channels/${channel}` })).json()).occupied as boolean
    expect(await occupied()).toBe(true)
    // IDLE_TIMEOUT_S=6: no request for 3 s ends it.
    await until(async () => !(await occupied()), 'the idle session released', 10_000)
    // pusher-js takes a second `o` as "Server lost session" and connects anew.
    const again = await r.poll()
    expect(again.open).toBe(true)
    expect(again.frames[0].data).not.toBe(id)
  })

  test('a slow consumer: queued frames past MAX_BUFFERED_BYTES close the session with 4100, told on its next poll', async () => {
    const r = rawSession(s)
    await r.poll()
    const channel = uid('flood')
    await r.send([{ event: 'pusher:subscribe', data: { channel } }])
    await r.poll()
    // Not polling now: 10 events of ~9 KB each pass MAX_BUFFERED_BYTES=65536.
    for (let i = 0; i < 10; i++) await sdk(s).trigger(channel, 'big', { i, pad: 'p'.repeat(9000) })
    await Bun.sleep(200)
    const told = await r.poll()
    expect(told.close?.[0]).toBe(4100)
    expect(told.close?.[1]).toContain('slow consumer')
    expect(told.frames.filter((f) => f.event === 'big').length).toBeLessThan(10)
  })

  test('a page on another origin: the preflight and answers allow it (ALLOWED_ORIGINS unset)', async () => {
    const r = rawSession(s)
    const pre = await fetch(`${r.base}/xhr_send`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
    })
    expect(pre.status).toBe(204)
    expect(pre.headers.get('access-control-allow-origin')).toBe('https://app.example')
    expect(pre.headers.get('access-control-allow-headers')).toBe('content-type')
    const res = await fetch(`${r.base}/xhr`, { method: 'POST', headers: { origin: 'https://app.example' } })
    expect(res.headers.get('access-control-allow-origin')).toBe('https://app.example')
  })
})
