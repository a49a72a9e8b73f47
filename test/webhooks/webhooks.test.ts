import { afterAll, describe, expect, test as plainTest } from 'bun:test'
import { connect } from '../helpers/client'
import type { TestClient } from '../helpers/client'
import { freshDatabase } from '../helpers/postgres'
import { runServerOnce, startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { needService } from '../helpers/services'
import { needRedisBinaries, startRedisCluster } from '../helpers/redis-cluster'
import { verifySignature, webhookReceiver } from '../helpers/webhook-receiver'
import type { Receiver } from '../helpers/webhook-receiver'

const SECRET = 'test-webhook-secret-0123456789'
const servers: RunningServer[] = []
const receivers: Receiver[] = []
const cleanups: (() => Promise<void>)[] = []

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop('SIGKILL')))
  for (const r of receivers) r.close()
  for (const c of cleanups) await c().catch(() => {})
})

function receiver(opts?: Parameters<typeof webhookReceiver>[0]) {
  const r = webhookReceiver(opts)
  receivers.push(r)
  return r
}

async function server(env: Record<string, string>) {
  const s = await startServer({ env: { RATE_LIMIT_PER_SEC: '0', WEBHOOK_SECRET: SECRET, WEBHOOK_BATCH_MS: '10', ...env } })
  servers.push(s)
  return s
}

