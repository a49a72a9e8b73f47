import { afterAll, describe, expect } from 'bun:test'
import Redis from 'ioredis'
import { connect } from '../helpers/client'
import type { TestClient } from '../helpers/client'
import { startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { needRedisBinaries, startRedisCluster } from '../helpers/redis-cluster'
import type { RedisCluster } from '../helpers/redis-cluster'
import { needService, privateRedis, dropRedisPrefix } from '../helpers/services'

const test = await needService('Redis', 6379)
const prefix = `test-${process.pid}-${Date.now()}:`
const env = { REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: prefix, RATE_LIMIT_PER_SEC: '0' }
const servers: RunningServer[] = []
let n = 0
const room = () => `c-room-${++n}`

async function nodeOf(extra: Record<string, string> = {}) {
  const s = await startServer({ env: { ...env, ...extra } })
  servers.push(s)
  return s
}

/** A real Redis Cluster needs redis-server and redis-cli; under CI=true their absence fails. */

let redisCluster: RedisCluster | undefined

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop('SIGKILL')))
  await redisCluster?.stop()
  await dropRedisPrefix(prefix)
})

async function member(url: string, r: string, query: Record<string, string> = {}): Promise<TestClient> {
  const c = await connect(url, query)
  expect((await c.request({ type: 'join', room: r })).type).toBe('joined')
  return c
}

const backends = [
  { name: 'one Redis', test, env: async () => ({}) },
  {
    name: 'a Redis Cluster (3 primaries, 3 replicas)',
    test: needRedisBinaries(),
    env: async () => {
      redisCluster = await startRedisCluster()
      return { REDIS_URL: redisCluster.url, REDIS_CLUSTER: 'true' }
    },
  },
]

