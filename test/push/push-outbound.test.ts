import { afterAll, describe, expect, setDefaultTimeout, test } from 'bun:test'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import webpush from 'web-push'
import { testNodes } from '../helpers/nodes'
import { browserKeys, selfSigned, until } from '../helpers/push-receivers'
import type { RunningServer } from '../helpers/server'
import { dropRedisPrefix, needService } from '../helpers/services'
import { webhookReceiver } from '../helpers/webhook-receiver'

/**
 * Issue 32, item 3, end to end (a real server process, real loopback listeners that
 * record what reaches them):
 * Web Push endpoints under the outbound rule: every URL form of the security review is
 * refused at registration (400 bad_request) and nothing reaches the listener; the rule is
 * checked again at send; a redirect is never followed; an endpoint's error body never reaches
 * the log.
 */

setDefaultTimeout(60_000)

const API_KEY = 'push-outbound-test-key-0123456789abcdef'
const { node, api, as, uid, tag } = testNodes(API_KEY)
const vapid = webpush.generateVAPIDKeys()
const VAPID = {
  PUSH_VAPID_PUBLIC_KEY: vapid.publicKey,
  PUSH_VAPID_PRIVATE_KEY: vapid.privateKey,
  PUSH_VAPID_SUBJECT: 'mailto:ops@example.com',
  PUSH_COALESCE_MS: '100',
}
const keys = browserKeys().keys
const redisTest = await needService('Redis', 6379)

/** A loopback HTTP listener that records every request and answers by path. */
function recorder(answer: (path: string) => Response = () => new Response(null, { status: 201 })) {
  const hits: string[] = []
  const server = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    async fetch(req) {
      const path = new URL(req.url).pathname + new URL(req.url).search
      hits.push(path)
      await req.arrayBuffer()
      return answer(path)
    },
  })
  return { hits, port: server.port!, url: `http://127.0.0.1:${server.port}`, stop: () => server.stop(true) }
}

const member = async (s: RunningServer, room: string, user: string) =>
  expect((await api(s, 'PUT', `/rooms/${room}/members/${user}`, { name: user })).status).toBe(200)
const register = (s: RunningServer, user: string, endpoint: string, subKeys = keys) =>
  api(s, 'PUT', `/users/${user}/devices/web`, { kind: 'webpush', subscription: { endpoint, keys: subKeys } })
const logged = (s: RunningServer) => JSON.stringify(s.logs)

