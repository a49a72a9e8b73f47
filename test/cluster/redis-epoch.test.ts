import { afterAll, beforeAll, describe, expect, test as realTest } from 'bun:test'
import { ChatClient } from '../../client/src/index'
import { connect } from '../helpers/client'
import type { Frame, TestClient } from '../helpers/client'
import { freshDatabase } from '../helpers/postgres'
import { startProxy } from '../helpers/proxy'
import type { Proxy } from '../helpers/proxy'
import { startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { needService, privateRedis } from '../helpers/services'

// Redis restarted without its data, with PostgreSQL: the room goes on under a new epoch. Every
// node notices when its subscriber is back; one that comes back late must still hand its members
// every message acknowledged in the new epoch meanwhile (issue 32, item 6).

const pgTest = await needService('PostgreSQL', 5432)
const redisTest = await needService('Redis', 6379)
/** Needs both (and redis-server for a private instance): fails under CI=true when either is absent. */
const test = pgTest !== realTest ? pgTest : redisTest
let db: Awaited<ReturnType<typeof freshDatabase>>
const servers: RunningServer[] = []

beforeAll(async () => {
  if (test === realTest) db = await freshDatabase('epoch')
})
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop('SIGKILL')))
  await db?.drop()
})

async function node(env: Record<string, string>) {
  const s = await startServer({ env: { RATE_LIMIT_PER_SEC: '0', ...env } })
  servers.push(s)
  return s
}

/**
 * Sends chat `body` until it is acknowledged (Redis may be away: `unavailable`), reusing the
 * frame id so that a retry is never a second message; at most 150 tries, 100 ms apart.
 */
async function sendUntilAcked(c: TestClient, room: string, body: string): Promise<Frame> {
  const answered = () => c.frames.filter((f) => f.id === body && (f.type === 'ack' || f.type === 'error'))
  for (let attempt = 0; attempt < 150; attempt++) {
    const before = answered().length
    c.send({ type: 'chat', room, body, id: body })
    for (let i = 0; i < 500 && answered().length === before; i++) await Bun.sleep(10)
    const answer = answered()[before]
    if (answer?.type === 'ack') return answer
    await Bun.sleep(100)
  }
  throw new Error(`${body} was never acknowledged`)
}

/**
 * What a member received of `room`, checked against the protocol: after each `joined`, events
 * follow with seq = joined.seq + 1, + 2, ... (no gap, nothing twice, in order) within its epoch.
 */
function received(c: TestClient, room: string) {
  const bodies: string[] = []
  const faults: string[] = []
  let next = -1
  for (const f of c.frames) {
    if (f.room !== room) continue
    if (f.type === 'joined') next = f.seq + 1
    else if (f.type === 'chat') {
      if (f.seq !== next) faults.push(`${f.body}: seq ${f.seq}, expected ${next}`)
      next = f.seq + 1
      bodies.push(f.body)
    }
  }
  return { bodies, faults }
}

