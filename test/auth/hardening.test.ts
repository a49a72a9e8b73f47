// Issue 17: token policy (exp required), the server's reserved identity, and deep JSON.
import { afterAll, describe, expect, test } from 'bun:test'
import { SignJWT, exportJWK, exportSPKI, generateKeyPair } from 'jose'
import type { JWTPayload } from 'jose'
import { deeperThan } from '../../src/protocol/json-depth'
import { connect } from '../helpers/client'
import { startServer } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { upgrade } from '../helpers/upgrade'

const SECRET = 'hardening-secret-0123456789-abcdefghij'
const API_KEY = 'api-key-0123456789-abcdefghijklmnop'
const now = () => Math.floor(Date.now() / 1000)
const servers: RunningServer[] = []

async function server(env: Record<string, string> = {}) {
  const s = await startServer({ env: { RATE_LIMIT_PER_SEC: '0', API_KEY, ...env } })
  servers.push(s)
  return s
}
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop('SIGKILL')))
})

function mint(claims: JWTPayload & Record<string, unknown>) {
  const payload: Record<string, unknown> = { sub: 'alice', iat: now(), ...claims }
  for (const k of Object.keys(payload)) if (payload[k] === undefined) delete payload[k]
  return new SignJWT(payload).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(SECRET))
}

const publish = (s: RunningServer, body: string) =>
  fetch(`${s.url}/api/publish`, { method: 'POST', headers: { authorization: `Bearer ${API_KEY}` }, body })

describe('JWT_REQUIRE_EXP', () => {
  test('production requires exp by default: upgrade 401 missing_exp, refresh refused with an error frame', async () => {
    const s = await server({ APP_ENV: 'production', JWT_SECRET: SECRET, API_KEY: API_KEY })
    expect(await upgrade(s.url, { token: await mint({}) })).toEqual({ status: 401, body: { error: 'unauthorized', reason: 'missing_exp' } })
    const c = await connect(s.ws, { token: await mint({ exp: now() + 600 }) })
    const r = await c.request({ type: 'refresh', token: await mint({}) })
    expect(r).toMatchObject({ type: 'error', code: 'unauthorized', message: 'token: missing_exp' })
    // The socket keeps its old expiry and stays usable.
    expect((await c.request({ type: 'ping' })).type).toBe('pong')
    expect((await c.request({ type: 'refresh', token: await mint({ exp: now() + 900 }) })).type).toBe('ack')
    const metrics = await (await fetch(`${s.url}/metrics`)).text()
    expect(metrics).toContain('chat_auth_refused_total{reason="missing_exp"} 1')
    c.close()
  })

  test('development accepts tokens without exp unless JWT_REQUIRE_EXP=true; production can turn it off', async () => {
    const dev = await server({ JWT_SECRET: SECRET })
    expect((await upgrade(dev.url, { token: await mint({}) })).status).toBe(101)
    const strict = await server({ JWT_SECRET: SECRET, JWT_REQUIRE_EXP: 'true' })
    expect(await upgrade(strict.url, { token: await mint({}) })).toMatchObject({ status: 401, body: { reason: 'missing_exp' } })
    expect((await upgrade(strict.url, { token: await mint({ exp: now() + 60 }) })).status).toBe(101)
    const lax = await server({ APP_ENV: 'production', JWT_SECRET: SECRET, JWT_REQUIRE_EXP: 'false' })
    expect((await upgrade(lax.url, { token: await mint({}) })).status).toBe(101)
  })
})

describe('origins', () => {
  test('a `null` Origin (sandboxed frames, file: pages) is refused like any foreign one', async () => {
    const s = await server({ ALLOWED_ORIGINS: 'https://app.example' })
    expect(await upgrade(s.url, {}, { origin: 'null' })).toEqual({
      status: 403,
      body: { error: 'forbidden', reason: 'origin_not_allowed' },
    })
    expect(await upgrade(s.url, {}, { origin: 'https://app.example.evil.test' })).toMatchObject({ status: 403 })
    expect((await upgrade(s.url, {}, { origin: 'https://app.example' })).status).toBe(101)
  })
})

describe('embedded keys', () => {
  test('a token carrying its own key (jwk header) is verified against the configured key only', async () => {
    const issuer = await generateKeyPair('ES256')
    const attacker = await generateKeyPair('ES256')
    const s = await server({ JWT_PUBLIC_KEY: await exportSPKI(issuer.publicKey) })
    const forged = await new SignJWT({ sub: 'alice', exp: now() + 600 })
      .setProtectedHeader({ alg: 'ES256', jwk: await exportJWK(attacker.publicKey) })
      .sign(attacker.privateKey)
    expect(await upgrade(s.url, { token: forged })).toEqual({ status: 401, body: { error: 'unauthorized', reason: 'bad_signature' } })
    const genuine = await new SignJWT({ sub: 'alice', exp: now() + 600 }).setProtectedHeader({ alg: 'ES256' }).sign(issuer.privateKey)
    expect((await upgrade(s.url, { token: genuine })).status).toBe(101)
  })
})

