// A retry with the same id answers the original ack, on every engine, however close together
// the copies arrive (issue 22: with PostgreSQL on one node, 20 ids sent twice back to back gave
// 40 messages). And one error mapping for every append: a refusal is its own code, never
// `unavailable`.
import { afterAll, describe, expect } from 'bun:test'
import { connect } from '../helpers/client'
import type { Frame, TestClient } from '../helpers/client'
import { freshDatabase } from '../helpers/postgres'
import { startServer } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { dropRedisPrefix, needService } from '../helpers/services'

const API_KEY = 'retries-test-api-key-0123456789'
const pgTest = await needService('PostgreSQL', 5432)
const redisTest = await needService('Redis', 6379)
const servers: RunningServer[] = []
const clients: TestClient[] = []
const cleanups: (() => Promise<void>)[] = []
afterAll(async () => {
  for (const c of clients) c.ws.close()
  await Promise.all(servers.map((s) => s.stop('SIGKILL')))
  for (const c of cleanups) await c().catch(() => {})
})

async function server(env: Record<string, string>) {
  const s = await startServer({ env: { RATE_LIMIT_PER_SEC: '0', API_KEY, ...env } })
  servers.push(s)
  return s
}
async function user(s: RunningServer, id: string) {
  const c = await connect(s.ws, { user: id })
  clients.push(c)
  await c.next({ type: 'joined' })
  return c
}

/** Sends every frame twice, back to back, and waits for each id's two answers. */
async function twice(c: TestClient, frames: Frame[]): Promise<Map<string, Frame[]>> {
  for (const f of frames) {
    c.send(f)
    c.send(f)
  }
  const answers = new Map<string, Frame[]>()
  const deadline = Date.now() + 10_000
  while ([...answers.values()].reduce((n, a) => n + a.length, 0) < frames.length * 2 && Date.now() < deadline) {
    answers.clear()
    for (const f of c.frames)
      if ((f.type === 'ack' || f.type === 'error') && frames.some((x) => x.id === f.id))
        answers.set(f.id, [...(answers.get(f.id) ?? []), f])
    await Bun.sleep(20)
  }
  return answers
}

async function history(s: RunningServer, room: string) {
  const res = await fetch(`${s.url}/api/rooms/${room}/messages?limit=100`, { headers: { authorization: `Bearer ${API_KEY}` } })
  return ((await res.json()) as { messages: Frame[] }).messages
}

function expectOneMessagePerId(answers: Map<string, Frame[]>, n: number) {
  expect(answers.size).toBe(n)
  for (const [id, [a, b]] of answers) {
    expect(`${id}: ${a?.type} ${b?.type}`).toBe(`${id}: ack ack`)
    expect(b!.msg).toBe(a!.msg)
    expect(b!.seq).toBe(a!.seq)
  }
}

describe('retries with PostgreSQL on one node', () => {
  pgTest('20 chat ids sent twice each, back to back: 20 messages, each id answered with its first ack', async () => {
    const db = await freshDatabase('retries')
    cleanups.push(() => db.drop())
    const s = await server({ POSTGRES_DSN: db.dsn })
    const alice = await user(s, 'alice')
    const frames = Array.from({ length: 20 }, (_, i) => ({ type: 'chat', body: `twice ${i}`, id: `c${i}` }))
    expectOneMessagePerId(await twice(alice, frames), 20)
    const bodies = (await history(s, 'general')).map((m) => m.body).filter((b: string) => b.startsWith('twice '))
    expect(bodies).toHaveLength(20)
    expect(new Set(bodies).size).toBe(20)
  })

  pgTest('dm ids sent twice each, back to back: one message each, also to a conversation not open yet', async () => {
    const db = await freshDatabase('retries_dm')
    cleanups.push(() => db.drop())
    const s = await server({ POSTGRES_DSN: db.dsn })
    const alice = await user(s, 'alice')
    const frames = ['bob', 'bob', 'carol', 'dave', 'bob'].map((to, i) => ({ type: 'dm', to, body: `dm ${i}`, id: `d${i}` }))
    const answers = await twice(alice, frames)
    expectOneMessagePerId(answers, 5)
    const room = answers.get('d0')![0]!.room as string
    const toBob = (await history(s, room)).filter((m) => m.type === 'dm')
    // In the order sent, also when the first had to open the conversation.
    expect(toBob.map((m) => m.body)).toEqual(['dm 0', 'dm 1', 'dm 4'])
  })

  pgTest("the API's Idempotency-Key: copies sent at once publish one message", async () => {
    const db = await freshDatabase('retries_api')
    cleanups.push(() => db.drop())
    const s = await server({ POSTGRES_DSN: db.dsn })
    const post = () =>
      fetch(`${s.url}/api/publish`, {
        method: 'POST',
        headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json', 'idempotency-key': 'once-only' },
        body: JSON.stringify({ room: 'news', body: 'exactly once' }),
      }).then((r) => r.json() as Promise<{ id: string; seq: number }>)
    const answers = await Promise.all(Array.from({ length: 10 }, post))
    expect(new Set(answers.map((a) => a.id)).size).toBe(1)
    expect(new Set(answers.map((a) => a.seq)).size).toBe(1)
    expect((await history(s, 'news')).filter((m) => m.body === 'exactly once')).toHaveLength(1)
  })
})

describe('one error mapping for every append', () => {
  redisTest("a dm the room's sequencer refuses answers the refusal's code, not unavailable, and counts no broker error", async () => {
    const prefix = `retries-${process.pid}-${Date.now()}:`
    cleanups.push(() => dropRedisPrefix(prefix))
    const s = await server({ REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: prefix })
    const alice = await user(s, 'alice')
    const first = await alice.request({ type: 'dm', to: 'bob', body: 'hello' })
    expect(first.type).toBe('ack')
    // The sequencer's own record of a ban in the direct room (as a ban event writes it).
    const redis = new (await import('ioredis')).default('redis://127.0.0.1:6379')
    await redis.hset(`${prefix}{${first.room}}:msgs`, '~ban:alice', '1')
    redis.disconnect()
    const refused = await alice.request({ type: 'dm', to: 'bob', body: 'again' })
    expect(refused).toMatchObject({ type: 'error', code: 'forbidden' })
    const metrics = await (await fetch(`${s.url}/metrics`)).text()
    expect(metrics).toMatch(/^chat_broker_errors_total 0$/m)
  })
})
