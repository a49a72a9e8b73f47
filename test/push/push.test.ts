import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from 'bun:test'
import { randomBytes } from 'node:crypto'
import Redis from 'ioredis'
import { ChatClient } from '../../client/src/index'
import { testNodes } from '../helpers/nodes'
import { pushReceivers, until } from '../helpers/push-receivers'
import type { RunningServer } from '../helpers/server'
import { dropRedisPrefix, needService } from '../helpers/services'
import { webhookReceiver } from '../helpers/webhook-receiver'
import { freshDatabase } from '../helpers/postgres'

/**
 * Push notifications end to end: a real server process, and loopback receivers that check
 * what Web Push (VAPID signature, RFC 8291 decryption with the subscription's keys), FCM
 * (OAuth token from the service account's signed JWT) and APNs (HTTP/2 over TLS, ES256
 * provider token, apns-* headers) check.
 */

// Servers start slowly on a loaded machine; nothing here asserts a duration.
setDefaultTimeout(30_000)

const API_KEY = 'push-test-api-key-0123456789abcdef'
const { node, api, as, uid, tag } = testNodes(API_KEY)
const rx = await pushReceivers()
const hooks = webhookReceiver()
const SECRET = 'push-test-webhook-secret-0123456789'
afterAll(async () => {
  await rx.stop()
  hooks.stop()
})

const hex = () => randomBytes(32).toString('hex')
/** Makes `user` a member of `room` (named USER, as the test client connects). */
const member = async (s: RunningServer, room: string, user: string) =>
  expect((await api(s, 'PUT', `/rooms/${room}/members/${user}`, { name: user.toUpperCase() })).status).toBe(200)
/** One device per provider; returns their addresses. */
async function devices(s: RunningServer, user: string) {
  const sub = rx.wp.subscribe(`${user}-web`)
  const fcm = `fcm-${user}`
  const apns = hex()
  for (const [id, body] of [
    ['web', { kind: 'webpush', subscription: sub }],
    ['android', { kind: 'fcm', token: fcm }],
    ['iphone', { kind: 'apns', token: apns }],
  ] as const) {
    const res = await api(s, 'PUT', `/users/${user}/devices/${id}`, body)
    expect(res.status).toBe(201)
  }
  return { web: `${user}-web`, fcm, apns }
}
type Addr = Awaited<ReturnType<typeof devices>>
const webOf = (a: Addr) => rx.wp.received.filter((r) => r.sub === a.web)
const fcmOf = (a: Addr) => rx.fcm.received.filter((r) => r.message.token === a.fcm)
const apnsOf = (a: Addr) => rx.apns.received.filter((r) => r.token === a.apns)
const pushesOf = (a: Addr) => webOf(a).length + fcmOf(a).length + apnsOf(a).length
/** Every provider has pushed `n` times to the user's devices. */
const pushedAll = (a: Addr, n = 1) =>
  until(`${n} push(es) on each device`, () => webOf(a).length >= n && fcmOf(a).length >= n && apnsOf(a).length >= n)