async function metric(s: RunningServer, name: string): Promise<number> {
  const text = await (await fetch(`${s.url}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return line ? Number(line.split(' ')[1]) : NaN
}

/** Sends `n` chat frames and resolves with their server message ids, in order. */
async function chat(c: TestClient, n: number, room?: string, tag = 'm') {
  const ids: string[] = []
  for (let i = 0; i < n; i++) {
    const ack = await c.request({ type: 'chat', body: `${tag}${i}`, ...(room ? { room } : {}) })
    expect(ack.type).toBe('ack')
    ids.push(ack.msg)
  }
  return ids
}

const created = (events: Record<string, any>[]) => events.filter((e) => e.type === 'message.created')
const byMessage = (events: Record<string, any>[]) => new Set(created(events).map((e) => e.message.id))

/** Every event id delivered (2xx) exactly once, and every offer of an id carried the same event. */
function expectOncePerId(r: Receiver) {
  const delivered = new Map<string, number>()
  for (const e of r.delivered()) delivered.set(e.id, (delivered.get(e.id) ?? 0) + 1)
  for (const [id, n] of delivered) expect(`${id}: ${n}`).toBe(`${id}: 1`)
  const firstSeen = new Map<string, string>()
  for (const req of r.received)
    for (const e of req.events) {
      const json = JSON.stringify(e)
      const seen = firstSeen.get(e.id)
      if (seen)
        expect(json).toBe(seen) // a retry: the same event, same id
      else firstSeen.set(e.id, json)
    }
}

describe('webhooks, one node', () => {
  plainTest('events arrive signed and complete: online, occupied, created, vacated, offline', async () => {
    const r = receiver()
    const s = await server({ WEBHOOK_URL: r.url, API_KEY: 'test-api-key-0123456789' })
    const alice = await connect(s.ws, { user: 'alice', name: 'Alice' })
    await alice.next({ type: 'joined', room: 'general' })
    expect((await alice.request({ type: 'join', room: 'side' })).type).toBe('joined')
    const ack = await alice.request({ type: 'chat', room: 'side', body: 'hello', data: { n: 1 } })
    const frame = await alice.next({ type: 'chat', id: ack.msg })
    const api = await fetch(`${s.url}/api/publish`, {
      method: 'POST',
      headers: { authorization: 'Bearer test-api-key-0123456789' },
      body: JSON.stringify({ body: 'from the backend' }),
    })
    const published = (await api.json()) as { id: string }
    alice.close()
    await until(() => r.delivered().some((e) => e.type === 'user.offline'), 'user.offline')

    for (const req of r.received) {
      expect(verifySignature(SECRET, req.signature, req.body)).toBe(true)
      expect(verifySignature('another-secret-0123456789', req.signature, req.body)).toBe(false)
      expect(req.userAgent).toStartWith('chat-server/')
    }
    const events = r.delivered()
    for (const e of events) {
      expect(e.id).toMatch(/^[0-9a-f-]{36}$/)
      expect(new Date(e.ts).toISOString()).toBe(e.ts)
    }
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length)
    const alice_ = { id: 'alice', name: 'Alice' }
    const brief = events.map((e) => `${e.type} ${e.room ?? '-'} ${e.user?.id ?? '-'}`)
    expect(brief).toEqual([
      'user.online - alice',
      'room.occupied general alice',
      'room.occupied side alice',
      'message.created side alice',
      'message.created general server',
      'room.vacated general alice', // a closing connection leaves its rooms in the order it joined them
      'room.vacated side alice',
      'user.offline - alice',
    ])
    const m = events.find((e) => e.type === 'message.created' && e.room === 'side')!
    expect(m.user).toEqual(alice_)
    expect(m.message).toEqual(frame) // the chat frame, as members got it
    expect(m.offline).toEqual([])
    expect(events.find((e) => e.user?.id === 'server')!.message.id).toBe(published.id)
    expect(await metric(s, 'chat_webhook_events_sent_total')).toBe(8)
    expect(await metric(s, 'chat_webhook_queue_depth')).toBe(0)
  })

  plainTest('WEBHOOK_EVENTS sends only the chosen types', async () => {
    const r = receiver()
    const s = await server({ WEBHOOK_URL: r.url, WEBHOOK_EVENTS: 'message.created, user.offline' })
    const c = await connect(s.ws, { user: 'bob' })
    await c.next({ type: 'joined' })
    await chat(c, 2)
    c.close()
    await until(() => r.delivered().some((e) => e.type === 'user.offline'), 'user.offline')
    expect(r.delivered().map((e) => e.type)).toEqual(['message.created', 'message.created', 'user.offline'])
  })

  plainTest('WEBHOOK_EVENTS=message.created alone: offline lists only members with no live connection', async () => {
    const r = receiver()
    const s = await server({ WEBHOOK_URL: r.url, WEBHOOK_EVENTS: 'message.created' })
    const member = async (user: string) => {
      const c = await connect(s.ws, { user })
      await c.next({ type: 'joined' })
      expect((await c.request({ type: 'join', room: 'crew', member: true })).type).toBe('joined')
      return c
    }
    // carol is a member of the room, and gone.
    const carol = await member('carol')
    carol.close()
    await carol.closed
    const bob = await member('bob')
    const alice = await member('alice')
    const [id] = await chat(alice, 1, 'crew')
    await until(() => byMessage(r.delivered()).has(id!), 'message.created')
    const m = created(r.delivered()).find((e) => e.message.id === id)!
    expect(m.offline).toEqual(['carol'])
    bob.close()
    alice.close()
  })

  plainTest('the receiver answering 500 for a while: every event arrives once it is back, once per id', async () => {
    const r = receiver()
    r.mode = 'fail'
    const s = await server({ WEBHOOK_URL: r.url, WEBHOOK_EVENTS: 'message.created', WEBHOOK_BATCH_MAX: '7' })
    const c = await connect(s.ws, { user: 'carol' })
    await c.next({ type: 'joined' })
    const ids = await chat(c, 40)
    await until(() => r.received.length >= 3, 'failed attempts', 5000)
    r.mode = 'ok'
    await until(() => byMessage(r.delivered()).size === 40, 'all 40 message.created', 15_000)
    expect([...byMessage(r.delivered())].sort()).toEqual([...ids].sort())
    expectOncePerId(r)
    expect(r.received.some((q) => q.status === 500)).toBe(true)
    expect(await metric(s, 'chat_webhook_events_retried_total')).toBeGreaterThan(0)
    expect(await metric(s, 'chat_webhook_events_sent_total')).toBe(40)
    c.close()
  })

  plainTest('past WEBHOOK_QUEUE_MAX the oldest waiting events are dropped and counted', async () => {
    const r = receiver()
    r.mode = 'fail'
    const s = await server({
      WEBHOOK_URL: r.url,
      WEBHOOK_EVENTS: 'message.created',
      WEBHOOK_QUEUE_MAX: '10',
      WEBHOOK_BATCH_MAX: '2',
      WEBHOOK_BATCH_MS: '0',
    })
    const c = await connect(s.ws, { user: 'dave' })
    await c.next({ type: 'joined' })
    const ids = await chat(c, 30)
    // The gauge reads the queue (the webhooks register how: metrics.webhook.depth.from).
    expect(await metric(s, 'chat_webhook_queue_depth')).toBeGreaterThan(0)
    r.mode = 'ok'
    await until(async () => (await metric(s, 'chat_webhook_queue_depth')) === 0, 'an empty queue', 10_000)
    const got = byMessage(r.delivered())
    const dropped = await metric(s, 'chat_webhook_events_dropped_total')
    expect(got.size).toBeLessThanOrEqual(10)
    expect(got.size + dropped).toBe(30)
    expect(got.has(ids[29]!)).toBe(true) // the newest are kept
    expect(got.has(ids[10]!)).toBe(false) // ... the oldest waiting ones went
    expectOncePerId(r)
    c.close()
  })

  plainTest('bad webhook settings stop startup with one clear line', async () => {
    const bad = await runServerOnce({
      WEBHOOK_URL: 'http://127.0.0.1:9/x',
      WEBHOOK_SECRET: SECRET,
      WEBHOOK_EVENTS: 'message.created,message.bogus',
    })
    expect(bad.code).toBe(1)
    expect(bad.stderr).toContain('config error: WEBHOOK_EVENTS: unknown event type message.bogus')
    const unsigned = await runServerOnce({ HOOK_BEFORE_PUBLISH_URL: 'http://127.0.0.1:9/x' })
    expect(unsigned.code).toBe(1)
    expect(unsigned.stderr).toContain('config error: WEBHOOK_SECRET: required when HOOK_BEFORE_PUBLISH_URL is set')
    const fail = await runServerOnce({ HOOK_FAIL: 'maybe' })
    expect(fail.stderr).toContain('config error: HOOK_FAIL: expected open or closed')
  })
})

describe('pre-publish hook', () => {
  const calls: { body: string; signature: string; json: any }[] = []
  let hook: ReturnType<typeof Bun.serve>
  const answer = async (req: Request) => {
    const body = await req.text()
    const json = JSON.parse(body)
    calls.push({ body, signature: req.headers.get('chat-signature') ?? '', json })
    const text: string = json.body
    if (text.includes('bad')) return Response.json({ action: 'reject', reason: 'no bad words here' })
    if (text.startsWith('filter')) return Response.json({ action: 'replace', body: 'filtered', data: { clean: true } })
    if (text.startsWith('keepdata')) return Response.json({ action: 'replace', body: 'kept' })
    if (text.startsWith('slow')) await Bun.sleep(1500)
    if (text.startsWith('garbage')) return new Response('{"action":"maybe"}')
    return Response.json({ action: 'allow' })
  }

  plainTest('allows, rejects with the reason, replaces body and data; signed like events', async () => {
    hook = Bun.serve({ hostname: '127.0.0.1', port: 0, idleTimeout: 0, fetch: answer })
    cleanups.push(async () => hook.stop(true))
    const s = await server({ HOOK_BEFORE_PUBLISH_URL: `http://127.0.0.1:${hook.port}/before`, HOOK_TIMEOUT_MS: '300' })
    const a = await connect(s.ws, { user: 'erin', name: 'Erin' })
    const b = await connect(s.ws, { user: 'finn' })
    await a.next({ type: 'joined' })
    await b.next({ type: 'joined' })

    const ok = await a.request({ type: 'chat', body: 'plain', data: { x: 1 } })
    expect(ok.type).toBe('ack')
    expect(await b.next({ type: 'chat' })).toMatchObject({ body: 'plain', data: { x: 1 } })
    expect(calls[0]!.json).toEqual({ room: 'general', user: { id: 'erin', name: 'Erin' }, body: 'plain', data: { x: 1 } })
    expect(verifySignature(SECRET, calls[0]!.signature, calls[0]!.body)).toBe(true)

    const no = await a.request({ type: 'chat', body: 'a bad word' })
    expect(no).toMatchObject({ type: 'error', code: 'forbidden', message: 'no bad words here' })

    expect((await a.request({ type: 'chat', body: 'filter me', data: { x: 2 } })).type).toBe('ack')
    expect(await b.next({ type: 'chat' })).toMatchObject({ body: 'filtered', data: { clean: true } })
    expect((await a.request({ type: 'chat', body: 'keepdata me', data: { x: 3 } })).type).toBe('ack')
    expect(await b.next({ type: 'chat' })).toMatchObject({ body: 'kept', data: { x: 3 } })

    // A hook failure with HOOK_FAIL=closed (the default): not published, `unavailable`.
    expect(await a.request({ type: 'chat', body: 'slow one' }, 5000)).toMatchObject({ type: 'error', code: 'unavailable' })
    expect(await a.request({ type: 'chat', body: 'garbage answer' })).toMatchObject({ type: 'error', code: 'unavailable' })
    expect((await a.request({ type: 'chat', body: 'after' })).type).toBe('ack')
    expect(await b.next({ type: 'chat' })).toMatchObject({ body: 'after' }) // nothing rejected or failed got through
    expect(await metric(s, 'chat_hook_failures_total')).toBe(2)
    a.close()
    b.close()
  })

  plainTest('HOOK_FAIL=open publishes as sent when the hook times out', async () => {
    const s = await server({ HOOK_BEFORE_PUBLISH_URL: `http://127.0.0.1:${hook.port}/before`, HOOK_TIMEOUT_MS: '300', HOOK_FAIL: 'open' })
    const a = await connect(s.ws, { user: 'gail' })
    await a.next({ type: 'joined' })
    const t0 = performance.now()
    expect((await a.request({ type: 'chat', body: 'slow but open' }, 5000)).type).toBe('ack')
    expect(performance.now() - t0).toBeLessThan(1400) // it did not wait for the hook's 1.5 s answer
    expect(await a.next({ type: 'chat' })).toMatchObject({ body: 'slow but open' })
    expect((await a.request({ type: 'chat', body: 'still bad' })).code).toBe('forbidden') // an answer is still obeyed
    a.close()
  })
})