describe('Web Push endpoints under the outbound rule', () => {
  const rec = recorder()
  afterAll(() => rec.stop())

  test('every URL form of the review is refused at registration (400 bad_request, API and frame), and nothing reaches the listener', async () => {
    const s = await node(VAPID) // no OUTBOUND_ALLOW
    const p = rec.port
    const loopbackNames = ['localhost']
    try {
      for (const line of readFileSync('/etc/hosts', 'utf8').split('\n')) {
        const [addr, ...hosts] = line.replace(/#.*/, '').trim().split(/\s+/)
        if (addr?.startsWith('127.')) loopbackNames.push(...hosts.filter((h) => /^[a-z0-9.-]+$/i.test(h)))
      }
    } catch {}
    const forms = [
      `http://127.0.0.1:${p}/push/x`,
      `http://localhost:${p}/push/x`,
      `http://127.1:${p}/push/x`,
      `http://2130706433:${p}/push/x`,
      `http://0x7f.1:${p}/push/x`,
      `http://[::1]:${p}/push/x`,
      `http://[::ffff:127.0.0.1]:${p}/push/x`,
      'http://127.0.0.1:6379/',
      `http://127.0.0.1:${p}/admin/shutdown?confirm=yes`,
      `https://127.0.0.1:${p}/push/x`,
      `https://localhost:${p}/push/x`,
      ...[...new Set(loopbackNames)].slice(0, 6).map((n) => `https://${n}:${p}/push/x`),
      'https://169.254.169.254/latest/meta-data/',
      'https://10.0.0.1/',
      'https://metadata.google.internal/computeMetadata/v1/',
      'https://127.0.0.2/',
      'https://100.64.0.1/',
      'https://[fd00::1]/',
      'https://[fe80::1]/',
    ]
    const user = uid('mallory')
    for (const endpoint of forms) {
      const res = await register(s, user, endpoint)
      const body = await res.json()
      expect([endpoint, res.status, body.error]).toEqual([endpoint, 400, 'bad_request'])
      expect(body.reason).toStartWith('subscription.endpoint: ')
    }
    const c = await as(s, user)
    const r = await c.request({
      type: 'device',
      device: 'web',
      kind: 'webpush',
      subscription: { endpoint: `http://127.1:${p}/push/frame`, keys },
    })
    expect(r).toMatchObject({ type: 'error', code: 'bad_request', message: expect.stringContaining('127.0.0.1 is a loopback address') })
    c.close()
    expect((await (await api(s, 'GET', `/users/${user}/devices`)).json()).devices).toEqual([])
    expect(rec.hits).toEqual([])
  })

  test('a redirect from an endpoint is not followed: the second listener gets nothing; an error body never reaches the log', async () => {
    const stolen = recorder()
    const first = recorder((path) =>
      path.startsWith('/redirect')
        ? new Response(null, { status: 307, headers: { location: `${stolen.url}/steal` } })
        : new Response('INTERNAL-SECRET-TOKEN=abc123', { status: 400, statusText: 'Bad Request' }),
    )
    const hooks = webhookReceiver()
    try {
      const s = await node({
        ...VAPID,
        OUTBOUND_ALLOW: '127.0.0.1',
        WEBHOOK_URL: hooks.url,
        WEBHOOK_SECRET: 'outbound-test-webhook-secret-0123456789',
        WEBHOOK_EVENTS: 'push.failed',
      })
      const room = uid('room')
      const [alice, bob, carol] = [uid('alice'), uid('bob'), uid('carol')]
      for (const u of [alice, bob, carol]) await member(s, room, u)
      expect((await register(s, bob, `${first.url}/redirect/bob`)).status).toBe(201)
      expect((await register(s, carol, `${first.url}/secret/carol`)).status).toBe(201)
      const a = await as(s, alice)
      await a.request({ type: 'chat', room, body: 'hello' })
      const failed = await until('push.failed for bob and carol', () => {
        const evs = hooks.received
          .flatMap((r) => r.events)
          .filter((e) => e.type === 'push.failed' && (e.user?.id === bob || e.user?.id === carol))
        return evs.length >= 2 ? evs : undefined
      })
      expect(first.hits.sort()).toEqual(['/redirect/bob', `/secret/carol`])
      expect(failed.find((e) => e.user?.id === bob)!.reason).toStartWith('status 307')
      expect(failed.find((e) => e.user?.id === carol)!.reason).toBe('status 400 Bad Request')
      await until('the refusals logged', () => logged(s).includes('status 400 Bad Request') || undefined)
      a.close()
      await s.stop()
      expect(stolen.hits).toEqual([])
      expect(logged(s)).not.toContain('INTERNAL-SECRET-TOKEN')
      expect(JSON.stringify(hooks.received)).not.toContain('INTERNAL-SECRET-TOKEN')
    } finally {
      stolen.stop()
      first.stop()
      hooks.stop()
    }
  })

  test('https to a name: the request goes to the checked address, with the name as Host and SNI, and the certificate checked against the name', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'chat-outbound-'))
    const { key, cert } = selfSigned(dir, 'localhost')
    const hits: { path: string; host: string | null }[] = []
    const tlsServer = Bun.serve({
      hostname: '127.0.0.1',
      port: 0,
      tls: { key: Bun.file(key), cert: Bun.file(cert) },
      fetch(req) {
        hits.push({ path: new URL(req.url).pathname, host: req.headers.get('host') })
        return new Response(null, { status: 201 })
      },
    })
    try {
      const s = await node({ ...VAPID, OUTBOUND_ALLOW: '127.0.0.1', NODE_EXTRA_CA_CERTS: cert })
      const room = uid('room')
      const [alice, gus, hal] = [uid('alice'), uid('gus'), uid('hal')]
      for (const u of [alice, gus, hal]) await member(s, room, u)
      const port = tlsServer.port
      expect((await register(s, gus, `https://localhost:${port}/push/by-name`)).status).toBe(201)
      // The same listener by its address: the certificate names localhost only, so TLS refuses it.
      expect((await register(s, hal, `https://127.0.0.1:${port}/push/by-address`)).status).toBe(201)
      const a = await as(s, alice)
      await a.request({ type: 'chat', room, body: 'tls' })
      await until('the push by name', () => hits.some((h) => h.path === '/push/by-name') || undefined)
      await until('the push by address failed (certificate)', () => logged(s).includes('push delivery failed; retrying') || undefined)
      expect(hits).toEqual([{ path: '/push/by-name', host: `localhost:${port}` }])
      a.close()
    } finally {
      tlsServer.stop(true)
    }
  })

  redisTest('the rule holds again at send: a device kept from a looser config is refused when pushed, and never requested', async () => {
    const prefix = `test:outbound:${tag}:`
    const rec2 = recorder()
    try {
      const env = { ...VAPID, REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: prefix }
      const room = uid('room')
      const [alice, dave] = [uid('alice'), uid('dave')]
      // Registered while loopback was allowed (a test setup, or an older server without the rule) ...
      let s = await node({ ...env, OUTBOUND_ALLOW: '127.0.0.1' })
      for (const u of [alice, dave]) await member(s, room, u)
      expect((await register(s, dave, `${rec2.url}/push/dave`)).status).toBe(201)
      await s.stop()
      // ... and pushed by a server that does not allow it.
      s = await node(env)
      const a = await as(s, alice)
      await a.request({ type: 'chat', room, body: 'to dave' })
      await until('the push refused at send', () =>
        logged(s).includes('endpoint refused: 127.0.0.1 is a loopback address') ? true : undefined,
      )
      a.close()
      expect(rec2.hits).toEqual([])
    } finally {
      rec2.stop()
      await dropRedisPrefix(prefix)
    }
  })
})
