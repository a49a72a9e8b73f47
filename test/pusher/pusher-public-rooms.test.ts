// Issue 32 (1): the Pusher key ships in every browser, so with auth on a public channel must not
// read a room that JWT rules protect: only the rooms PUSHER_PUBLIC_ROOMS names are public.
// Issue 32 (7): a channel or presence member named `__proto__` is a key like any other.
import { afterAll, describe, expect, test } from 'bun:test'
import { SignJWT } from 'jose'
import { loadConfig } from '../../src/config'
import { connect } from '../helpers/client'
import type { TestClient } from '../helpers/client'
import { startServer } from '../helpers/server'
import { needService } from '../helpers/services'
import type { RunningServer } from '../helpers/server'
import { authEndpoint, pusherClient, pusherEnv, rawPusher, sdk } from '../helpers/pusher'

const JWT_SECRET = 'pusher-public-rooms-secret-0123456789'
const auth = authEndpoint()
let n = 0
const uid = (what: string) => `${what}-${process.pid}-${++n}`
const token = (sub: string) =>
  new SignJWT({ name: sub }).setSubject(sub).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(JWT_SECRET))

const servers: RunningServer[] = []
afterAll(() => Promise.all(servers.map((s) => s.stop('SIGKILL'))))
async function server(env: Record<string, string>) {
  const s = await startServer({ env: { ...pusherEnv, RATE_LIMIT_PER_SEC: '0', ...env }, timeoutMs: 40_000 })
  servers.push(s)
  return s
}

/** A /ws user with a token, in `room`. */
async function member(s: RunningServer, user: string, room: string): Promise<TestClient> {
  const c = await connect(s.ws, { token: await token(user) })
  expect((await c.request({ type: 'join', room })).type).toBe('joined')
  return c
}

/** Whether pusher-js's subscription to `channel` succeeds (true) or is refused (its subscription_error data). */
const trySubscribe = (c: Awaited<ReturnType<typeof pusherClient>>, channel: string) =>
  c.subscribe(channel).then(
    () => true as const,
    (e) => e.data as { type: string; status: number },
  )