const redisTest = await needService('Redis', 6379)
const prefix = `test-wh-${process.pid}-${Date.now()}:`
const redisEnv = { REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: prefix }
cleanups.push(async () => {
  const redis = new (await import('ioredis')).default('redis://127.0.0.1:6379', { lazyConnect: true })
  try {
    await redis.connect()
    const keys = await redis.keys(`${prefix}*`)
    if (keys.length) await redis.del(...keys)
  } finally {
    redis.disconnect()
  }
})

const backends = [
  { name: 'Redis', test: redisTest, env: async () => redisEnv },
  {
    name: 'a Redis Cluster',
    test: needRedisBinaries(),
    env: (() => {
      let started: Promise<Record<string, string>> | undefined
      return () =>
        (started ??= startRedisCluster().then((rc) => {
          cleanups.push(() => rc.stop())
          return { REDIS_URL: rc.url, REDIS_CLUSTER: 'true' }
        }))
    })(),
  },
]

for (const backend of backends)
  describe(`webhooks in a cluster (${backend.name})`, () => {
    backend.test(
      '3 nodes: each event is sent by one node only; online and occupied are cluster-wide',
      async () => {
        const r = receiver()
        const env = { ...(await backend.env()), REDIS_PREFIX: `${prefix}three:`, WEBHOOK_URL: r.url }
        const nodes = await Promise.all([server(env), server(env), server(env)])
        const clients = await Promise.all(nodes.map((n, i) => connect(n.ws, { user: i === 2 ? 'hank' : `user${i}` })))
        // hank on two nodes: one user.online
        const hank2 = await connect(nodes[0]!.ws, { user: 'hank' })
        for (const c of [...clients, hank2]) await c.next({ type: 'joined' })
        const ids = (await Promise.all(clients.map((c, i) => chat(c, 20, undefined, `n${i}-`)))).flat()
        await until(() => byMessage(r.delivered()).size === 60, 'all 60 message.created', 10_000)
        for (const c of [...clients, hank2]) c.close()
        await until(() => r.delivered().filter((e) => e.type === 'user.offline').length === 3, 'three user.offline', 10_000)
        await Bun.sleep(300) // room for a stray duplicate to show
        expectOncePerId(r)
        const events = r.delivered()
        expect(created(events).length).toBe(60) // one event per message: never emitted twice
        expect([...byMessage(events)].sort()).toEqual([...ids].sort())
        expect(events.filter((e) => e.type === 'room.occupied').map((e) => e.room)).toEqual(['general'])
        expect(events.filter((e) => e.type === 'room.vacated').map((e) => e.room)).toEqual(['general'])
        expect(
          events
            .filter((e) => e.type === 'user.online')
            .map((e) => e.user.id)
            .sort(),
        ).toEqual(['hank', 'user0', 'user1'])
        let sent = 0
        for (const n of nodes) sent += await metric(n, 'chat_webhook_events_sent_total')
        expect(sent).toBe(events.length)
      },
      30_000,
    )

    backend.test(
      'a node SIGKILLed mid-delivery: another node claims and delivers its events',
      async () => {
        const r = receiver()
        const env = {
          ...(await backend.env()),
          REDIS_PREFIX: `${prefix}kill:`,
          WEBHOOK_URL: r.url,
          WEBHOOK_EVENTS: 'message.created',
          WEBHOOK_TIMEOUT_MS: '1000',
          WEBHOOK_CLAIM_MS: '2000',
        }
        const a = await server({ ...env, NODE_ID: 'wh-a' })
        const b = await server({ ...env, NODE_ID: 'wh-b' })
        r.mode = 'hold'
        const ca = await connect(a.ws, { user: 'ivy' })
        await ca.next({ type: 'joined' })
        const ids: string[] = []
        for (let i = 0; i < 200 && !r.received.some((q) => q.userAgent.includes('(wh-a)')); i++) {
          ids.push(...(await chat(ca, 1, undefined, `k${i}-`)))
          await Bun.sleep(20)
        }
        const held = r.received.find((q) => q.userAgent.includes('(wh-a)'))
        expect(held).toBeDefined()
        await Bun.sleep(200) // every acknowledged message is in the stream by now
        await a.stop('SIGKILL')
        r.mode = 'ok'
        r.release()
        await until(
          () =>
            ids.every((id) =>
              byMessage(r.received.filter((q) => q.userAgent.includes('(wh-b)') && q.status === 200).flatMap((q) => q.events)).has(id),
            ),
          'every message delivered by the surviving node',
          15_000,
        )
        // The batch node A held when it died went out again, by B, with the same event ids.
        const heldIds = new Set(held!.events.map((e) => e.id))
        const byB = new Set(
          r.received.filter((q) => q.userAgent.includes('(wh-b)') && q.status === 200).flatMap((q) => q.events.map((e) => e.id)),
        )
        for (const id of heldIds) expect(byB.has(id)).toBe(true)
        expect(await metric(b, 'chat_webhook_queue_depth')).toBe(0)
      },
      30_000,
    )
  })