describe('push on one node (memory engine)', () => {
  let s: RunningServer
  beforeAll(async () => {
    s = await node({
      ...rx.env,
      PUSH_COALESCE_MS: '300',
      PUSH_MAX_DEVICES: '3',
      WEBHOOK_URL: hooks.url,
      WEBHOOK_SECRET: SECRET,
      WEBHOOK_EVENTS: 'push.failed',
    })
  })

  test('an offline member is pushed on each provider: decrypted, signed, with the badge and the message', async () => {
    const room = uid('room')
    const [alice, bob] = [uid('alice'), uid('bob')]
    await member(s, room, alice)
    await member(s, room, bob)
    const bobs = await devices(s, bob)
    const a = await as(s, alice)
    const ack = await a.request({ type: 'chat', room, body: `hello @${bob}` })
    expect(ack.type).toBe('ack')
    await pushedAll(bobs)
    const web = webOf(bobs)[0]!
    expect(web.payload.title).toBe(`${alice.toUpperCase()} in ${room}`)
    expect(web.payload.body).toBe(`hello @${bob}`)
    expect(web.payload.badge).toBe(1)
    expect(web.payload.data).toMatchObject({ room, msg: ack.msg, seq: String(ack.seq), from: alice, count: '1' })
    expect(web.topic).toMatch(/^[A-Za-z0-9_-]{1,32}$/)
    const fcm = fcmOf(bobs)[0]!.message
    expect(fcm.notification.body).toBe(`hello @${bob}`)
    expect(fcm.data).toMatchObject({ room, msg: ack.msg, seq: String(ack.seq) })
    expect(fcm.android.collapse_key).toBe(web.topic!)
    expect(fcm.android.notification.notification_count).toBe(1)
    const ios = apnsOf(bobs)[0]!
    expect(ios.headers['apns-collapse-id']).toBe(web.topic!)
    expect(ios.headers['apns-priority']).toBe('10')
    expect(ios.body.aps).toMatchObject({ alert: { title: `${alice.toUpperCase()} in ${room}`, body: `hello @${bob}` }, badge: 1 })
    expect(ios.body).toMatchObject({ room, msg: ack.msg, seq: String(ack.seq) })
    // The sender has no device here, and is never pushed its own message.
    expect(rx.problems()).toEqual([])
    expect(rx.fcm.exchanges()).toBe(1)
    a.close()
  })

  test('an online member, a muted room (notify none) and a blocked sender get no push; the others do', async () => {
    const room = uid('room')
    const [alice, dave, carol, erin, frank] = ['alice', 'dave', 'carol', 'erin', 'frank'].map(uid) as [
      string,
      string,
      string,
      string,
      string,
    ]
    for (const u of [alice, dave, carol, erin, frank]) await member(s, room, u)
    const [d, c, e, f] = (await Promise.all([dave, carol, erin, frank].map((u) => devices(s, u)))) as [Addr, Addr, Addr, Addr]
    const carolConn = await as(s, carol)
    const erinConn = await as(s, erin)
    expect((await erinConn.request({ type: 'notify', room, level: 'none' })).type).toBe('ack')
    erinConn.close()
    const frankConn = await as(s, frank)
    expect((await frankConn.request({ type: 'block', user: alice })).type).toBe('ack')
    frankConn.close()
    await Promise.all([erinConn.closed, frankConn.closed])
    const a = await as(s, alice)
    await a.request({ type: 'chat', room, body: 'one' })
    await pushedAll(d)
    // A second window: once it reached dave, the first window's decisions are all out.
    await a.request({ type: 'chat', room, body: 'two' })
    await pushedAll(d, 2)
    await until(
      'the second push to every device of dave',
      () => webOf(d).at(-1)?.payload.body === 'two' && fcmOf(d).at(-1)?.message.notification.body === 'two',
    )
    expect(pushesOf(c)).toBe(0)
    expect(pushesOf(e)).toBe(0)
    expect(pushesOf(f)).toBe(0)
    expect(webOf(d).map((p) => p.payload.badge)).toEqual([1, 2])
    carolConn.close()
    a.close()
  })

  test('notify mentions: pushed only for a message that names the user (@id or @name)', async () => {
    const room = uid('room')
    const [alice, mia] = [uid('alice'), uid('mia')]
    await member(s, room, alice)
    await member(s, room, mia)
    const m = await devices(s, mia)
    const conn = await as(s, mia)
    expect((await conn.request({ type: 'notify', room, level: 'mentions' })).type).toBe('ack')
    conn.close()
    await conn.closed
    const a = await as(s, alice)
    await a.request({ type: 'chat', room, body: 'nobody in particular' })
    await a.request({ type: 'chat', room, body: `mail@${mia} is no mention either` })
    await Bun.sleep(400) // the first window closes without a push to mia
    await a.request({ type: 'chat', room, body: `ping @${mia.toUpperCase()}!` })
    await pushedAll(m)
    expect(webOf(m).map((p) => p.payload.body)).toEqual([`ping @${mia.toUpperCase()}!`])
    a.close()
  })

  test('a dm from a blocked user is refused (forbidden); blocks are listed; unblocked, the dm goes and pushes', async () => {
    const [alice, frank] = [uid('alice'), uid('frank')]
    const f = await as(s, frank)
    expect((await f.request({ type: 'block', user: alice })).type).toBe('ack')
    expect(await f.request({ type: 'block', user: frank })).toMatchObject({
      type: 'error',
      code: 'bad_request',
      message: 'user: you cannot block yourself',
    })
    f.close()
    await f.closed
    const fd = await devices(s, frank)
    const a = await as(s, alice)
    const refused = await a.request({ type: 'dm', to: frank, body: 'hi' })
    expect(refused).toMatchObject({ type: 'error', code: 'forbidden' })
    expect(refused.message).toStartWith('to:')
    const listed = await (await api(s, 'GET', `/users/${frank}/blocks`)).json()
    expect(listed).toEqual({ user: frank, blocks: [alice] })
    // Nothing of the refused dm is anywhere: frank has no conversation with alice.
    const rooms = await (await api(s, 'GET', `/users/${frank}/rooms`)).json()
    expect(rooms.rooms.filter((r: { kind: string }) => r.kind === 'direct')).toEqual([])
    const f2 = await as(s, frank)
    expect((await f2.request({ type: 'unblock', user: alice })).type).toBe('ack')
    f2.close()
    await f2.closed
    expect((await a.request({ type: 'dm', to: frank, body: 'hi again' })).type).toBe('ack')
    await pushedAll(fd)
    expect(webOf(fd)[0]!.payload).toMatchObject({ title: alice.toUpperCase(), body: 'hi again', badge: 1 })
    expect(webOf(fd)[0]!.payload.data.type).toBe('dm')
    a.close()
  })

  test('a device the provider says is gone (410, FCM UNREGISTERED, APNs BadDeviceToken) is removed and reported', async () => {
    const room = uid('room')
    const [alice, gina] = [uid('alice'), uid('gina')]
    await member(s, room, alice)
    await member(s, room, gina)
    const g = await devices(s, gina)
    rx.wp.status.set(g.web, 410)
    rx.fcm.gone.add(g.fcm)
    rx.apns.bad.add(g.apns)
    const a = await as(s, alice)
    await a.request({ type: 'chat', room, body: 'anyone?' })
    await until('every device of gina removed', async () =>
      (await (await api(s, 'GET', `/users/${gina}/devices`)).json()).devices.length === 0 ? true : undefined,
    )
    const failed = await until('three push.failed events', () => {
      const evs = hooks.received.flatMap((r) => r.events).filter((e) => e.type === 'push.failed' && e.user?.id === gina)
      return evs.length >= 3 ? evs : undefined
    })
    expect(failed.map((e) => e.provider).sort()).toEqual(['apns', 'fcm', 'webpush'])
    expect(failed.map((e) => e.device).sort()).toEqual(['android', 'iphone', 'web'])
    expect(failed.find((e) => e.provider === 'fcm')!.reason).toContain('UNREGISTERED')
    expect(failed.find((e) => e.provider === 'apns')!.reason).toContain('BadDeviceToken')
    const metrics = await (await fetch(`${s.url}/metrics`)).text()
    for (const p of ['webpush', 'fcm', 'apns']) expect(metrics).toContain(`chat_push_sent_total{provider="${p}",result="gone"}`)
    a.close()
  })

  test('a burst of 20 messages becomes one push per device (the newest, with the count)', async () => {
    const room = uid('room')
    const [alice, hank] = [uid('alice'), uid('hank')]
    await member(s, room, alice)
    await member(s, room, hank)
    const h = await devices(s, hank)
    const a = await as(s, alice)
    const acks = await Promise.all(Array.from({ length: 20 }, (_, i) => a.request({ type: 'chat', room, body: `burst ${i + 1}` })))
    await pushedAll(h)
    // The window closed with that push: one more message is a window (and a push) of its own.
    await a.request({ type: 'chat', room, body: 'after' })
    await pushedAll(h, 2)
    expect(webOf(h).map((p) => p.payload.data.count)).toEqual(['20', '1'])
    expect(webOf(h)[0]!.payload.body).toBe('burst 20 (+19 more)')
    expect(webOf(h)[0]!.payload.data.msg).toBe(acks.at(-1)!.msg)
    expect(fcmOf(h).length).toBe(2)
    expect(apnsOf(h).length).toBe(2)
    a.close()
  })

  test('a receiver that is down, then up, gets the push once', async () => {
    const room = uid('room')
    const [alice, ivan] = [uid('alice'), uid('ivan')]
    await member(s, room, alice)
    await member(s, room, ivan)
    const sub = rx.wp.subscribe(`${ivan}-web`)
    expect((await api(s, 'PUT', `/users/${ivan}/devices/web`, { kind: 'webpush', subscription: sub })).status).toBe(201)
    const retried = async () =>
      Number(
        /chat_push_sent_total\{provider="webpush",result="retry"\} (\d+)/.exec(await (await fetch(`${s.url}/metrics`)).text())?.[1] ?? 0,
      )
    const before = await retried()
    rx.wp.down()
    const a = await as(s, alice)
    const first = await a.request({ type: 'chat', room, body: 'while down' })
    await until('a failed attempt, to be retried', async () => (await retried()) > before)
    rx.wp.up()
    await until('the push after the receiver came back', () => rx.wp.received.some((r) => r.sub === `${ivan}-web`))
    await a.request({ type: 'chat', room, body: 'barrier' })
    await until('the barrier push', () => rx.wp.received.some((r) => r.sub === `${ivan}-web` && r.payload.body === 'barrier'))
    expect(rx.wp.received.filter((r) => r.sub === `${ivan}-web` && r.payload.data.msg === first.msg).length).toBe(1)
    a.close()
  })

  test('the typed client: registerDevice, notify, block, unblock, removeDevice', async () => {
    const [alice, lea] = [uid('alice'), uid('lea')]
    const room = uid('room')
    await member(s, room, lea)
    const c = new ChatClient({ url: s.ws, user: lea })
    void c.connect()
    await until('client open', () => c.state === 'open')
    const sub = rx.wp.subscribe(`${lea}-web`)
    await c.registerDevice('web', { kind: 'webpush', subscription: sub })
    await c.registerDevice('phone', { kind: 'apns', token: hex() })
    await c.notify(room, 'mentions')
    await c.block(alice)
    expect((await (await api(s, 'GET', `/users/${lea}/blocks`)).json()).blocks).toEqual([alice])
    await c.unblock(alice)
    await c.removeDevice('phone')
    const listed = (await (await api(s, 'GET', `/users/${lea}/devices`)).json()).devices
    expect(listed.map((d: { device: string; subscription?: { endpoint: string } }) => [d.device, d.subscription?.endpoint])).toEqual([
      ['web', sub.endpoint],
    ])
    expect((await (await api(s, 'GET', `/users/${lea}/blocks`)).json()).blocks).toEqual([])
    await expect(c.registerDevice('x', { kind: 'fcm', token: 'bad token!' })).rejects.toThrow('token: must be an FCM registration token')
    c.close()
  })

  test('bad device input is refused, naming the field; the device limit answers limit', async () => {
    const user = uid('kim')
    const c = await as(s, user)
    const cases: [Record<string, unknown>, string][] = [
      [
        {
          device: 'web',
          kind: 'webpush',
          subscription: { endpoint: 'http://127.0.0.1:1/x', keys: { p256dh: 'abc', auth: randomBytes(16).toString('base64url') } },
        },
        'subscription.keys.p256dh: must be the P-256 public key',
      ],
      [
        { device: 'web', kind: 'webpush', subscription: { endpoint: 'not a url', keys: rx.wp.subscribe('x').keys } },
        'subscription.endpoint: must be an https:// URL',
      ],
      [
        { device: 'web', kind: 'webpush', subscription: { endpoint: 'http://10.0.0.1/x', keys: rx.wp.subscribe('y').keys } },
        'subscription.endpoint: 10.0.0.1 is a private address',
      ],
      [{ device: 'web', kind: 'webpush' }, 'subscription: is required for kind webpush'],
      [{ device: 'a', kind: 'fcm' }, 'token: is required for kind fcm'],
      [{ device: 'a', kind: 'apns', token: 'not-hex' }, 'token: must be an APNs device token'],
      [{ device: 'a', kind: 'sms', token: 'x' }, 'kind: must be webpush, fcm or apns'],
      [{ device: 'a b', kind: 'fcm', token: 'x' }, 'device: must be 1..128'],
      [{ device: 'a' }, 'kind: is required'],
    ]
    for (const [frame, message] of cases) {
      const r = await c.request({ type: 'device', ...frame })
      expect(r).toMatchObject({ type: 'error', code: 'bad_request' })
      expect(r.message).toStartWith(message)
    }
    const bad = await api(s, 'PUT', `/users/${user}/devices/a`, { kind: 'apns', token: 'zz' })
    expect(bad.status).toBe(400)
    expect((await bad.json()).reason).toContain('token')
    for (const id of ['d1', 'd2', 'd3'])
      expect((await c.request({ type: 'device', device: id, kind: 'fcm', token: `t-${id}` })).type).toBe('ack')
    expect((await c.request({ type: 'device', device: 'd1', kind: 'fcm', token: 'replaced' })).type).toBe('ack')
    expect(await c.request({ type: 'device', device: 'd4', kind: 'fcm', token: 't4' })).toMatchObject({ type: 'error', code: 'limit' })
    expect((await api(s, 'PUT', `/users/${user}/devices/d4`, { kind: 'fcm', token: 't4' })).status).toBe(409)
    expect((await c.request({ type: 'device', device: 'd2', remove: true })).type).toBe('ack')
    const listed = (await (await api(s, 'GET', `/users/${user}/devices`)).json()).devices
    expect(listed.map((d: { device: string; token: string }) => [d.device, d.token])).toEqual([
      ['d1', 'replaced'],
      ['d3', 't-d3'],
    ])
    expect((await api(s, 'DELETE', `/users/${user}/devices/d3`)).status).toBe(200)
    expect((await api(s, 'DELETE', `/users/${user}/devices/d3`)).status).toBe(404)
    expect(await c.request({ type: 'notify', room: uid('room'), level: 'none' })).toMatchObject({ type: 'error', code: 'forbidden' })
    expect(await c.request({ type: 'notify', room: 'r', level: 'loud' })).toMatchObject({
      type: 'error',
      code: 'bad_request',
      message: 'level: must be all, mentions or none',
    })
    c.close()
  })
})

