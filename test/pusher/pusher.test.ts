import { afterAll, describe, expect, test } from 'bun:test'
import { connect } from '../helpers/client'
import { startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { APP, authEndpoint, pusherClient, pusherEnv, rawPusher, sdk } from '../helpers/pusher'

let s: RunningServer
const auth = authEndpoint()
let n = 0
const uid = (what: string) => `${what}-${process.pid}-${++n}`

describe('pusher protocol on one node', () => {
  test('start', async () => {
    s = await startServer({ env: { ...pusherEnv, RATE_LIMIT_PER_SEC: '0' }, timeoutMs: 40_000 })
  }, 60_000)
  afterAll(() => s?.stop('SIGKILL'))

  test('pusher-js connects: connection_established with a socket id and activity_timeout', async () => {
    const raw = await rawPusher(s)
    expect(raw.first.event).toBe('pusher:connection_established')
    expect(raw.socketId).toMatch(/^\d+\.\d+$/)
    expect(raw.first.data.activity_timeout).toBeGreaterThan(0)
    raw.send({ event: 'pusher:ping', data: {} })
    expect((await raw.next((f) => f.event === 'pusher:pong')).event).toBe('pusher:pong')
    const c = await pusherClient(s, auth)
    expect(c.socketId).toMatch(/^\d+\.\d+$/)
    expect(c.pusher.connection.state).toBe('connected')
  })

  test('a public channel gets an event triggered with the server SDK', async () => {
    const c = await pusherClient(s, auth)
    const ch = await c.subscribe(uid('news'))
    const got = c.next(ch, 'breaking')
    await sdk(s).trigger(ch.name, 'breaking', { headline: 'hi' })
    expect(await got).toEqual({ headline: 'hi' })
  })

  test('a wrong app key is told with 4001 and closed; a request that is no upgrade gets 400', async () => {
    const raw = await rawPusher(s, 'not-the-key')
    expect(raw.first).toMatchObject({ event: 'pusher:error', data: { code: 4001 } })
    expect((await raw.closed()).code).toBe(4001)
    const res = await fetch(`${s.url}/app/${APP.key}`)
    expect(res.status).toBe(400)
    expect((await res.json()).error).toBe('bad_request')
  })

  test('an unsupported protocol version is told with 4007; over MAX_CONNECTIONS with 4100', async () => {
    const old = await rawPusher(s, APP.key, 3)
    expect(old.first).toMatchObject({ event: 'pusher:error', data: { code: 4007 } })
    expect((await old.closed()).code).toBe(4007)
    const full = await startServer({ env: { ...pusherEnv, MAX_CONNECTIONS: '1' }, timeoutMs: 40_000 })
    try {
      const first = await rawPusher(full)
      expect(first.first.event).toBe('pusher:connection_established')
      const second = await rawPusher(full)
      expect(second.first).toMatchObject({ event: 'pusher:error', data: { code: 4100 } })
      expect((await second.closed()).code).toBe(4100)
    } finally {
      await full.stop('SIGKILL')
    }
  }, 60_000)

  test('private channels: signed by the auth endpoint they subscribe; a bad signature is refused with pusher:error 4009 and subscription_error', async () => {
    const c = await pusherClient(s, auth)
    const ch = await c.subscribe(uid('private-orders'))
    const got = c.next(ch, 'paid')
    await sdk(s).trigger(ch.name, 'paid', { n: 1 })
    expect(await got).toEqual({ n: 1 })

    const forged = await pusherClient(s, auth, { forge: true })
    const err = await forged.subscribe(uid('private-orders')).catch((e) => e)
    expect(err.data).toMatchObject({ type: 'AuthError', status: 401 })

    const raw = await rawPusher(s)
    const channel = uid('private-raw')
    raw.send({ event: 'pusher:subscribe', data: { channel, auth: `${APP.key}:${'0'.repeat(64)}` } })
    expect((await raw.next((f) => f.event === 'pusher:error')).data.code).toBe(4009)
    expect((await raw.next((f) => f.event === 'pusher:subscription_error')).channel).toBe(channel)
    // Signed for another socket: refused too.
    const other = (await auth.post({ socket_id: '1.1', channel_name: channel })) as { auth: string }
    raw.send({ event: 'pusher:subscribe', data: { channel, auth: other.auth } })
    await until(() => raw.frames.filter((f) => f.event === 'pusher:subscription_error').length === 2, 'second refusal')
    // Without auth at all.
    raw.send({ event: 'pusher:subscribe', data: { channel: uid('presence-raw') } })
    expect((await raw.next((f) => f.event === 'pusher:subscription_error' && f.channel.startsWith('presence-raw'))).data.error).toContain(
      'channel_data',
    )
    expect(raw.frames.some((f) => f.event === 'pusher_internal:subscription_succeeded')).toBe(false)
  })

  test('bad subscriptions get a pusher:error naming the field', async () => {
    const raw = await rawPusher(s)
    raw.send({ event: 'pusher:subscribe', data: { channel: 'has spaces' } })
    expect((await raw.next((f) => f.event === 'pusher:error')).data.message).toContain('channel')
    raw.send({ event: 'pusher:subscribe', data: { channel: 'dm:0123456789abcdef' } })
    await until(() => raw.frames.filter((f) => f.event === 'pusher:error').length === 2, 'direct room refused')
    raw.send({ event: 'nonsense' })
    expect((await raw.next((f) => f.event === 'pusher:error' && f.data.message.includes('nonsense'))).data.message).toContain(
      'not a client event',
    )
    raw.ws.send('not json')
    expect((await raw.next((f) => f.event === 'pusher:error' && f.data.message.includes('JSON'))).data.code).toBe(null)
  })

  test('presence channels: subscription_succeeded with the members, member_added and member_removed', async () => {
    const channel = uid('presence-lobby')
    const ann = await pusherClient(s, auth, { user: 'ann', name: 'Ann' })
    const a = (await ann.subscribe(channel)) as any
    expect(a.members.count).toBe(1)
    expect(a.members.me).toMatchObject({ id: 'ann', info: { name: 'Ann' } })
    const added = ann.next(a, 'pusher:member_added')
    const bob = await pusherClient(s, auth, { user: 'bob', name: 'Bob' })
    const b = (await bob.subscribe(channel)) as any
    expect(b.members.count).toBe(2)
    const ids: string[] = []
    b.members.each((m: any) => ids.push(m.id))
    expect(ids.sort()).toEqual(['ann', 'bob'])
    expect(await added).toMatchObject({ id: 'bob', info: { name: 'Bob' } })
    const removed = ann.next(a, 'pusher:member_removed')
    bob.close()
    expect((await removed).id).toBe('bob')
    expect(a.members.count).toBe(1)
  })

  test('client events reach the other subscribers of the channel, not the sender; refused on public channels', async () => {
    const channel = uid('private-game')
    const one = await pusherClient(s, auth)
    const two = await pusherClient(s, auth)
    const c1 = await one.subscribe(channel)
    const c2 = await two.subscribe(channel)
    let echoed = 0
    c1.bind('client-move', () => echoed++)
    const got = two.next(c2, 'client-move')
    expect(c1.trigger('client-move', { x: 3 })).toBe(true)
    expect(await got).toEqual({ x: 3 })
    // The sender's own event never came back: a later event from the other side arrives first.
    const back = one.next(c1, 'client-move')
    c2.trigger('client-move', { x: 4 })
    expect(await back).toEqual({ x: 4 })
    expect(echoed).toBe(1)

    const raw = await rawPusher(s)
    const pub = uid('public-game')
    raw.send({ event: 'pusher:subscribe', data: { channel: pub } })
    await raw.next((f) => f.event === 'pusher_internal:subscription_succeeded')
    raw.send({ event: 'client-move', channel: pub, data: {} })
    const refused = await raw.next((f) => f.event === 'pusher:error')
    expect(refused.data.code).toBe(4301)
    expect(refused.data.message).toContain('private and presence')
    raw.send({ event: 'client-move', channel: uid('private-never'), data: {} })
    expect((await raw.next((f) => f.event === 'pusher:error' && f.data.message.includes('not subscribed'))).data.code).toBe(4301)
  })

  test('client events are rate-limited (4301) past 10 a second', async () => {
    const channel = uid('private-flood')
    const c = await pusherClient(s, auth)
    const ch = await c.subscribe(channel)
    const errors: any[] = []
    c.pusher.connection.bind('error', (e: any) => errors.push(e))
    for (let i = 0; i < 30; i++) ch.trigger('client-spam', { i })
    await until(() => errors.some((e) => e.data?.code === 4301), 'a 4301 error')
    expect(errors.find((e) => e.data?.code === 4301).data.message).toContain('rate limit')
  })

  test('channel info, channel list and presence users through the server SDK', async () => {
    const channel = uid('presence-info')
    const pub = uid('info-pub')
    const a = await pusherClient(s, auth, { user: 'u1' })
    const b = await pusherClient(s, auth, { user: 'u2' })
    await a.subscribe(channel)
    await b.subscribe(channel)
    await a.subscribe(pub)
    const api = sdk(s)
    const info = await (await api.get({ path: `/channels/${channel}`, params: { info: 'user_count,subscription_count' } })).json()
    expect(info).toEqual({ occupied: true, user_count: 2, subscription_count: 2 })
    const list = await (await api.get({ path: '/channels', params: { filter_by_prefix: 'presence-info', info: 'user_count' } })).json()
    expect(list.channels[channel]).toEqual({ user_count: 2 })
    expect(list.channels[pub]).toBeUndefined()
    const all = await (await api.get({ path: '/channels' })).json()
    expect(all.channels[pub]).toEqual({})
    const users = await (await api.get({ path: `/channels/${channel}/users` })).json()
    expect(users.users.map((u: any) => u.id).sort()).toEqual(['u1', 'u2'])
    const vacant = await (await api.get({ path: `/channels/${uid('nobody')}` })).json()
    expect(vacant).toEqual({ occupied: false })
    // user_count is a presence channel's only (as Pusher answers).
    const wrong = await api.get({ path: `/channels/${pub}`, params: { info: 'user_count' } }).catch((e) => e)
    expect(wrong.status).toBe(400)
    const notPresence = await api.get({ path: `/channels/${pub}/users` }).catch((e) => e)
    expect(notPresence.status).toBe(400)
  })

  test('batch events: each event to its channel', async () => {
    const c = await pusherClient(s, auth)
    const one = await c.subscribe(uid('batch-a'))
    const two = await c.subscribe(uid('batch-b'))
    const got = Promise.all([c.next(one, 'e1'), c.next(two, 'e2')])
    await sdk(s).triggerBatch([
      { channel: one.name, name: 'e1', data: { a: 1 } },
      { channel: two.name, name: 'e2', data: 'plain text' },
    ])
    expect(await got).toEqual([{ a: 1 }, 'plain text'])
    const tooMany = await sdk(s)
      .triggerBatch(Array.from({ length: 11 }, () => ({ channel: one.name, name: 'x', data: {} })))
      .catch((e) => e)
    expect(tooMany.status).toBe(400)
    expect(tooMany.body).toContain('at most 10')
  })

  test('HTTP API errors: 401 on a wrong secret or a stale auth_timestamp, 413 on data too large, 400 on a bad body, 404 on another app id', async () => {
    const wrong = await sdk(s, 'a-secret-that-is-not-it-0000')
      .trigger('x', 'e', {})
      .catch((e) => e)
    expect(wrong.status).toBe(401)
    expect(JSON.parse(wrong.body)).toMatchObject({ error: 'unauthorized', reason: expect.stringContaining('auth_signature') })
    // Signed exactly as the SDK signs, but 11 minutes ago (PUSHER_AUTH_MAX_AGE_S is 600).
    const api = sdk(s)
    const body = JSON.stringify({ name: 'e', channels: ['x'], data: '{}' })
    const real = Date.now
    Date.now = () => real() - 660_000
    let qs: string
    try {
      qs = api.createSignedQueryString({ method: 'POST', path: `/apps/${APP.appId}/events`, body })
    } finally {
      Date.now = real
    }
    const stale = await fetch(`${s.url}/apps/${APP.appId}/events?${qs}`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json' },
    })
    expect(stale.status).toBe(401)
    expect((await stale.json()).reason).toContain('auth_timestamp')
    const fresh = api.createSignedQueryString({ method: 'POST', path: `/apps/${APP.appId}/events`, body })
    expect((await fetch(`${s.url}/apps/${APP.appId}/events?${fresh}`, { method: 'POST', body })).status).toBe(200)
    // The body is not the one signed.
    const swapped = await fetch(`${s.url}/apps/${APP.appId}/events?${fresh}`, { method: 'POST', body: body.replace('"e"', '"f"') })
    expect(swapped.status).toBe(401)
    expect((await swapped.json()).reason).toContain('body_md5')
    const big = await api.trigger('x', 'e', 'y'.repeat(20_000)).catch((e) => e)
    expect(big.status).toBe(413)
    const bad = await api.post({ path: '/events', body: { name: 'e', channels: ['bad channel'], data: '{}' } as never }).catch((e) => e)
    expect(bad.status).toBe(400)
    expect(JSON.parse(bad.body).reason).toContain('channels[0]')
    const noData = await api.post({ path: '/events', body: { name: 'e', channels: ['x'] } as never }).catch((e) => e)
    expect(JSON.parse(noData.body).reason).toContain('data')
    const otherApp = new (api.constructor as any)({
      appId: 'other',
      key: APP.key,
      secret: APP.secret,
      host: '127.0.0.1',
      port: String(s.port),
      useTLS: false,
    })
    expect((await otherApp.trigger('x', 'e', {}).catch((e: any) => e)).status).toBe(404)
  })

  test('signin, a user event and terminate_connections (4009, no reconnect)', async () => {
    const user = uid('signed')
    const c = await pusherClient(s, auth, { user })
    c.pusher.signin()
    await c.pusher.user.signinDonePromise
    expect(c.pusher.user.user_data).toMatchObject({ id: user })
    const got = new Promise<any>((r) => c.pusher.user.bind('hello', r))
    await until(async () => {
      await sdk(s).sendToUser(user, 'hello', { to: user })
      return Promise.race([got.then(() => true), Bun.sleep(200).then(() => false)])
    }, 'the user event')
    expect(await got).toEqual({ to: user })
    const closed = new Promise<any>((r) => c.pusher.connection.bind('state_change', (st: any) => st.current !== 'connected' && r(st)))
    const bystander = await pusherClient(s, auth, { user: 'someone-else' })
    await sdk(s).terminateUserConnections(user)
    await closed
    await Bun.sleep(300)
    expect(c.pusher.connection.state).not.toBe('connected')
    expect(bystander.pusher.connection.state).toBe('connected')
    // A forged signin closes with 4009.
    const raw = await rawPusher(s)
    raw.send({ event: 'pusher:signin', data: { auth: `${APP.key}:${'1'.repeat(64)}`, user_data: '{"id":"x"}' } })
    expect((await raw.closed()).code).toBe(4009)
  })

  test('a chat-server client and a Pusher client in one room hear each other', async () => {
    const room = uid('private-mixed')
    const chat = await connect(s.ws, { user: 'carol', name: 'Carol' })
    expect((await chat.request({ type: 'join', room })).type).toBe('joined')
    const p = await pusherClient(s, auth)
    const ch = await p.subscribe(room)
    // chat-server -> Pusher: a `chat` event whose data is the chat frame.
    const heard = p.next(ch, 'chat')
    chat.send({ type: 'chat', room, body: 'hello pusher' })
    expect(await heard).toMatchObject({ type: 'chat', room, body: 'hello pusher', from: { id: 'carol' }, seq: expect.any(Number) })
    // Pusher client event -> chat-server: a `pusher` frame.
    ch.trigger('client-wave', { hi: 'carol' })
    expect(await chat.next({ type: 'pusher' })).toMatchObject({ type: 'pusher', room, event: 'client-wave', data: { hi: 'carol' } })
    // HTTP API event -> both.
    const both = p.next(ch, 'news')
    await sdk(s).trigger(room, 'news', { n: 7 })
    expect(await both).toEqual({ n: 7 })
    const f = await chat.next((x) => x.type === 'pusher' && x.event === 'news')
    expect(JSON.parse(f.data)).toEqual({ n: 7 })
    chat.close()
  })

  test('private-encrypted- channels: the SDK encrypts, pusher-js decrypts, the server passes the payload as it is', async () => {
    const channel = uid('private-encrypted-vault')
    const c = await pusherClient(s, auth)
    const ch = await c.subscribe(channel)
    const raw = await rawPusher(s)
    const { auth: sig } = (await auth.post({ socket_id: raw.socketId, channel_name: channel })) as { auth: string }
    raw.send({ event: 'pusher:subscribe', data: { channel, auth: sig } })
    await raw.next((f) => f.event === 'pusher_internal:subscription_succeeded')
    const got = c.next(ch, 'secret')
    await sdk(s).trigger(channel, 'secret', { code: 1234 })
    expect(await got).toEqual({ code: 1234 })
    // On the wire (and to the server) it is ciphertext: a nonce and a ciphertext, no plain text.
    const wire = await raw.next((f) => f.event === 'secret')
    const payload = JSON.parse(wire.data)
    expect(Object.keys(payload).sort()).toEqual(['ciphertext', 'nonce'])
    expect(wire.data).not.toContain('1234')
    // Client events are refused there (the server could not check what they carry).
    raw.send({ event: 'client-x', channel, data: {} })
    expect((await raw.next((f) => f.event === 'pusher:error')).data).toMatchObject({
      code: 4301,
      message: expect.stringContaining('encrypted'),
    })
  })

  test('a silent client gets pusher:ping after activity_timeout, and 4201 when it never answers', async () => {
    const idle = await startServer({ env: { ...pusherEnv, IDLE_TIMEOUT_S: '10' }, timeoutMs: 40_000 })
    try {
      const quiet = await rawPusher(idle)
      expect(quiet.first.data.activity_timeout).toBe(5)
      const answering = await rawPusher(idle)
      await answering.next((f) => f.event === 'pusher:ping', 15_000)
      answering.send({ event: 'pusher:pong', data: {} })
      await quiet.next((f) => f.event === 'pusher:ping', 15_000)
      expect((await quiet.closed()).code).toBe(4201)
      // The one that answered is still there.
      answering.send({ event: 'pusher:ping', data: {} })
      expect((await answering.next((f) => f.event === 'pusher:pong')).event).toBe('pusher:pong')
    } finally {
      await idle.stop('SIGKILL')
    }
  }, 60_000)

  test('a draining server closes Pusher sockets with 4200 (reconnect)', async () => {
    const d = await startServer({ env: pusherEnv, timeoutMs: 40_000 })
    try {
      const raw = await rawPusher(d)
      const closed = raw.closed()
      await d.stop('SIGTERM')
      expect((await closed).code).toBe(4200)
    } finally {
      await d.stop('SIGKILL')
    }
  }, 60_000)

  test('laravel-echo on pusher-js: a private channel through an authorizer', async () => {
    const { default: Echo } = await import('laravel-echo')
    const { default: Pusher } = await import('pusher-js')
    const echo = new Echo({
      broadcaster: 'pusher',
      key: APP.key,
      cluster: 'mt1',
      wsHost: '127.0.0.1',
      wsPort: s.port,
      forceTLS: false,
      enabledTransports: ['ws'],
      disableStats: true,
      Pusher,
      authorizer: (channel: { name: string }) => ({
        authorize: (socketId: string, callback: (err: unknown, data: unknown) => void) => {
          auth.post({ socket_id: socketId, channel_name: channel.name }).then(
            (d) => callback(null, d),
            (e) => callback(e, null),
          )
        },
      }),
    } as any)
    const name = uid('App.Models.User')
    const got = new Promise<any>((resolve) => echo.private(name).listen('.OrderShipped', resolve))
    await until(async () => {
      await sdk(s).trigger(`private-${name}`, 'OrderShipped', { order: 42 })
      return Promise.race([got.then(() => true), Bun.sleep(200).then(() => false)])
    }, 'the Echo event')
    expect(await got).toEqual({ order: 42 })
    echo.disconnect()
  })
})