describe('webhooks after Redis lost the queue', () => {
  redisTest('the consumer group is created again and events flow', async () => {
    const r = receiver()
    const p = `${prefix}regroup:`
    const s = await server({ ...redisEnv, REDIS_PREFIX: p, WEBHOOK_URL: r.url, WEBHOOK_EVENTS: 'message.created' })
    const c = await connect(s.ws, { user: 'nina' })
    await c.next({ type: 'joined' })
    const [first] = await chat(c, 1)
    await until(() => byMessage(r.delivered()).has(first!), 'the first message', 5000)
    const redis = new (await import('ioredis')).default('redis://127.0.0.1:6379')
    await redis.del(`${p}{wh}:events`) // the stream and its group, as a Redis that came back empty
    redis.disconnect()
    const [second] = await chat(c, 1)
    await until(() => byMessage(r.delivered()).has(second!), 'a message after the group was lost', 10_000)
    expect(s.logs.some((l) => String(l.msg).startsWith('webhook consumer group missing'))).toBe(true)
    c.close()
  })
})

describe('cluster-wide online and occupied (Redis)', () => {
  redisTest('WEBHOOK_EVENTS=user.offline alone still counts connections: one offline for a user on two nodes', async () => {
    const r = receiver()
    const env = { ...redisEnv, REDIS_PREFIX: `${prefix}only-offline:`, WEBHOOK_URL: r.url, WEBHOOK_EVENTS: 'user.offline' }
    const [a, b] = await Promise.all([server(env), server(env)])
    const x = await connect(a.ws, { user: 'mona' })
    const y = await connect(b.ws, { user: 'mona' })
    await x.next({ type: 'joined' })
    await y.next({ type: 'joined' })
    x.close()
    await Bun.sleep(500)
    expect(r.delivered()).toEqual([]) // still online on b
    y.close()
    await until(() => r.delivered().length === 1, 'user.offline', 5000)
    expect(r.delivered()[0]).toMatchObject({ type: 'user.offline', user: { id: 'mona', name: 'mona' } })
  })

  redisTest(
    'a node SIGKILLed: another node emits the offline and vacated its users and rooms are due',
    async () => {
      const r = receiver()
      const env = {
        ...redisEnv,
        REDIS_PREFIX: `${prefix}reap:`,
        WEBHOOK_URL: r.url,
        WEBHOOK_EVENTS: 'user.online,user.offline,room.occupied,room.vacated',
      }
      const a = await server({ ...env, NODE_ID: 'reap-a' })
      const b = await server({ ...env, NODE_ID: 'reap-b' })
      const kim = await connect(a.ws, { user: 'kim' }) // only on a
      const lee = await connect(b.ws, { user: 'lee' }) // on b, in general too
      await kim.next({ type: 'joined' })
      expect((await kim.request({ type: 'join', room: 'kims-room' })).type).toBe('joined')
      await lee.next({ type: 'joined' })
      await until(() => r.delivered().filter((e) => e.type === 'user.online').length === 2, 'two user.online', 5000)
      // a's own events must be out before it dies: the test is about what the survivor emits
      await until(() => r.delivered().some((e) => e.type === 'room.occupied' && e.room === 'kims-room'), 'kims-room occupied', 5000)
      await a.stop('SIGKILL')
      // a's heartbeat key lapses after ~20 s; b's sweep (every 5 s) then reaps a's entries.
      await until(() => r.delivered().some((e) => e.type === 'user.offline'), 'user.offline of kim', 45_000)
      await until(() => r.delivered().some((e) => e.type === 'room.vacated'), 'room.vacated of kims-room', 15_000).catch((err) => {
        throw new Error(`${err.message}; got ${JSON.stringify(r.delivered().map((e) => [e.type, e.room, e.user?.id]))}`)
      })
      await Bun.sleep(300)
      const late = r.delivered().filter((e) => e.type === 'user.offline' || e.type === 'room.vacated')
      expect(late.map((e) => `${e.type} ${e.room ?? e.user.id}`).sort()).toEqual(['room.vacated kims-room', 'user.offline kim'])
      expect(late.find((e) => e.type === 'user.offline')!.user).toEqual({ id: 'kim', name: 'kim' })
      lee.close() // general is vacated only now
      await until(() => r.delivered().some((e) => e.type === 'room.vacated' && e.room === 'general'), 'general vacated', 5000)
      expect(
        r
          .delivered()
          .filter((e) => e.type === 'room.occupied')
          .map((e) => e.room)
          .sort(),
      ).toEqual(['general', 'kims-room'])
    },
    60_000,
  )
})