describe('push across three nodes through Redis', async () => {
  const redisTest = await needService('Redis', 6379)
  const prefix = `push-test-${tag}:`
  let nodes: RunningServer[] = []
  const redis = new Redis('redis://127.0.0.1:6379', { lazyConnect: true })
  afterAll(async () => {
    redis.disconnect()
    await dropRedisPrefix(prefix)
  })

  redisTest(
    'a user online on another node is not pushed; blocks hold cluster-wide',
    async () => {
      nodes = await Promise.all(
        [0, 1, 2].map(() => node({ ...rx.env, PUSH_COALESCE_MS: '300', REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: prefix })),
      )
      const [A, B, C] = nodes as [RunningServer, RunningServer, RunningServer]
      const room = uid('room')
      const [alice, bob, dave, frank] = ['alice', 'bob', 'dave', 'frank'].map(uid) as [string, string, string, string]
      for (const u of [alice, bob, dave, frank]) await member(A, room, u)
      const [b, d, f] = (await Promise.all([bob, dave, frank].map((u) => devices(B, u)))) as [Addr, Addr, Addr]
      const bobConn = await as(B, bob)
      const fc = await as(C, frank)
      expect((await fc.request({ type: 'block', user: alice })).type).toBe('ack')
      fc.close()
      await fc.closed
      // bob's connection on B counts cluster-wide once B's liveness write is in Redis.
      await until('bob online in Redis', async () => (await redis.hexists(`${prefix}{u}:l:live:n`, bob)) === 1)
      const a = await as(A, alice)
      expect(await a.request({ type: 'dm', to: frank, body: 'hi' })).toMatchObject({ type: 'error', code: 'forbidden' })
      await a.request({ type: 'chat', room, body: 'cluster one' })
      await pushedAll(d)
      await a.request({ type: 'chat', room, body: 'cluster two' })
      await pushedAll(d, 2)
      expect(pushesOf(b)).toBe(0)
      expect(pushesOf(f)).toBe(0)
      // bob goes offline: now he is pushed, by whichever node took the job from the stream.
      bobConn.close()
      await bobConn.closed
      await until('bob offline in Redis', async () => (await redis.hexists(`${prefix}{u}:l:live:n`, bob)) === 0)
      await a.request({ type: 'chat', room, body: 'cluster three' })
      await pushedAll(b)
      expect(webOf(b)[0]!.payload.body).toBe('cluster three')
      a.close()
    },
    60_000,
  )
})