describe('pusher public channels with auth on (PUSHER_PUBLIC_ROOMS)', () => {
  test('default (none): an anonymous subscriber of team-secret gets subscription_error 403 and none of its messages', async () => {
    const s = await server({ JWT_SECRET })
    const room = uid('team-secret')
    const alice = await member(s, 'alice', room)
    const bob = await member(s, 'bob', room)

    // pusher-js with only the public key: refused as Pusher refuses (AuthError, 403).
    const anon = await pusherClient(s, auth)
    expect(await trySubscribe(anon, room)).toEqual({
      type: 'AuthError',
      status: 403,
      error: expect.stringContaining('PUSHER_PUBLIC_ROOMS'),
    } as never)
    let heard = 0
    anon.pusher.channel(room)?.bind_global(() => heard++)
    // A raw socket too: pusher:error 4009, then the subscription_error on the channel.
    const raw = await rawPusher(s)
    raw.send({ event: 'pusher:subscribe', data: { channel: room } })
    expect((await raw.next((f) => f.event === 'pusher:subscription_error')).data).toMatchObject({ status: 403 })
    expect((await raw.next((f) => f.event === 'pusher:error')).data.code).toBe(4009)
    // Nor can it write there: a client event on a channel it is not subscribed to is refused.
    raw.send({ event: 'client-spoof', channel: room, data: { body: 'spoofed' } })
    expect((await raw.next((f) => f.event === 'pusher:error' && f.data.code === 4301)).data.message).toContain('not subscribed')

    // private- channels stay the app's to authorize: both subscribe one through the auth endpoint (the fence below).
    const fence = uid('private-fence')
    const anonFence = await anon.subscribe(fence)
    const { auth: sig } = (await auth.post({ socket_id: raw.socketId, channel_name: fence })) as { auth: string }
    raw.send({ event: 'pusher:subscribe', data: { channel: fence, auth: sig } })
    await raw.next((f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === fence)

    for (let i = 0; i < 3; i++) expect((await alice.request({ type: 'chat', room, body: `secret ${i}` })).type).toBe('ack')
    await bob.next((f) => f.type === 'chat' && f.body === 'secret 2')
    // Bob has all three: this node's delivery, Pusher sockets' share included, is done. An event
    // sent after it reaches the Pusher sockets after anything of the room would have.
    const fenced = anon.next(anonFence, 'fence')
    await sdk(s).trigger(fence, 'fence', {})
    await fenced
    await raw.next((f) => f.event === 'fence')
    expect(heard).toBe(0)
    expect(raw.frames.filter((f) => f.channel === room && !String(f.event).startsWith('pusher'))).toEqual([])
    expect(bob.all('pusher')).toEqual([])
    // The refused channel was never occupied.
    expect(await (await sdk(s).get({ path: `/channels/${room}` })).json()).toEqual({ occupied: false })
    alice.close()
    bob.close()
  }, 60_000)

  test('PUSHER_PUBLIC_ROOMS=lobby,news-*: lobby and news-1 are public, team-secret, lobbyx, LOBBY and news are not', async () => {
    const s = await server({ JWT_SECRET, PUSHER_PUBLIC_ROOMS: 'lobby, news-*' })
    const anon = await pusherClient(s, auth)
    for (const refused of ['team-secret', 'lobbyx', 'LOBBY', 'news'])
      expect(await trySubscribe(anon, refused)).toMatchObject({ status: 403 })
    const lobby = await anon.subscribe('lobby')
    const news = await anon.subscribe('news-1')
    const alice = await member(s, 'alice', 'lobby')
    const got = anon.next(lobby, 'chat')
    await alice.request({ type: 'chat', room: 'lobby', body: 'hello lobby' })
    expect(await got).toMatchObject({ room: 'lobby', body: 'hello lobby', from: { id: 'alice' } })
    const headline = anon.next(news, 'headline')
    await sdk(s).trigger('news-1', 'headline', { n: 1 })
    expect(await headline).toEqual({ n: 1 })
    alice.close()
  }, 60_000)

  test('PUSHER_PUBLIC_ROOMS=* opens every room, as on Pusher', async () => {
    const s = await server({ JWT_SECRET, PUSHER_PUBLIC_ROOMS: '*' })
    const room = uid('team-secret')
    const anon = await pusherClient(s, auth)
    const ch = await anon.subscribe(room)
    const alice = await member(s, 'alice', room)
    const got = anon.next(ch, 'chat')
    await alice.request({ type: 'chat', room, body: 'open to all' })
    expect(await got).toMatchObject({ body: 'open to all' })
    alice.close()
  }, 60_000)

  test('with auth off every room is open by default', async () => {
    const s = await server({})
    const room = uid('team-secret')
    const anon = await pusherClient(s, auth)
    const ch = await anon.subscribe(room)
    const chat = await connect(s.ws, { user: 'carol' })
    await chat.request({ type: 'join', room })
    const got = anon.next(ch, 'chat')
    await chat.request({ type: 'chat', room, body: 'no auth here' })
    expect(await got).toMatchObject({ body: 'no auth here' })
    chat.close()
  }, 60_000)

  test('a bad PUSHER_PUBLIC_ROOMS is a config error naming the variable and the entry', () => {
    expect(loadConfig({ ...pusherEnv, JWT_SECRET, PUSHER_PUBLIC_ROOMS: 'lobby,news-*' }).PUSHER_PUBLIC_ROOMS).toEqual(['lobby', 'news-*'])
    expect(() => loadConfig({ ...pusherEnv, PUSHER_PUBLIC_ROOMS: 'lobby,team secret' })).toThrow(
      'PUSHER_PUBLIC_ROOMS: expected a comma list of room names and prefix* patterns (* alone: every room), not "team secret"',
    )
    expect(() => loadConfig({ ...pusherEnv, PUSHER_PUBLIC_ROOMS: 'a*b' })).toThrow('PUSHER_PUBLIC_ROOMS')
    expect(() => loadConfig({ ...pusherEnv, PUSHER_PUBLIC_ROOMS: ' , ' })).toThrow('PUSHER_PUBLIC_ROOMS')
    expect(() => loadConfig({ PUSHER_PUBLIC_ROOMS: 'lobby' })).toThrow('PUSHER_PUBLIC_ROOMS: needs PUSHER_APP_ID')
  })
})

const onRedis = await needService('Redis', 6379)
const engines = [
  { name: 'one node', env: {}, test },
  {
    name: 'Redis',
    env: { REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: `test-pusherpub-${process.pid}-${Date.now()}:` },
    test: onRedis,
  },
] as const

for (const engine of engines) {
  describe(`pusher channels and members named __proto__ (${engine.name})`, () => {
    engine.test(
      'GET /channels lists an occupied __proto__ channel; events and their info reach it',
      async () => {
        const s = await server(engine.env)
        // pusher-js keeps its channels in a plain object and cannot subscribe to __proto__: a raw socket does.
        const raw = await rawPusher(s)
        raw.send({ event: 'pusher:subscribe', data: { channel: '__proto__' } })
        await raw.next((f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === '__proto__')
        const api = sdk(s)
        const all = await (await api.get({ path: '/channels', params: { info: 'subscription_count' } })).json()
        expect(Object.keys(all.channels)).toContain('__proto__')
        expect(Object.getOwnPropertyDescriptor(all.channels, '__proto__')?.value).toEqual({ subscription_count: 1 })
        const sent = await (await api.trigger('__proto__', 'ping', { n: 1 }, { info: 'subscription_count' })).json()
        expect(Object.getOwnPropertyDescriptor(sent.channels, '__proto__')?.value).toEqual({ subscription_count: 1 })
        expect(JSON.parse((await raw.next((f) => f.event === 'ping')).data)).toEqual({ n: 1 })
      },
      60_000,
    )

    engine.test(
      'a presence member whose user_id is __proto__ is in subscription_succeeded',
      async () => {
        const s = await server(engine.env)
        const channel = uid('presence-proto')
        const raw = await rawPusher(s)
        const signed = (await auth.post({ socket_id: raw.socketId, channel_name: channel, user: '__proto__', name: 'Proto' })) as {
          auth: string
          channel_data: string
        }
        raw.send({ event: 'pusher:subscribe', data: { channel, auth: signed.auth, channel_data: signed.channel_data } })
        const ok = await raw.next((f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === channel)
        expect(ok.data.presence.ids).toEqual(['__proto__'])
        expect(ok.data.presence.count).toBe(1)
        expect(Object.getOwnPropertyDescriptor(ok.data.presence.hash, '__proto__')?.value).toEqual({ name: 'Proto' })
      },
      60_000,
    )
  })
}