const pgTest = await needService('PostgreSQL', 5432)

describe('webhooks with PostgreSQL and no Redis', () => {
  pgTest(
    'pending events survive a restart (SIGKILL) and arrive once the receiver is back',
    async () => {
      const db = await freshDatabase('webhooks')
      cleanups.push(() => db.drop())
      const r = receiver()
      r.stop() // connection refused
      const env = { POSTGRES_DSN: db.dsn, WEBHOOK_URL: r.url, WEBHOOK_EVENTS: 'message.created' }
      const first = await server(env)
      const c = await connect(first.ws, { user: 'jack' })
      await c.next({ type: 'joined' })
      const ids = await chat(c, 25)
      await until(
        async () => Number((await db.sql`select count(*)::int as n from webhook_events`)[0]!.n) === 25,
        'the journal holding all 25',
        5000,
      )
      await first.stop('SIGKILL')
      r.restart()
      const second = await server(env)
      await until(() => byMessage(r.delivered()).size === 25, 'all 25 after the restart', 15_000)
      expect([...byMessage(r.delivered())].sort()).toEqual([...ids].sort())
      expectOncePerId(r)
      await until(
        async () => Number((await db.sql`select count(*)::int as n from webhook_events`)[0]!.n) === 0,
        'the journal emptied',
        5000,
      )
      await second.stop()
    },
    30_000,
  )
})
