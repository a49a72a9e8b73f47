// Connection limits (issue 17): per node, per address, per user (cluster-wide through Redis),
// refused before the upgrade with 429; TRUST_PROXY decides when X-Forwarded-For is believed.
import { afterAll, describe, expect, test } from 'bun:test'
import { clientAddress, limitKey, parseRange, trustedProxies } from '../../src/core/client-ip'
import { createDoor } from '../../src/hub/admission'
import type { Ticket } from '../../src/hub/admission'
import { connect } from '../helpers/client'
import type { TestClient } from '../helpers/client'
import { startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { needService } from '../helpers/services'
import { upgrade } from '../helpers/upgrade'
import { createMetrics } from '../../src/metrics'

const redisTest = await needService('Redis', 6379)
const servers: RunningServer[] = []
const clients: TestClient[] = []

async function server(env: Record<string, string>) {
  const s = await startServer({ env: { RATE_LIMIT_PER_SEC: '0', ...env } })
  servers.push(s)
  return s
}
async function open(url: string, query: Record<string, string> = {}, headers?: Record<string, string>) {
  const c = await connect(url, query, headers ? { headers } : undefined)
  clients.push(c)
  return c
}
afterAll(async () => {
  for (const c of clients) c.ws.close()
  await Promise.all(servers.map((s) => s.stop('SIGKILL')))
})

const refusedCount = async (s: RunningServer, reason: string) => {
  const text = await (await fetch(`${s.url}/metrics`)).text()
  const m = new RegExp(`^chat_connections_refused_total\\{reason="${reason}"\\} (\\d+)`, 'm').exec(text)
  return m ? Number(m[1]) : 0
}

describe('admission tickets', () => {
  const ticket = (): Ticket => ({ ip: '', countedUser: undefined, opened: false, released: true })
  const metrics = createMetrics()
  const door = (o: { maxConnections: number; perUser?: number; openWithinMs: number }) =>
    createDoor({ perIp: 0, perUser: 0, origins: undefined, connectRate: 0, trustProxy: undefined, draining: () => false, metrics, ...o })

  test('authentication slower than the open window: the upgrade is still counted once it opens', async () => {
    const limits = door({ maxConnections: 1, openWithinMs: 30 })
    const t = ticket()
    expect(limits.admit(t, undefined, '127.0.0.1')).toBeUndefined()
    await Bun.sleep(60) // a slow JWKS fetch
    expect(await limits.admitUser(t, 'u')).toBeUndefined()
    limits.upgrading(t)
    expect(limits.opened(t)).toBe(true)
    expect(limits.total).toBe(1)
    expect(limits.admit(ticket(), undefined, '127.0.0.1')?.reason).toBe('connections')
    limits.release(t)
    expect(limits.total).toBe(0)
  })

  test('a socket that opens after its ticket was given back is refused, never kept uncounted', async () => {
    const limits = door({ maxConnections: 1, openWithinMs: 20 })
    const t = ticket()
    limits.admit(t, undefined, '127.0.0.1')
    limits.upgrading(t)
    await Bun.sleep(50)
    expect(limits.total).toBe(0)
    expect(limits.opened(t)).toBe(false)
    expect(limits.total).toBe(0)
    limits.release(t) // its close: nothing given back twice
    expect(limits.total).toBe(0)
  })

  test("a refused ticket gives nothing back; a user refused keeps the user's other tickets counted", async () => {
    const limits = door({ maxConnections: 2, perUser: 1, openWithinMs: 1000 })
    const refused = ticket()
    const a = ticket()
    limits.admit(a, undefined, '127.0.0.1')
    expect(await limits.admitUser(a, 'u')).toBeUndefined()
    const b = ticket()
    limits.admit(b, undefined, '127.0.0.1')
    expect((await limits.admitUser(b, 'u'))?.reason).toBe('connections_per_user')
    expect(limits.total).toBe(1)
    limits.release(b) // its close after the refusal
    limits.release(refused) // never admitted
    expect(limits.total).toBe(1)
    limits.release(a)
    const c = ticket()
    limits.admit(c, undefined, '127.0.0.1')
    expect(await limits.admitUser(c, 'u')).toBeUndefined()
  })
})

describe('client address', () => {
  test('X-Forwarded-For is believed only from a trusted proxy, read from the right', () => {
    const trusted = trustedProxies(['127.0.0.1', '10.0.0.0/8', 'fd00::/8'])
    expect(clientAddress('127.0.0.1', '203.0.113.7', trusted)).toBe('203.0.113.7')
    expect(clientAddress('::ffff:127.0.0.1', '203.0.113.7', trusted)).toBe('203.0.113.7')
    // The client can write anything left of what our proxies appended: never believed.
    expect(clientAddress('127.0.0.1', '1.1.1.1, 203.0.113.7, 10.1.2.3', trusted)).toBe('203.0.113.7')
    expect(clientAddress('fd00::1', '2001:db8::5', trusted)).toBe('2001:db8::5')
    // From anyone else the header is ignored.
    expect(clientAddress('198.51.100.2', '203.0.113.7', trusted)).toBe('198.51.100.2')
    expect(clientAddress('127.0.0.1', '203.0.113.7', trustedProxies(undefined))).toBe('127.0.0.1')
    expect(clientAddress('127.0.0.1', 'garbage', trusted)).toBe('127.0.0.1')
    expect(clientAddress('127.0.0.1', undefined, trusted)).toBe('127.0.0.1')
  })

  test('a bad TRUST_PROXY or limit stops startup naming the variable', async () => {
    const { runServerOnce } = await import('../helpers/server')
    const r = await runServerOnce({ TRUST_PROXY: '127.0.0.1, proxy.local' })
    expect(r.code).toBe(1)
    expect(r.stderr.trim()).toBe('config error: TRUST_PROXY: expected a comma list of IP addresses or CIDRs, got "127.0.0.1, proxy.local"')
    const l = await runServerOnce({ MAX_CONNECTIONS_PER_IP: '-1' })
    expect(l.stderr).toMatch(/^config error: MAX_CONNECTIONS_PER_IP: expected a number \(0 = no limit\)/)
    const r2 = await runServerOnce({ CONNECT_RATE_PER_SEC: 'fast' })
    expect(r2.code).toBe(1)
    expect(r2.stderr).toMatch(/^config error: CONNECT_RATE_PER_SEC: expected a number \(0 = no limit\)/)
  }, 20_000)

  test('the per-address limit counts IPv4 addresses and IPv6 /64 networks', () => {
    expect(limitKey('203.0.113.7')).toBe('203.0.113.7')
    expect(limitKey('::ffff:203.0.113.7')).toBe('203.0.113.7')
    expect(limitKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64')
    expect(limitKey('2001:db8:1:2:ffff:ffff:ffff:ffff')).toBe('2001:db8:1:2::/64')
    expect(limitKey('2001:db8:1:3::1')).toBe('2001:db8:1:3::/64')
    expect(limitKey('unknown')).toBe('unknown')
  })

  test('TRUST_PROXY accepts addresses and CIDRs, v4 and v6, and nothing else', () => {
    for (const ok of ['127.0.0.1', '10.0.0.0/8', '0.0.0.0/0', '::1', 'fd00::/8', '::ffff:10.0.0.1']) expect(parseRange(ok)).toBeDefined()
    for (const bad of ['', 'localhost', '10.0.0.0/33', '1.2.3', 'fd00::/129', '10.0.0.0/8/1']) expect(parseRange(bad)).toBeUndefined()
  })
})

describe('per address and per node', () => {
  test('one address floods: it is refused with 429 past its limit; another address still connects and chats', async () => {
    const PER_IP = 50
    const s = await server({ MAX_CONNECTIONS_PER_IP: String(PER_IP), TRUST_PROXY: '127.0.0.1' })
    const started = performance.now()
    const flood: TestClient[] = []
    for (let i = 0; i < PER_IP; i++) flood.push(await open(s.ws, { user: `flood-${i}` }))
    const admittedMs = performance.now() - started
    // The flood goes on: every further upgrade from that address is refused before the upgrade.
    const ATTEMPTS = 500
    const t0 = performance.now()
    const answers = await Promise.all(Array.from({ length: ATTEMPTS }, () => upgrade(s.url, { user: 'flood-more' })))
    const refusedMs = performance.now() - t0
    expect(new Set(answers.map((a) => a.status))).toEqual(new Set([429]))
    expect(answers[0]!.body).toEqual({ error: 'limit', reason: 'connections_per_ip' })
    expect(await refusedCount(s, 'connections_per_ip')).toBe(ATTEMPTS)

    // Another client (a second address, behind the trusted proxy) is unaffected.
    const other = await open(s.ws, { user: 'other-user' }, { 'x-forwarded-for': '203.0.113.7' })
    await other.next({ type: 'joined' })
    const ack = await other.request({ type: 'chat', body: 'still here' })
    expect(ack.type).toBe('ack')
    expect(await flood[0]!.next((f) => f.type === 'chat' && f.body === 'still here')).toBeTruthy()
    await until(() => s.logs.some((l) => l.msg === 'connected' && l.user === 'other-user'), 'connect logged')
    expect(s.logs.find((l) => l.msg === 'connected' && l.user === 'other-user')?.remote).toBe('203.0.113.7')
    // A closed socket gives its place back.
    flood[0]!.ws.close()
    await flood[0]!.closed
    await until(async () => (await upgrade(s.url, { user: 'flood-back' })).status === 101, 'a place freed', 3000)
    console.log(
      `flood: ${PER_IP} sockets admitted in ${admittedMs.toFixed(0)} ms; ${ATTEMPTS} further upgrades refused (429) in ${refusedMs.toFixed(0)} ms; a second address connected and chatted`,
    )
  }, 30_000)

  test('X-Forwarded-For from an untrusted peer is ignored: it cannot dodge the limit', async () => {
    const s = await server({ MAX_CONNECTIONS_PER_IP: '2' })
    await open(s.ws, {}, { 'x-forwarded-for': '203.0.113.1' })
    await open(s.ws, {}, { 'x-forwarded-for': '203.0.113.2' })
    expect(await upgrade(s.url, {}, { 'x-forwarded-for': '203.0.113.3' })).toEqual({
      status: 429,
      body: { error: 'limit', reason: 'connections_per_ip' },
    })
    // Through a trusted proxy, one IPv6 /64 is one address for the limit.
    const v6 = await server({ MAX_CONNECTIONS_PER_IP: '1', TRUST_PROXY: '127.0.0.1' })
    await open(v6.ws, {}, { 'x-forwarded-for': '2001:db8:0:1::1' })
    expect((await upgrade(v6.url, {}, { 'x-forwarded-for': '2001:db8:0:1::2' })).status).toBe(429)
    expect((await upgrade(v6.url, {}, { 'x-forwarded-for': '2001:db8:0:2::1' })).status).toBe(101)
    expect(s.logs.filter((l) => l.msg === 'connected').map((l) => l.remote)).toEqual(['127.0.0.1', '127.0.0.1'])
  })

  test('MAX_CONNECTIONS bounds the node; refused before authentication work', async () => {
    const s = await server({ MAX_CONNECTIONS: '3', JWT_SECRET: 'limits-secret-0123456789-abcdef' })
    // A bad token still counts against nothing: refused with 401 and its place given back.
    for (let i = 0; i < 5; i++) expect((await upgrade(s.url, { token: 'bad' })).status).toBe(401)
    const { SignJWT } = await import('jose')
    const token = await new SignJWT({ sub: 'maxc' })
      .setProtectedHeader({ alg: 'HS256' })
      .sign(new TextEncoder().encode('limits-secret-0123456789-abcdef'))
    for (let i = 0; i < 3; i++) await open(s.ws, { token })
    expect(await upgrade(s.url, { token })).toEqual({ status: 429, body: { error: 'limit', reason: 'connections' } })
    expect(await upgrade(s.url, { token: 'bad' })).toEqual({ status: 429, body: { error: 'limit', reason: 'connections' } })
    expect(await refusedCount(s, 'connections')).toBe(2)
  })

  test('MAX_CONNECTIONS_PER_USER on one node (memory engine)', async () => {
    const s = await server({ MAX_CONNECTIONS_PER_USER: '2' })
    const a = await open(s.ws, { user: 'pu' })
    await open(s.ws, { user: 'pu' })
    expect(await upgrade(s.url, { user: 'pu' })).toEqual({ status: 429, body: { error: 'limit', reason: 'connections_per_user' } })
    expect((await upgrade(s.url, { user: 'pu-other' })).status).toBe(101)
    a.ws.close()
    await a.closed
    await until(async () => (await upgrade(s.url, { user: 'pu' })).status === 101, 'place freed', 3000)
  })
})

describe('per user across a cluster (Redis)', () => {
  redisTest(
    "the limit holds across two nodes; a dead node's connections stop counting",
    async () => {
      const env = {
        REDIS_URL: 'redis://127.0.0.1:6379',
        REDIS_PREFIX: `limits-${process.pid}-${Date.now()}:`,
        MAX_CONNECTIONS_PER_USER: '3',
      }
      const [a, b] = await Promise.all([server({ ...env, NODE_ID: 'lim-a' }), server({ ...env, NODE_ID: 'lim-b' })])
      const onA = [await open(a.ws, { user: 'cu' }), await open(a.ws, { user: 'cu' })]
      await open(b.ws, { user: 'cu' })
      expect(await upgrade(a.url, { user: 'cu' })).toEqual({ status: 429, body: { error: 'limit', reason: 'connections_per_user' } })
      expect(await upgrade(b.url, { user: 'cu' })).toEqual({ status: 429, body: { error: 'limit', reason: 'connections_per_user' } })
      // Other users are not affected, and the user's sockets chat across nodes.
      const other = await open(b.ws, { user: 'cu-other' })
      await other.next({ type: 'joined' })
      await onA[0]!.next({ type: 'joined' })
      await onA[0]!.request({ type: 'chat', body: 'across nodes' })
      expect(await other.next({ type: 'chat' })).toMatchObject({ body: 'across nodes' })
      // A close on node A frees a place on node B.
      onA[0]!.ws.close()
      await onA[0]!.closed
      const tryOpen = () =>
        connect(b.ws, { user: 'cu' }).then(
          (c) => (clients.push(c), true),
          () => false,
        )
      await until(tryOpen, 'place freed across nodes', 5000) // cu: 1 on A + 2 on B
      expect(await upgrade(b.url, { user: 'cu' })).toMatchObject({ status: 429 })
      // Node A dies without a word: its socket stops counting once its lease expires.
      await a.stop('SIGKILL')
      const t0 = Date.now()
      await until(tryOpen, 'dead node forgotten', 25_000)
      console.log(`per-user limit: a killed node's connections stopped counting after ${Date.now() - t0} ms`)
    },
    60_000,
  )
})