describe('push settings', () => {
  test('a partial provider set, a malformed key or an unreadable file stops startup naming the variable', async () => {
    const { ConfigError, loadConfig } = await import('../../src/config')
    const lines = (env: Record<string, string>) => {
      try {
        loadConfig(env)
        return []
      } catch (err) {
        return (err as InstanceType<typeof ConfigError>).lines
      }
    }
    expect(lines({ PUSH_VAPID_PUBLIC_KEY: rx.wp.vapid.publicKey })).toEqual([
      'PUSH_VAPID_PRIVATE_KEY, PUSH_VAPID_SUBJECT: Web Push needs PUSH_VAPID_PUBLIC_KEY, PUSH_VAPID_PRIVATE_KEY and PUSH_VAPID_SUBJECT together',
    ])
    expect(lines({ PUSH_APNS_KEY_FILE: '/x.p8', PUSH_APNS_KEY_ID: 'ABC123DEFG' })[0]).toStartWith(
      'PUSH_APNS_TEAM_ID, PUSH_APNS_TOPIC: APNs needs',
    )
    expect(
      lines({ PUSH_VAPID_PUBLIC_KEY: 'short', PUSH_VAPID_PRIVATE_KEY: rx.wp.vapid.privateKey, PUSH_VAPID_SUBJECT: 'mailto:a@b' })[0],
    ).toStartWith('PUSH_VAPID_PUBLIC_KEY: expected the base64url public key')
    const { providersOf } = await import('../../src/push')
    expect(() => providersOf(loadConfig({ PUSH_FCM_CREDENTIALS_FILE: '/nonexistent/fcm.json' }))).toThrow(
      'PUSH_FCM_CREDENTIALS_FILE: cannot read /nonexistent/fcm.json',
    )
    const started = await node({ PUSH_FCM_CREDENTIALS_FILE: '/nonexistent/fcm.json' }).catch((err: Error) => err.message)
    expect(String(started)).toContain('config error: PUSH_FCM_CREDENTIALS_FILE: cannot read /nonexistent/fcm.json')
    // No provider variables: no provider, push stays off.
    expect(providersOf(loadConfig({})).length).toBe(0)
  })

  test('without a provider, devices are unavailable; blocks still work', async () => {
    const s = await node({})
    const user = uid('nop')
    const c = await as(s, user)
    expect(await c.request({ type: 'device', device: 'a', kind: 'fcm', token: 't' })).toMatchObject({ type: 'error', code: 'unavailable' })
    expect((await c.request({ type: 'block', user: 'someone' })).type).toBe('ack')
    expect((await (await api(s, 'GET', `/users/${user}/blocks`)).json()).blocks).toEqual(['someone'])
    c.close()
  })
})