describe('Redis restarted empty, with PostgreSQL', () => {
  /**
   * 3 nodes, 30 members; node C's subscriber comes back only once each sender has `before`
   * messages of the new epoch acknowledged; each sends `total` in it. `env` is every node's.
   * With `deaf`, C's subscriber first misses the last `deaf` messages per sender of the old epoch.
   */
  async function lateNode(prefix: string, env: Record<string, string>, before: number, total: number, deaf = 0) {
    const redis = await privateRedis({ keepData: false })
    let proxy: Proxy | undefined
    try {
      // Node C reaches Redis through a proxy that can hold back its subscriber connection alone.
      proxy = await startProxy(redis.port)
      env = { ...env, POSTGRES_DSN: db.dsn, REDIS_PREFIX: prefix }
      const [a, b, c] = await Promise.all([
        node({ ...env, REDIS_URL: redis.url }),
        node({ ...env, REDIS_URL: redis.url }),
        node({ ...env, REDIS_URL: `redis://127.0.0.1:${proxy.port}` }),
      ])
      const nodes = [a, b, c]
      const room = `epoch-room-${Date.now().toString(36)}`
      // 30 members, 10 per node; the first of each node also sends.
      const members: TestClient[][] = [[], [], []]
      for (let n = 0; n < 3; n++)
        for (let i = 0; i < 10; i++) {
          const m = await connect(nodes[n]!.ws, { user: `ep-${n}-${i}` })
          expect((await m.request({ type: 'join', room })).type).toBe('joined')
          members[n]!.push(m)
        }
      const everyone = members.flat()
      const senders = members.map((m) => m[0]!)
      const acked = new Map<string, Frame>()
      const send = async (s: number, body: string) => acked.set(body, await sendUntilAcked(senders[s]!, room, body))

      // The old epoch: 20 numbered messages per sender, every member has them.
      await Promise.all(
        [0, 1, 2].map(async (s) => {
          for (let i = 1; i <= 20; i++) await send(s, `old-${s}-${i}`)
        }),
      )
      const oldEpoch = members[0]![0]!.all('joined').find((f) => f.room === room)!.epoch
      await until(() => everyone.every((m) => received(m, room).bodies.length === 60), 'the old epoch delivered', 10_000)
      if (deaf > 0) {
        // C's subscriber stops hearing (a lagging connection): the old epoch's last messages
        // never reach C before Redis dies; PostgreSQL has them.
        proxy.deafen('SUBSCRIBE')
        await Promise.all(
          [0, 1, 2].map(async (s) => {
            for (let i = 1; i <= deaf; i++) await send(s, `tail-${s}-${i}`)
          }),
        )
        await until(
          async () => (await db.sql`select 1 from messages where room = ${room}`).length === acked.size,
          'the old epoch stored',
          10_000,
        )
      }

      // Redis restarted empty; node C's subscriber is held back when it tries to subscribe again
      // (its command and append connections are not), so C notices the new epoch late.
      proxy.holdWhen('SUBSCRIBE')
      await redis.kill()
      const newAcks = [0, 0, 0]
      const sending = Promise.all(
        [0, 1, 2].map(async (s) => {
          for (let i = 1; i <= total; i++) {
            await send(s, `new-${s}-${i}`)
            newAcks[s]!++
          }
        }),
      )
      await redis.restart()
      // Every node, C included, acknowledges messages of the new epoch before C has noticed it.
      await until(() => newAcks.every((n) => n >= before), 'messages of the new epoch acknowledged on every node', 30_000)
      expect(members[2]!.every((m) => m.all('joined').filter((f) => f.room === room).length === 1)).toBe(true)
      proxy.release()
      await sending

      // Every member gets every acknowledged message of the new epoch, live: a `joined` with
      // the new epoch, then its events in order from where it began.
      const complete = () => everyone.every((m) => received(m, room).bodies.length >= acked.size)
      for (let i = 0; i < 200 && !complete(); i++) await Bun.sleep(50)
      const report = everyone.map((m, i) => {
        const { bodies, faults } = received(m, room)
        const got = new Set(bodies)
        return {
          member: `node ${Math.floor(i / 10)} #${i % 10}`,
          missing: [...acked.keys()].filter((k) => !got.has(k)).length,
          twice: bodies.length - got.size,
          faults: faults.slice(0, 3),
        }
      })
      expect(report.filter((r) => r.missing || r.twice || r.faults.length)).toEqual([])
      // Each member was told of the new epoch once, at the seq it began from.
      const resets = everyone.map((m) => m.all('joined').filter((f) => f.room === room && f.id === undefined))
      const start = resets[0]![0]!
      expect(start.epoch).not.toBe(oldEpoch)
      for (const r of resets) expect(r.map((f) => [f.epoch, f.seq])).toEqual([[start.epoch, start.seq]])
      // Every acknowledged message is in PostgreSQL.
      await until(
        async () => (await db.sql`select 1 from messages where room = ${room}`).length === acked.size,
        'every message stored',
        20_000,
      )
      for (const m of everyone) m.close()
    } finally {
      proxy?.close()
      await redis.kill()
    }
  }

  test('a node whose subscriber comes back late still hands its members every message of the new epoch, in order, once', async () => {
    await lateNode('epoch:', {}, 15, 40)
  }, 120_000)

  test("… also when the room's stream no longer holds the start of the new epoch (HISTORY_LIMIT): the rest comes from PostgreSQL", async () => {
    // The stream is trimmed by whole nodes of 100 entries: 3 x 70 appended before C is back
    // leave its oldest ones only in PostgreSQL.
    await lateNode('epoch-trim:', { HISTORY_LIMIT: '10' }, 70, 80)
  }, 120_000)

  test("… also when the node had not heard the old epoch's last messages before Redis lost them: they come from PostgreSQL first", async () => {
    await lateNode('epoch-tail:', {}, 10, 20, 10)
  }, 120_000)

  test('a typed client away while the epoch changed: it resets and recovers every message of the new epoch, none missed', async () => {
    const redis = await privateRedis({ keepData: false })
    let client: ChatClient | undefined
    let door: Proxy | undefined
    try {
      const env = { POSTGRES_DSN: db.dsn, REDIS_PREFIX: 'epoch2:', REDIS_URL: redis.url }
      const [a, b] = await Promise.all([node(env), node(env)])
      const room = `epoch-away-${Date.now().toString(36)}`
      const sender = await connect(a.ws, { user: 'ea-sender' })
      expect((await sender.request({ type: 'join', room })).type).toBe('joined')
      // The client reaches node B through a door the test can shut.
      door = await startProxy(b.port)
      client = new ChatClient({
        url: door.ws,
        user: 'ea-reader',
        reconnect: { initialMs: 50, maxMs: 300 },
        requestTimeoutMs: 8000,
        pingIntervalMs: 0,
      })
      const got: string[] = []
      const gaps: unknown[] = []
      const resets: unknown[] = []
      client.on('chat', (m) => m.room === room && got.push(m.body))
      client.on('gap', (g) => gaps.push(g))
      client.on('reset', (r) => resets.push(r))
      await until(() => client!.state === 'open', 'client open')
      await client.join(room)
      for (let i = 1; i <= 5; i++) await sendUntilAcked(sender, room, `old-${i}`)
      await until(() => got.length === 5, 'the old epoch received')

      door.block()
      door.drop()
      await until(() => client!.state !== 'open', 'client away')
      await redis.kill()
      await redis.restart() // empty: the room goes on under a new epoch, past the store
      const sent: string[] = []
      for (let i = 1; i <= 20; i++) sent.push((await sendUntilAcked(sender, room, `new-${i}`)).id)
      door.unblock()
      // Back: its re-join names the old epoch, so it starts the new one over from 0 and the
      // server replays the new epoch from where it began.
      await until(() => got.length >= 25, 'every message received', 15_000).catch(() => {})
      expect(resets.length).toBeGreaterThanOrEqual(1)
      expect(gaps).toEqual([])
      expect(got).toEqual([...Array.from({ length: 5 }, (_, i) => `old-${i + 1}`), ...sent])
      sender.close()
    } finally {
      client?.close()
      door?.close()
      await redis.kill()
    }
  }, 60_000)
})

