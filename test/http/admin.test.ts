/**
 * The admin API: refused without the key, off without API_KEY, and with Redis a view of the
 * whole cluster whose counts follow the clients of every node.
 */
import { afterAll, describe, expect, test as plainTest } from 'bun:test'
import { connect } from '../helpers/client'
import type { TestClient } from '../helpers/client'
import { startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { needService, dropRedisPrefix } from '../helpers/services'

const API_KEY = 'admin-test-key-0123456789'
const servers: RunningServer[] = []
const prefix = `test-admin-${process.pid}-${Date.now()}:`

async function node(env: Record<string, string> = {}) {
  const s = await startServer({ env: { RATE_LIMIT_PER_SEC: '0', ...env } })
  servers.push(s)
  return s
}
const admin = async (s: RunningServer, path: string) => {
  const res = await fetch(s.url + path, { headers: { authorization: `Bearer ${API_KEY}` } })
  expect(res.status).toBe(200)
  return (await res.json()) as any
}

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()))
  await dropRedisPrefix(prefix)
})

describe('admin API and page on one node', () => {
  plainTest('refused without the key (401), off without API_KEY (403, no page)', async () => {
    const on = await node({ API_KEY })
    for (const path of ['/api/admin/nodes', '/api/admin/rooms', '/api/admin/series']) {
      const none = await fetch(on.url + path)
      expect(none.status).toBe(401)
      expect(await none.json()).toEqual({ error: 'unauthorized', reason: 'bad_api_key' })
      const wrong = await fetch(on.url + path, { headers: { authorization: 'Bearer admin-test-key-0123456780' } })
      expect(wrong.status).toBe(401)
    }
    const page = await fetch(`${on.url}/admin`)
    expect(page.status).toBe(200)
    const html = await page.text()
    // The key is asked for on the page, never in it.
    expect(html).not.toContain(API_KEY)
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'")
    const js = await (await fetch(`${on.url}/admin/app.js`)).text()
    expect(js).not.toContain(API_KEY)
    expect(js).toContain('sessionStorage')

    const off = await node({})
    const disabled = await fetch(`${off.url}/api/admin/nodes`, { headers: { authorization: `Bearer ${API_KEY}` } })
    expect(disabled.status).toBe(403)
    expect(await disabled.json()).toEqual({ error: 'api_disabled' })
    expect((await fetch(`${off.url}/admin`)).status).toBe(404)
    expect((await fetch(`${off.url}/admin/app.js`)).status).toBe(404)
  })

  plainTest('with the memory engine the view is this node, and its counts follow its clients', async () => {
    const s = await node({ API_KEY })
    const before = await admin(s, '/api/admin/nodes')
    expect(before.scope).toBe('node')
    expect(before.nodes).toHaveLength(1)
    expect(before.nodes[0]).toMatchObject({ connections: 0, redis: 'off', postgres: 'off', draining: false })
    const clients = await Promise.all([1, 2, 3].map((i) => connect(s.ws, { user: `u${i}` })))
    for (const c of clients) expect((await c.request({ type: 'join', room: 'busy' })).type).toBe('joined')
    const now = await admin(s, '/api/admin/nodes')
    expect(now.nodes[0]).toMatchObject({ connections: 3, rooms: 2 })
    const rooms = await admin(s, '/api/admin/rooms?limit=1')
    expect(rooms.rooms).toEqual([{ room: 'busy', members: 3, nodes: 1 }])
    const bad = await fetch(`${s.url}/api/admin/rooms?limit=0`, { headers: { authorization: `Bearer ${API_KEY}` } })
    expect(bad.status).toBe(400)
    expect(await bad.json()).toEqual({ error: 'bad_request', reason: 'limit: must be 1..100' })
    for (const c of clients) c.close()
  })
})

const test = await needService('Redis', 6379)

describe('admin API across a cluster through Redis', () => {
  test('every node sees both nodes; connections, rooms and message rates move with clients on either', async () => {
    const env = { API_KEY, REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: prefix }
    const [a, b] = await Promise.all([node({ ...env, NODE_ID: 'admin-a' }), node({ ...env, NODE_ID: 'admin-b' })])
    const both = async (s: RunningServer) => ((await admin(s, '/api/admin/nodes')).nodes as any[]).map((n) => n.id)
    await until(async () => (await both(a)).length === 2 && (await both(b)).length === 2, 'both nodes in the view', 8000)
    const view = await admin(a, '/api/admin/nodes')
    expect(view.scope).toBe('cluster')
    expect(view.nodes.map((n: any) => n.id)).toEqual(['admin-a', 'admin-b'])
    expect(view.nodes[1]).toMatchObject({ redis: 'ok', postgres: 'off' })

    // Clients on b: a sees b's connections (b writes its record every couple of seconds).
    const clients: TestClient[] = []
    for (let i = 0; i < 4; i++) {
      const c = await connect(b.ws, { user: `cb${i}` })
      expect((await c.request({ type: 'join', room: 'lobby' })).type).toBe('joined')
      clients.push(c)
    }
    const onA = await connect(a.ws, { user: 'ca' })
    expect((await onA.request({ type: 'join', room: 'lobby' })).type).toBe('joined')
    const nodeOf = async (s: RunningServer, id: string) => ((await admin(s, '/api/admin/nodes')).nodes as any[]).find((n) => n.id === id)
    await until(async () => (await nodeOf(a, 'admin-b'))?.connections === 4, "b's 4 connections seen from a", 8000)

    // Chat on b: b's message rate moves, as seen from a.
    const end = Date.now() + 6000
    let rate = 0
    while (Date.now() < end && rate === 0) {
      for (let i = 0; i < 10; i++) clients[i % 4]!.send({ type: 'chat', room: 'lobby', body: `m${i}` })
      await Bun.sleep(300)
      rate = (await nodeOf(a, 'admin-b'))?.msgInPerS ?? 0
    }
    expect(rate).toBeGreaterThan(0)
    expect((await nodeOf(a, 'admin-b')).msgOutPerS).toBeGreaterThan(0)

    // Busiest rooms: lobby's members summed over both nodes.
    await until(
      async () => (await admin(a, '/api/admin/rooms')).rooms.find((r: any) => r.room === 'lobby')?.members === 5,
      'lobby with 5 members over 2 nodes',
      8000,
    )
    expect((await admin(a, '/api/admin/rooms')).rooms.find((r: any) => r.room === 'lobby')).toEqual({ room: 'lobby', members: 5, nodes: 2 })

    // The series sums both nodes: its last points hold the 5 connections and a message rate.
    const series = await admin(a, '/api/admin/series')
    expect(series.intervalMs).toBeGreaterThan(0)
    expect(Math.max(...series.points.map((p: any) => p.connections))).toBe(5)
    expect(Math.max(...series.points.map((p: any) => p.msgInPerS))).toBeGreaterThan(0)

    // A node that stops leaves the view.
    for (const c of [...clients, onA]) c.close()
    expect(await b.stop()).toBe(0)
    await until(async () => (await both(a)).length === 1, 'b gone from the view', 8000)
    expect(await both(a)).toEqual(['admin-a'])
  }, 40_000)
})