for (const backend of backends)
  describe(`cluster through ${backend.name}`, () => {
    const test = backend.test
    let base: Record<string, string> = {}
    const node = (extra: Record<string, string> = {}) => nodeOf({ ...base, ...extra })
    let a: RunningServer
    let b: RunningServer
    let c: RunningServer

    test('three nodes start', async () => {
      base = await backend.env()
      ;[a, b, c] = await Promise.all([node(), node(), node()])
      for (const s of [a, b, c]) expect((await fetch(`${s.url}/readyz`)).status).toBe(200)
    }, 60_000)

    test('a chat sent on one node reaches members on every node', async () => {
      const r = room()
      const [x, y, z] = await Promise.all([member(a.ws, r), member(b.ws, r), member(c.ws, r)])
      const ack = await x.request({ type: 'chat', room: r, body: 'everywhere' })
      for (const m of [x, y, z]) expect(await m.next({ type: 'chat', room: r })).toMatchObject({ id: ack.msg, seq: 1, body: 'everywhere' })
      for (const m of [x, y, z]) m.close()
    })

    test('seq is continuous across nodes with sends alternating between them', async () => {
      const r = room()
      const senders = await Promise.all([member(a.ws, r), member(b.ws, r), member(c.ws, r)])
      const watcher = await member(b.ws, r)
      const acks = await Promise.all(
        Array.from({ length: 60 }, (_, i) => senders[i % 3]!.request({ type: 'chat', room: r, body: `alt${i}` })),
      )
      expect(acks.map((x) => x.seq).sort((p, q) => p - q)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1))
      await until(() => watcher.all('chat').filter((f) => f.room === r).length === 60, '60 messages at the watcher')
      expect(
        watcher
          .all('chat')
          .filter((f) => f.room === r)
          .map((f) => f.seq),
      ).toEqual(Array.from({ length: 60 }, (_, i) => i + 1))
      for (const m of [...senders, watcher]) m.close()
    })

    test('sends to many rooms in one go are all accepted (rooms on every shard)', async () => {
      const x = await connect(a.ws)
      const y = await connect(b.ws)
      const rooms = Array.from({ length: 30 }, () => room())
      await Promise.all(rooms.flatMap((r) => [x.request({ type: 'join', room: r }), y.request({ type: 'join', room: r })]))
      const acks = await Promise.all(
        rooms.flatMap((r) => [
          x.request({ type: 'chat', room: r, body: 'one' }),
          x.request({ type: 'chat', room: r, body: 'two', id: `many-${r}` }),
        ]),
      )
      expect(acks.filter((f) => f.type === 'ack')).toHaveLength(60)
      await until(() => y.all('chat').length === 60, '60 messages on the other node')
      for (const r of rooms)
        expect(
          y
            .all('chat')
            .filter((f) => f.room === r)
            .map((f) => f.seq),
        ).toEqual([1, 2])
      x.close()
      y.close()
    })

    test("a DM reaches the user on another node, and the sender's other connections", async () => {
      const bob = await connect(c.ws, { user: 'cl-bob' })
      const alice = await connect(a.ws, { user: 'cl-alice' })
      const aliceElsewhere = await connect(b.ws, { user: 'cl-alice' })
      await Bun.sleep(100) // user channels are subscribed asynchronously on connect
      const ack = await alice.request({ type: 'dm', to: 'cl-bob', body: 'across nodes' })
      expect(await bob.next({ type: 'dm' })).toMatchObject({ id: ack.msg, body: 'across nodes', from: { id: 'cl-alice' } })
      expect(await aliceElsewhere.next({ type: 'dm' })).toMatchObject({ id: ack.msg })
      expect((await alice.request({ type: 'ping' })).type).toBe('pong')
      expect(alice.all('dm')).toHaveLength(0)
      for (const m of [bob, alice, aliceElsewhere]) m.close()
    })

    test('presence is cluster-wide, with join and leave events on every node', async () => {
      const r = room()
      const p1 = await member(a.ws, r, { user: 'pres-1', name: 'One' })
      const p2 = await connect(c.ws, { user: 'pres-2', name: 'Two' })
      await p2.request({ type: 'join', room: r })
      expect(await p1.next((f) => f.type === 'presence' && f.event === 'join' && f.room === r && f.user.id === 'pres-2')).toMatchObject({
        room: r,
      })
      const list = await p1.request({ type: 'presence', room: r })
      expect(list.users.map((u: { id: string }) => u.id).sort()).toEqual(['pres-1', 'pres-2'])
      p2.close()
      expect(await p1.next((f) => f.type === 'presence' && f.event === 'leave' && f.room === r && f.user.id === 'pres-2')).toMatchObject({
        room: r,
      })
      expect((await p1.request({ type: 'presence', room: r })).users).toEqual([{ id: 'pres-1', name: 'One' }])
      p1.close()
    })

    test('recovery on another node: since+epoch replays exactly what was missed', async () => {
      const r = room()
      const sender = await member(a.ws, r)
      let reader = await member(b.ws, r)
      for (let i = 1; i <= 3; i++) await sender.request({ type: 'chat', room: r, body: `r${i}` })
      await reader.next({ type: 'chat', room: r, seq: 3 })
      const epoch = (await reader.request({ type: 'join', room: r })).epoch
      reader.close()
      for (let i = 4; i <= 8; i++) await sender.request({ type: 'chat', room: r, body: `r${i}` })
      reader = await connect(c.ws)
      expect(await reader.request({ type: 'join', room: r, since: 3, epoch })).toMatchObject({ recovered: true, seq: 8, epoch })
      await sender.request({ type: 'chat', room: r, body: 'r9' })
      await reader.next({ type: 'chat', room: r, seq: 9 })
      expect(
        reader
          .all('chat')
          .filter((f) => f.room === r)
          .map((f) => f.seq),
      ).toEqual([4, 5, 6, 7, 8, 9])
      sender.close()
      reader.close()
    })

    test('a retry with the same id on another node is accepted once with the original ack', async () => {
      const r = room()
      const first = await member(a.ws, r, { user: 'idem-user' })
      const second = await member(b.ws, r, { user: 'idem-user' })
      const ack1 = await first.request({ type: 'chat', room: r, body: 'once', id: 'retry-1' })
      const ack2 = await second.request({ type: 'chat', room: r, body: 'once', id: 'retry-1' })
      expect(ack2).toMatchObject({ msg: ack1.msg, seq: ack1.seq })
      const dm1 = await first.request({ type: 'dm', to: 'someone', body: 'x', id: 'retry-dm' })
      const dm2 = await second.request({ type: 'dm', to: 'someone', body: 'x', id: 'retry-dm' })
      expect(dm2.msg).toBe(dm1.msg)
      const page = await first.request({ type: 'history', room: r })
      expect(page.messages).toHaveLength(1)
      first.close()
      second.close()
    })

    test('SIGTERM drains with 1001; clients resume on another node with no gap', async () => {
      const d = await node()
      const r = room()
      const sender = await member(a.ws, r)
      const leaving = await member(d.ws, r)
      for (let i = 1; i <= 3; i++) await sender.request({ type: 'chat', room: r, body: `d${i}` })
      await leaving.next({ type: 'chat', room: r, seq: 3 })
      const epoch = leaving.all('joined').find((f) => f.room === r)!.epoch
      const last = Math.max(
        ...leaving
          .all('chat')
          .filter((f) => f.room === r)
          .map((f) => f.seq),
      )
      d.proc.kill('SIGTERM')
      expect((await leaving.closed).code).toBe(1001)
      for (let i = 4; i <= 6; i++) await sender.request({ type: 'chat', room: r, body: `d${i}` })
      expect(await d.exited).toBe(0)
      const back = await connect(b.ws)
      expect(await back.request({ type: 'join', room: r, since: last, epoch })).toMatchObject({ recovered: true })
      expect(
        back
          .all('chat')
          .filter((f) => f.room === r)
          .map((f) => f.seq),
      ).toEqual([4, 5, 6])
      sender.close()
      back.close()
    })

    test('a node that dies without cleanup has its members expire within 30 s', async () => {
      const doomed = await node()
      const r = room()
      const watcher = await member(a.ws, r, { user: 'survivor' })
      const ghost = await member(doomed.ws, r, { user: 'ghost' })
      await until(async () => (await watcher.request({ type: 'presence', room: r })).users.length === 2, 'ghost present')
      void doomed.stop('SIGKILL')
      await doomed.exited
      const killedAt = Date.now()
      const leave = await watcher.next((f) => f.type === 'presence' && f.event === 'leave' && f.room === r && f.user.id === 'ghost', 32_000)
      expect(leave.room).toBe(r)
      expect(Date.now() - killedAt).toBeLessThan(30_000)
      expect((await watcher.request({ type: 'presence', room: r })).users.map((u: { id: string }) => u.id)).toEqual(['survivor'])
      watcher.close()
      void ghost
    }, 40_000)
  })