describe('gap repair with PostgreSQL down', () => {
  test('a stream trimmed past the gap while the store cannot be read: the node goes on with what the stream holds, live frames are not held back', async () => {
    const redis = await privateRedis({ keepData: false })
    const redisDoor = await startProxy(redis.port)
    const pgDoor = await startProxy(5432)
    try {
      const env = { POSTGRES_DSN: db.dsnVia(pgDoor.port), REDIS_PREFIX: 'gap-pg:', HISTORY_LIMIT: '10' }
      const [a, b] = await Promise.all([
        node({ ...env, REDIS_URL: redis.url }),
        node({ ...env, REDIS_URL: `redis://127.0.0.1:${redisDoor.port}` }),
      ])
      const room = `gap-pg-${Date.now().toString(36)}`
      const sender = await connect(a.ws, { user: 'gp-sender' })
      const reader = await connect(b.ws, { user: 'gp-reader' })
      for (const c of [sender, reader]) expect((await c.request({ type: 'join', room })).type).toBe('joined')
      await sendUntilAcked(sender, room, 'first')
      await reader.next({ type: 'chat', room, body: 'first' })
      // B hears nothing while 250 more are sent (the stream keeps only its newest ~100), then
      // PostgreSQL goes away and B's Redis connections are cut: B repairs from the stream.
      redisDoor.deafen('SUBSCRIBE')
      for (let i = 1; i <= 250; i++) await sendUntilAcked(sender, room, `m-${i}`)
      await until(async () => (await db.sql`select 1 from messages where room = ${room}`).length === 251, 'archived', 10_000)
      pgDoor.close()
      redisDoor.drop()
      await reader.next({ type: 'chat', room, body: 'm-250' }, 15_000)
      const after = await sendUntilAcked(sender, room, 'after')
      expect(await reader.next({ type: 'chat', room, body: 'after' }, 5000)).toMatchObject({ seq: after.seq })
      expect(b.logs.some((l) => l.msg === 'gap repair could not read the store')).toBe(true)
      sender.close()
      reader.close()
    } finally {
      redisDoor.close()
      pgDoor.close()
      await redis.kill()
    }
  }, 60_000)
})