describe('pusher webhooks and switches', () => {
  let w: RunningServer
  const hooks: { body: string; key: string | null; valid: boolean; events: any[] }[] = []
  const verifier = sdk({ port: 1 } as RunningServer)
  const receiver = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    async fetch(req) {
      const body = await req.text()
      // The server SDK's own check: X-Pusher-Key and X-Pusher-Signature (HMAC-SHA256 of the body).
      const hook = verifier.webhook({ headers: Object.fromEntries(req.headers), rawBody: body })
      hooks.push({ body, key: req.headers.get('x-pusher-key'), valid: hook.isValid(), events: hook.isValid() ? hook.getEvents() : [] })
      return new Response('ok')
    },
  })
  afterAll(() => {
    receiver.stop(true)
    return w?.stop('SIGKILL')
  })
  const events = () => hooks.flatMap((h) => h.events)

  test('start with PUSHER_WEBHOOK_URL', async () => {
    w = await startServer({
      env: {
        ...pusherEnv,
        RATE_LIMIT_PER_SEC: '0',
        WEBHOOK_BATCH_MS: '10',
        PUSHER_WEBHOOK_URL: `http://127.0.0.1:${receiver.port}/pusher`,
      },
      timeoutMs: 40_000,
    })
  }, 60_000)

  test("channel_occupied, member_added, member_removed, channel_vacated: signed, in Pusher's body", async () => {
    const channel = uid('presence-hooked')
    const c = await pusherClient(w, auth, { user: 'hook-user' })
    await c.subscribe(channel)
    await until(() => events().some((e) => e.name === 'member_added' && e.channel === channel), 'member_added')
    c.close()
    await until(() => events().some((e) => e.name === 'channel_vacated' && e.channel === channel), 'channel_vacated')
    const mine = events().filter((e) => e.channel === channel)
    expect(mine.map((e) => e.name).sort()).toEqual(['channel_occupied', 'channel_vacated', 'member_added', 'member_removed'])
    expect(mine.find((e) => e.name === 'member_added').user_id).toBe('hook-user')
    expect(hooks.every((h) => h.valid && h.key === APP.key)).toBe(true)
    const body = JSON.parse(hooks[0]!.body)
    expect(typeof body.time_ms).toBe('number')
    expect(Array.isArray(body.events)).toBe(true)
    // A forged signature is what the SDK's check would catch (the check can fail).
    expect(
      verifier.webhook({ headers: { 'x-pusher-key': APP.key, 'x-pusher-signature': '0'.repeat(64) }, rawBody: hooks[0]!.body }).isValid(),
    ).toBe(false)
  })

  test('client_event: the event, its data, socket_id and the presence member', async () => {
    const channel = uid('presence-talk')
    const a = await pusherClient(w, auth, { user: 'talker' })
    const b = await pusherClient(w, auth, { user: 'listener' })
    const ca = await a.subscribe(channel)
    await b.subscribe(channel)
    ca.trigger('client-said', { text: 'hi' })
    await until(() => events().some((e) => e.name === 'client_event' && e.channel === channel), 'client_event')
    const e = events().find((e) => e.name === 'client_event' && e.channel === channel)
    expect(e).toMatchObject({ event: 'client-said', socket_id: a.socketId, user_id: 'talker' })
    expect(JSON.parse(e.data)).toEqual({ text: 'hi' })
  })

  test('PUSHER_CLIENT_EVENTS=false refuses client events with 4301', async () => {
    const quiet = await startServer({ env: { ...pusherEnv, PUSHER_CLIENT_EVENTS: 'false' }, timeoutMs: 40_000 })
    try {
      const raw = await rawPusher(quiet)
      const channel = uid('private-quiet')
      const { auth: sig } = (await auth.post({ socket_id: raw.socketId, channel_name: channel })) as { auth: string }
      raw.send({ event: 'pusher:subscribe', data: { channel, auth: sig } })
      await raw.next((f) => f.event === 'pusher_internal:subscription_succeeded')
      raw.send({ event: 'client-x', channel, data: {} })
      const e = await raw.next((f) => f.event === 'pusher:error')
      expect(e.data).toMatchObject({ code: 4301, message: expect.stringContaining('PUSHER_CLIENT_EVENTS') })
    } finally {
      await quiet.stop('SIGKILL')
    }
  }, 60_000)
})

describe('pusher configuration', () => {
  test('one or two of the three variables is a startup error naming the missing ones', async () => {
    const { runServerOnce } = await import('../helpers/server')
    const one = await runServerOnce({ PUSHER_KEY: 'k' })
    expect(one.code).not.toBe(0)
    expect(one.stderr).toContain('PUSHER_APP_ID, PUSHER_SECRET')
    const two = await runServerOnce({ PUSHER_KEY: 'k', PUSHER_APP_ID: '1' })
    expect(two.stderr).toContain('PUSHER_SECRET: the Pusher protocol needs')
    const hook = await runServerOnce({ PUSHER_WEBHOOK_URL: 'http://127.0.0.1:1/x' })
    expect(hook.stderr).toContain('PUSHER_WEBHOOK_URL: needs')
  }, 60_000)
})