const node = nodeOf

describe('Redis outage', () => {
  test('chat answers unavailable and readyz 503 while Redis is down; after it returns nothing accepted is lost', async () => {
    const redis = await privateRedis({ keepData: true })
    try {
      const outEnv = { REDIS_URL: redis.url, REDIS_PREFIX: 'outage:' }
      const [x, y] = await Promise.all([node(outEnv), node(outEnv)])
      const r = room()
      const sender = await member(x.ws, r)
      const reader = await member(y.ws, r)
      const epoch = reader.all('joined').find((f) => f.room === r)!.epoch
      for (let i = 1; i <= 3; i++) await sender.request({ type: 'chat', room: r, body: `o${i}` })
      await reader.next({ type: 'chat', room: r, seq: 3 })

      await redis.kill()
      await until(async () => (await fetch(`${x.url}/readyz`)).status === 503, 'readyz 503')
      const ready: any = await (await fetch(`${x.url}/readyz`)).json()
      expect(ready.checks.broker).toMatch(/^redis/)
      const refused = await sender.request({ type: 'chat', room: r, body: 'lost?' })
      expect(refused).toMatchObject({ type: 'error', code: 'unavailable' })
      expect((await fetch(`${x.url}/healthz`)).status).toBe(200) // the process keeps serving

      await redis.restart()
      await until(
        async () => (await fetch(`${x.url}/readyz`)).status === 200 && (await fetch(`${y.url}/readyz`)).status === 200,
        'both nodes ready again',
        15_000,
      )
      // Re-subscribed: live traffic flows across nodes again, seq continues.
      const ack = await sender.request({ type: 'chat', room: r, body: 'o4' })
      expect(ack.seq).toBe(4)
      expect(await reader.next({ type: 'chat', room: r, body: 'o4' }, 5000)).toMatchObject({ seq: 4 })
      // A client that resumes with since misses nothing that was accepted. Its node answers from
      // what it has handed over, which may not hold o4 yet (pub/sub brings it to x too, after
      // the ack): o4 is then in the answer or follows it live, once either way.
      const resumed = await connect(x.ws)
      const joined = await resumed.request({ type: 'join', room: r, since: 1, epoch })
      expect(joined).toMatchObject({ recovered: true, epoch })
      expect([3, 4]).toContain(joined.seq)
      await resumed.next({ type: 'chat', room: r, body: 'o4' }, 5000)
      expect(
        resumed
          .all('chat')
          .filter((f) => f.room === r)
          .map((f) => f.body),
      ).toEqual(['o2', 'o3', 'o4'])
      for (const m of [sender, reader, resumed]) m.close()
    } finally {
      await redis.kill()
    }
  }, 40_000)

  test('the subscriber connections dropped (CLIENT KILL TYPE pubsub): what was sent meanwhile arrives once, in order; dms flow again', async () => {
    const redis = await privateRedis({ keepData: true })
    const admin = new Redis(redis.url)
    try {
      const subEnv = { REDIS_URL: redis.url, REDIS_PREFIX: 'subdrop:' }
      const [x, y] = await Promise.all([node(subEnv), node(subEnv)])
      const r = room()
      const sender = await member(x.ws, r, { user: 'sd-ann' })
      const reader = await member(y.ws, r, { user: 'sd-bob' })
      await sender.request({ type: 'chat', room: r, body: 'k1' })
      await reader.next({ type: 'chat', room: r, body: 'k1' })

      for (let round = 0; round < 2; round++) {
        const subscribers = async () =>
          String(await admin.call('CLIENT', 'LIST', 'TYPE', 'pubsub'))
            .trim()
            .split('\n')
            .filter(Boolean).length
        await until(async () => (await subscribers()) >= 2, 'both nodes subscribed (again)', 10_000)
        expect(Number(await admin.client('KILL', 'TYPE', 'pubsub'))).toBeGreaterThanOrEqual(2)
        for (let i = 0; i < 3; i++) await sender.request({ type: 'chat', room: r, body: `k${round}-${i}` })
      }
      // The reader's node repairs from the room's stream once it has subscribed again.
      await reader.next({ type: 'chat', room: r, body: 'k1-2' }, 10_000)
      const after = await sender.request({ type: 'chat', room: r, body: 'live again' })
      await reader.next({ type: 'chat', room: r, body: 'live again' }, 5000)
      const bodies = reader
        .all('chat')
        .filter((f) => f.room === r)
        .map((f) => f.body)
      expect(bodies).toEqual(['k1', 'k0-0', 'k0-1', 'k0-2', 'k1-0', 'k1-1', 'k1-2', 'live again'])
      expect(
        reader
          .all('chat')
          .filter((f) => f.room === r)
          .map((f) => f.seq),
      ).toEqual(Array.from({ length: after.seq }, (_, i) => i + 1))
      // A user's topic (not a room's: nothing to repair it from) is subscribed again too.
      await until(
        async () => {
          const ack = await sender.request({ type: 'dm', to: 'sd-bob', body: `dm ${Date.now()}` })
          return reader.all('dm').some((f) => f.seq === ack.seq)
        },
        'a dm reaches the reader after the drop',
        10_000,
      )
      expect(new Set(reader.all('dm').map((f) => f.id)).size).toBe(reader.all('dm').length) // none twice
      sender.close()
      reader.close()
    } finally {
      admin.disconnect()
      await redis.kill()
    }
  }, 40_000)

  test('Redis back without its data: members get a fresh joined with the new epoch, and chat flows again', async () => {
    const redis = await privateRedis({ keepData: false })
    try {
      const emptyEnv = { REDIS_URL: redis.url, REDIS_PREFIX: 'empty:' }
      const [x, y] = await Promise.all([node(emptyEnv), node(emptyEnv)])
      const r = room()
      const sender = await member(x.ws, r)
      const reader = await member(y.ws, r)
      const before = reader.all('joined').find((f) => f.room === r)!
      for (let i = 1; i <= 3; i++) await sender.request({ type: 'chat', room: r, body: `e${i}` })
      await reader.next({ type: 'chat', room: r, seq: 3 })

      await redis.kill()
      await redis.restart() // no AOF, no RDB: every room's state is gone
      await until(async () => (await fetch(`${y.url}/readyz`)).status === 200, 'node ready again', 15_000)
      // The node notices the restart when it repairs after reconnecting, and tells its members.
      const reset = await reader.next((f) => f.type === 'joined' && f.room === r && f.id === undefined && f.epoch !== before.epoch, 10_000)
      expect(reset.recovered).toBe(false)
      await until(async () => (await fetch(`${x.url}/readyz`)).status === 200, 'sender node ready again', 15_000)
      const ack = await sender.request({ type: 'chat', room: r, body: 'after the restart' }, 5000)
      expect(ack.seq).toBe(reset.seq + 1)
      expect(await reader.next({ type: 'chat', room: r, body: 'after the restart' }, 5000)).toMatchObject({ seq: ack.seq })
      sender.close()
      reader.close()
    } finally {
      await redis.kill()
    }
  }, 40_000)
})

