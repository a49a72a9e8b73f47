// Presence at scale across two nodes and Redis (issue 34): every join and leave reaches each
// member exactly once (a single event or inside one batch), whichever node the user is on,
// and the count and pages are the cluster's.
import { afterAll, beforeAll, expect } from 'bun:test'
import { connect } from '../helpers/client'
import type { TestClient } from '../helpers/client'
import { startServer } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { dropRedisPrefix, needService } from '../helpers/services'

const test = await needService('Redis', 6379)
const API_KEY = 'test-api-key-0123456789'
const prefix = `presence-batch-${process.pid}-${Date.now()}:`
const env = {
  REDIS_URL: 'redis://127.0.0.1:6379',
  REDIS_PREFIX: prefix,
  RATE_LIMIT_PER_SEC: '0',
  API_KEY,
  DEFAULT_ROOM: '',
  PRESENCE_EVENTS_MAX: '3',
  PRESENCE_BATCH_MS: '200',
}
let nodes: RunningServer[] = []
const open: TestClient[] = []

beforeAll(async () => {
  if (test === (await import('bun:test')).test.skip) return
  nodes = await Promise.all([startServer({ env }), startServer({ env })])
})
afterAll(async () => {
  for (const c of open) c.close()
  await Promise.all(nodes.map((s) => s.stop()))
  await dropRedisPrefix(prefix)
})

async function user(s: RunningServer, id: string, room: string): Promise<TestClient> {
  const c = await connect(s.ws, { user: id, name: id.toUpperCase() })
  open.push(c)
  expect((await c.request({ type: 'join', room })).type).toBe('joined')
  return c
}

/** For each user, how `c` heard of it in `room`: 'join'/'leave' events, 'batch+'/'batch-' inside batches. */
function heard(c: TestClient, room: string): Map<string, string[]> {
  const out = new Map<string, string[]>()
  const add = (id: string, how: string) => out.set(id, [...(out.get(id) ?? []), how])
  for (const f of c.frames) {
    if (f.type !== 'presence' || f.room !== room || !f.event) continue
    if (f.event === 'batch') {
      expect(f.count).toBeGreaterThan(3) // never a batch in a room at or below PRESENCE_EVENTS_MAX
      for (const u of f.joined) add(u.id, 'batch+')
      for (const u of f.left) add(u.id, 'batch-')
    } else add(f.user.id, f.event)
  }
  return out
}
async function until(cond: () => boolean, what: string, ms = 15_000) {
  for (const end = Date.now() + ms; !cond(); await Bun.sleep(20)) if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
}

test('two nodes: each join and leave reaches the members of both nodes exactly once; count and pages are the cluster', async () => {
  const room = `pb-${Date.now()}`
  const [a, b] = nodes as [RunningServer, RunningServer]
  const wa = await user(a, 'wa', room)
  const wb = await user(b, 'wb', room)
  await until(() => heard(wa, room).has('wb'), "wb's join on node a")
  // Up to 3 present: events; from the 4th on: batches, users on both nodes.
  const ids = ['u1', 'u2', 'u3', 'u4', 'u5', 'u6']
  const cs = await Promise.all(ids.map((id, i) => user(i % 2 ? b : a, id, room)))
  const all = (c: TestClient, k: number) => ids.every((id) => heard(c, room).get(id)?.length === k)
  await until(() => all(wa, 1) && all(wb, 1), 'every join on both nodes')
  for (const c of cs) c.close()
  await until(() => all(wa, 2) && all(wb, 2), 'every leave on both nodes')
  for (const w of [wa, wb]) {
    const got = heard(w, room)
    for (const id of ids) {
      const [joined, left] = got.get(id)!
      expect(['join', 'batch+']).toContain(joined!)
      expect(['leave', 'batch-']).toContain(left!)
    }
    // Above the threshold there were batches, not only events.
    expect([...got.values()].flat().filter((h) => h.startsWith('batch')).length).toBeGreaterThan(0)
  }
  // Count and pages are cluster-wide: users of both nodes, asked on either.
  const late = await Promise.all(['v1', 'v2', 'v3'].map((id, i) => user(i % 2 ? b : a, id, room)))
  // A join is answered before its presence write lands (the write follows the welcome): wait
  // for the count, then page (under a loaded CI the count was asked a moment too early).
  for (let i = 0; (await wb.request({ type: 'presence', room, limit: 2 })).count !== 5; i++) {
    if (i > 100) throw new Error('the late joins were never counted')
    await Bun.sleep(20)
  }
  const seen: string[] = []
  let cursor: string | undefined
  for (let i = 0; i < 10; i++) {
    const p = await wb.request({ type: 'presence', room, limit: 2, ...(cursor ? { cursor } : {}) })
    expect(p.count).toBe(5)
    seen.push(...p.users.map((u: { id: string }) => u.id))
    if (!(cursor = p.next)) break
  }
  expect(seen.sort()).toEqual(['v1', 'v2', 'v3', 'wa', 'wb'])
  const res = await fetch(`${a.url}/api/rooms/${room}/presence`, { headers: { authorization: `Bearer ${API_KEY}` } })
  expect(await res.json()).toMatchObject({ room, count: 5 })
  for (const c of late) c.close()
})