describe('the server identity', () => {
  test('the publish API sends as {id: server, system: true}; no connection can be "server" or carry system', async () => {
    const s = await server()
    expect(await upgrade(s.url, { user: 'server' })).toEqual({ status: 401, body: { error: 'unauthorized', reason: 'reserved_user' } })
    const c = await connect(s.ws, { user: 'sys-bob', name: 'server', system: 'true' })
    expect(c.welcome.user).toEqual({ id: 'sys-bob', name: 'server' })
    await c.next({ type: 'joined' })
    const res = await publish(s, JSON.stringify({ body: 'maintenance at 10:00' }))
    expect(res.status).toBe(200)
    const fromServer = await c.next({ type: 'chat' })
    expect(fromServer.from).toEqual({ id: 'server', name: 'server', system: true })
    c.send({
      type: 'chat',
      body: 'i am not the server',
      from: { id: 'server', name: 'server', system: true },
      seq: 999,
      ts: '2000-01-01T00:00:00.000Z',
      room: 'general',
    })
    const own = await c.next({ type: 'chat' })
    // from, seq and ts are the server's to set: the ones in the frame are ignored.
    expect(own.from).toEqual({ id: 'sys-bob', name: 'server' })
    expect(own.seq).toBe(fromServer.seq + 1)
    expect(own.ts).not.toBe('2000-01-01T00:00:00.000Z')
    // History keeps the distinction.
    const page = await c.request({ type: 'history', room: 'general' })
    expect(page.messages.map((m: any) => m.from.system ?? false)).toEqual([true, false])
    c.close()
  })

  test('a token whose sub is "server" is refused (upgrade and refresh); a `system` claim is ignored', async () => {
    const s = await server({ JWT_SECRET: SECRET })
    expect(await upgrade(s.url, { token: await mint({ sub: 'server', exp: now() + 600 }) })).toEqual({
      status: 401,
      body: { error: 'unauthorized', reason: 'reserved_user' },
    })
    const c = await connect(s.ws, { token: await mint({ sub: 'carol', name: 'server', system: true, exp: now() + 600 }) })
    expect(c.welcome.user).toEqual({ id: 'carol', name: 'server' })
    const r = await c.request({ type: 'refresh', token: await mint({ sub: 'server', exp: now() + 600 }) })
    expect(r).toMatchObject({ type: 'error', code: 'unauthorized', message: 'token: reserved_user' })
    c.close()
  })
})

describe('deep JSON', () => {
  const deep = (n: number) => '['.repeat(n) + ']'.repeat(n)

  test('deeperThan counts levels without recursion', () => {
    expect(deeperThan(1, 0)).toBe(false)
    expect(deeperThan([], 1)).toBe(false)
    expect(deeperThan([[]], 1)).toBe(true)
    expect(deeperThan({ a: [{ b: 1 }] }, 3)).toBe(false)
    expect(deeperThan({ a: [{ b: {} }] }, 3)).toBe(true)
    expect(deeperThan(JSON.parse(deep(200_000)), 32)).toBe(true)
  })

  test('a chat frame with ~30 000 nested arrays answers bad_request with its id; the socket stays', async () => {
    const s = await server()
    const c = await connect(s.ws)
    await c.next({ type: 'joined' })
    c.sendRaw(`{"type":"chat","id":"deep-1","body":"x","data":${deep(30_000)}}`)
    expect(await c.next({ id: 'deep-1' })).toEqual({
      type: 'error',
      code: 'bad_request',
      message: 'data: nested deeper than 32 levels',
      id: 'deep-1',
    })
    c.sendRaw(`{"type":"dm","id":"deep-2","to":"x","body":"x","data":${deep(30_000)}}`)
    expect(await c.next({ id: 'deep-2' })).toMatchObject({ code: 'bad_request' })
    // Deep values in fields that are not JSON-typed fail their own check, without recursion.
    c.sendRaw(`{"type":"chat","id":"deep-3","body":${deep(30_000)}}`)
    expect(await c.next({ id: 'deep-3' })).toMatchObject({ code: 'bad_request', message: 'body: expected string, got array' })
    c.sendRaw(`{"type":"chat","id":"deep-4","body":"ok","extra":${deep(30_000)}}`)
    expect(await c.next({ id: 'deep-4' })).toMatchObject({ type: 'ack' })
    // At the limit it is accepted.
    const ack = await c.request({ type: 'chat', body: 'at the limit', data: JSON.parse(deep(32)) })
    expect(ack.type).toBe('ack')
    expect(c.frames.some((f) => 'code' in f && typeof f.code === 'number')).toBe(false)
    expect(s.logs.some((l) => l.level === 'error')).toBe(false)
    c.close()
  })

  test('/api/publish with deep data answers 400 bad_request; MAX_JSON_DEPTH moves the limit', async () => {
    const s = await server({ MAX_JSON_DEPTH: '4' })
    const res = await publish(s, `{"body":"x","data":${deep(30_000)}}`)
    expect(res.status).toBe(400)
    expect(await res.json()).toEqual({ error: 'bad_request', reason: 'data: nested deeper than 4 levels' })
    expect((await publish(s, `{"body":"x","data":${deep(5)}}`)).status).toBe(400)
    expect((await publish(s, `{"body":"x","data":${deep(4)}}`)).status).toBe(200)
    const c = await connect(s.ws)
    expect(await c.request({ type: 'chat', body: 'x', data: [[[[[1]]]]] })).toMatchObject({
      code: 'bad_request',
      message: 'data: nested deeper than 4 levels',
    })
    c.close()
  })
})