describe('Redis Cluster outage', () => {
  const test = needRedisBinaries()
  test('every instance down: unavailable and readyz 503; back without data: members get a fresh joined and chat flows again', async () => {
    const rc = await startRedisCluster()
    try {
      const clEnv = { REDIS_URL: rc.url, REDIS_CLUSTER: 'true', REDIS_PREFIX: 'clout:' }
      const [x, y] = await Promise.all([node(clEnv), node(clEnv)])
      const r = room()
      const sender = await member(x.ws, r)
      const reader = await member(y.ws, r)
      const before = reader.all('joined').find((f) => f.room === r)!
      for (let i = 1; i <= 3; i++) await sender.request({ type: 'chat', room: r, body: `k${i}` })
      await reader.next({ type: 'chat', room: r, seq: 3 })

      for (const p of rc.ports) await rc.kill(p)
      await until(async () => (await fetch(`${x.url}/readyz`)).status === 503, 'readyz 503', 10_000)
      const ready: any = await (await fetch(`${x.url}/readyz`)).json()
      expect(ready.checks.broker).toMatch(/^redis/)
      expect(await sender.request({ type: 'chat', room: r, body: 'lost?' }, 5000)).toMatchObject({ type: 'error', code: 'unavailable' })
      expect((await fetch(`${x.url}/healthz`)).status).toBe(200)

      for (const p of rc.ports) await rc.restart(p) // nodes.conf kept, data not: the same cluster, empty
      await rc.waitOk()
      await until(
        async () => (await fetch(`${x.url}/readyz`)).status === 200 && (await fetch(`${y.url}/readyz`)).status === 200,
        'both nodes ready again',
        30_000,
      )
      const reset = await reader
        .next((f) => f.type === 'joined' && f.room === r && f.id === undefined && f.epoch !== before.epoch, 15_000)
        .catch((err) => {
          console.error(
            y.logs
              .slice(-25)
              .map((l) => JSON.stringify(l))
              .join('\n'),
          )
          throw err
        })
      expect(reset.recovered).toBe(false)
      let ack: Record<string, any> = {}
      await until(
        async () => (ack = await sender.request({ type: 'chat', room: r, body: 'after the outage' }, 4000)).type === 'ack',
        'a send accepted',
        20_000,
      )
      expect(await reader.next({ type: 'chat', room: r, body: 'after the outage' }, 5000)).toMatchObject({ seq: ack.seq })
      sender.close()
      reader.close()
    } finally {
      await rc.stop()
    }
  }, 90_000)
})