describe('push with PostgreSQL memberships', async () => {
  const pgTest = await needService('PostgreSQL', 5432)
  let db: Awaited<ReturnType<typeof freshDatabase>> | undefined
  afterAll(async () => {
    await db?.drop()
  })

  pgTest(
    'devices, levels and blocks are kept in PostgreSQL: an offline member is pushed, a blocker and a muted member are not, across a restart',
    async () => {
      db = await freshDatabase('push')
      const env = { ...rx.env, PUSH_COALESCE_MS: '300', POSTGRES_DSN: db.dsn }
      let s = await node(env)
      const room = uid('room')
      const [alice, olga, pia, quin] = ['alice', 'olga', 'pia', 'quin'].map(uid) as [string, string, string, string]
      for (const u of [alice, olga, pia, quin]) await member(s, room, u)
      const [o, p, q] = (await Promise.all([olga, pia, quin].map((u) => devices(s, u)))) as [Addr, Addr, Addr]
      const pc = await as(s, pia)
      expect((await pc.request({ type: 'block', user: alice })).type).toBe('ack')
      pc.close()
      const qc = await as(s, quin)
      expect((await qc.request({ type: 'notify', room, level: 'none' })).type).toBe('ack')
      qc.close()
      await Promise.all([pc.closed, qc.closed])
      // A restart: what was registered is the database's, not the process's.
      await s.stop('SIGTERM')
      s = await node(env)
      const a = await as(s, alice)
      expect(await a.request({ type: 'dm', to: pia, body: 'hi' })).toMatchObject({ type: 'error', code: 'forbidden' })
      await a.request({ type: 'chat', room, body: 'stored settings' })
      await pushedAll(o)
      await a.request({ type: 'chat', room, body: 'barrier' })
      await pushedAll(o, 2)
      expect(pushesOf(p)).toBe(0)
      expect(pushesOf(q)).toBe(0)
      a.close()
    },
    60_000,
  )
})