test('a draining node sends the leaves it holds before it goes, though its window is long', async () => {
  const slow = { ...env, PRESENCE_BATCH_MS: '600000', SHUTDOWN_GRACE_S: '5' }
  const [a, b] = await Promise.all([startServer({ env: slow }), startServer({ env: slow })])
  try {
    const room = `pd-${Date.now()}`
    const wa = await user(a, 'dwa', room)
    // At most 3 present: these joins are events, heard at once.
    await user(b, 'db1', room)
    await user(b, 'db2', room)
    await until(() => heard(wa, room).has('db2'), "db2's join")
    // Node a's own joins push the room above the limit (its window never ends in this test).
    for (const id of ['da1', 'da2', 'da3']) await user(a, id, room)
    expect(await b.stop('SIGTERM')).toBe(0)
    await until(() => ['db1', 'db2'].every((id) => heard(wa, room).get(id)?.length === 2), 'the leaves of the drained node')
    for (const id of ['db1', 'db2']) expect(heard(wa, room).get(id)).toEqual(['join', 'batch-'])
  } finally {
    await Promise.all([a.stop(), b.stop().catch(() => 0)])
  }
})

test('a dead node: the leaves its reaping finds in a big room come in a batch, not one event each', async () => {
  const [a, doomed] = await Promise.all([startServer({ env }), startServer({ env })])
  try {
    const room = `pk-${Date.now()}`
    const wa = await user(a, 'kwa', room)
    for (const id of ['ka1', 'ka2', 'ka3']) await user(a, id, room)
    const ghosts = ['kg1', 'kg2', 'kg3']
    for (const id of ghosts) await user(doomed, id, room)
    await until(() => ghosts.every((id) => heard(wa, room).has(id)), 'the ghosts present')
    void doomed.stop('SIGKILL')
    await doomed.exited
    await until(() => ghosts.every((id) => heard(wa, room).get(id)?.length === 2), 'the reaped leaves', 35_000)
    for (const id of ghosts) expect(heard(wa, room).get(id)![1]).toBe('batch-')
  } finally {
    await Promise.all([a.stop(), doomed.stop('SIGKILL').catch(() => 0)])
  }
}, 45_000)

test('one batch per window for the cluster, not one per node: joins through both nodes come together', async () => {
  // A window long enough that no batch of a node-local window could pass for the next window's.
  const wide = { ...env, PRESENCE_BATCH_MS: '2500' }
  const [a, b] = await Promise.all([startServer({ env: wide }), startServer({ env: wide })])
  try {
    const room = `pw-${Date.now()}`
    const wa = await user(a, 'wwa', room)
    const wb = await user(b, 'wwb', room)
    await user(b, 'wx1', room)
    await until(() => heard(wa, room).has('wx1') && heard(wb, room).has('wx1'), "wx1's join")
    // When each batch came (polled every 10 ms): per-node windows would send two at about the same time.
    const at = new Map<TestClient, number[]>([
      [wa, []],
      [wb, []],
    ])
    const seen = new Map<TestClient, number>([
      [wa, wa.frames.length],
      [wb, wb.frames.length],
    ])
    const poll = setInterval(() => {
      for (const [c, times] of at) {
        for (let i = seen.get(c)!; i < c.frames.length; i++) if (c.frames[i]!.event === 'batch') times.push(Date.now())
        seen.set(c, c.frames.length)
      }
    }, 10)
    const ids = ['wy1', 'wy2', 'wy3', 'wy4', 'wy5', 'wy6']
    await Promise.all(ids.map((id, i) => user(i % 2 ? b : a, id, room)))
    await until(() => [wa, wb].every((w) => ids.every((id) => heard(w, room).has(id))), 'every join on both nodes')
    await Bun.sleep(300)
    clearInterval(poll)
    for (const [w, times] of at) {
      expect(ids.every((id) => ['join', 'batch+'].includes(heard(w, room).get(id)![0]!))).toBe(true)
      expect(times.length).toBeGreaterThan(0)
      for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThan(1500)
    }
  } finally {
    await Promise.all([a.stop(), b.stop()])
  }
}, 45_000)
