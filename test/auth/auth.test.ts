// JWT authentication, per-room authorization and token refresh (issue #3), against real
// server processes. Tokens are minted with jose; nothing of jose is mocked.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { SignJWT, UnsecuredJWT, exportJWK, exportPKCS8, exportSPKI, generateKeyPair, importPKCS8 } from 'jose'
import type { CryptoKey, JWK, JWTPayload } from 'jose'
import type { Server } from 'bun'
import { connect } from '../helpers/client'
import { runServerOnce, startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { upgrade as httpUpgrade } from '../helpers/upgrade'

const SECRET = 'test-secret-0123456789-abcdefghij'
const ISSUER = 'https://issuer.test'
const AUDIENCE = 'chat'

const now = () => Math.floor(Date.now() / 1000)
const secretKey = new TextEncoder().encode(SECRET)

/** A token with the claims the secret server requires (iss, aud, sub, exp), overridable. */
async function mint(
  claims: JWTPayload & Record<string, unknown> = {},
  opts: { key?: CryptoKey | Uint8Array; alg?: string; kid?: string } = {},
) {
  const payload: Record<string, unknown> = {
    sub: 'alice',
    name: 'Alice',
    iss: ISSUER,
    aud: AUDIENCE,
    iat: now(),
    exp: now() + 600,
    ...claims,
  }
  for (const k of Object.keys(payload)) if (payload[k] === undefined) delete payload[k]
  return new SignJWT(payload)
    .setProtectedHeader({ alg: opts.alg ?? 'HS256', ...(opts.kid ? { kid: opts.kid } : {}) })
    .sign(opts.key ?? secretKey)
}

/** The HTTP answer to an upgrade request to `s` (see helpers/upgrade). */
const upgrade = (s: RunningServer, query: Record<string, string> = {}, headers: Record<string, string> = {}) =>
  httpUpgrade(s.url, query, headers)

async function readyz(s: RunningServer) {
  const res = await fetch(`${s.url}/readyz`)
  return { status: res.status, body: (await res.json()) as { status: string; checks: Record<string, string> } }
}

const stillOpen = async (c: Awaited<ReturnType<typeof connect>>) => expect((await c.request({ type: 'ping' })).type).toBe('pong')

// ---------------------------------------------------------------------------------------
describe('shared secret (HS*) with issuer and audience', () => {
  let s: RunningServer
  beforeAll(async () => {
    s = await startServer({ env: { JWT_SECRET: SECRET, JWT_ISSUER: ISSUER, JWT_AUDIENCE: AUDIENCE } })
  })
  afterAll(() => s?.stop())

  test('a valid HS256 token in ?token= connects as its sub and name', async () => {
    const c = await connect(s.ws, { token: await mint({ sub: 'alice', name: 'Alice A.' }) })
    expect(c.welcome.user).toEqual({ id: 'alice', name: 'Alice A.' })
    expect(c.welcome.rooms).toEqual(['general'])
    await c.next({ type: 'joined', room: 'general' })
    c.close()
  })

  test('a valid token in Authorization: Bearer connects; name falls back to sub; HS512 is allowed', async () => {
    const token = await mint({ sub: 'bob', name: undefined }, { alg: 'HS512' })
    const c = await connect(s.ws, {}, { headers: { authorization: `Bearer ${token}` } })
    expect(c.welcome.user).toEqual({ id: 'bob', name: 'bob' })
    c.close()
    const long = await connect(s.ws, { token: await mint({ name: 'n'.repeat(100) }) })
    expect(long.welcome.user.name).toBe('n'.repeat(64))
    long.close()
  })

  test('each bad token is refused before the upgrade with 401 and its reason', async () => {
    const [pem] = await Promise.all([generateKeyPair('RS256')])
    const good = await mint()
    const [h, p, sig] = good.split('.') as [string, string, string]
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), sub: 'mallory' })).toString('base64url')}.${sig}`
    const cases: [string, Record<string, string>, Record<string, string>, string][] = [
      ['no token', {}, {}, 'missing_token'],
      ['a non-Bearer Authorization header', {}, { authorization: `Basic ${btoa('a:b')}` }, 'missing_token'],
      [
        'alg none',
        { token: new UnsecuredJWT({ sub: 'alice', iss: ISSUER, aud: AUDIENCE, exp: now() + 600 }).encode() },
        {},
        'bad_algorithm',
      ],
      ['RS256 where a secret is configured', { token: await mint({}, { alg: 'RS256', key: pem.privateKey }) }, {}, 'bad_algorithm'],
      ['wrong secret', { token: await mint({}, { key: new TextEncoder().encode('another-secret-0123456789') }) }, {}, 'bad_signature'],
      ['tampered payload', { token: tampered }, {}, 'bad_signature'],
      ['expired (past the 5 s leeway)', { token: await mint({ exp: now() - 10 }) }, {}, 'expired'],
      ['nbf ahead (past the 5 s leeway)', { token: await mint({ nbf: now() + 30 }) }, {}, 'not_yet_valid'],
      ['wrong issuer', { token: await mint({ iss: 'https://evil.test' }) }, {}, 'wrong_issuer'],
      ['no issuer', { token: await mint({ iss: undefined }) }, {}, 'wrong_issuer'],
      ['wrong audience', { token: await mint({ aud: 'other' }) }, {}, 'wrong_audience'],
      ['missing sub', { token: await mint({ sub: undefined }) }, {}, 'missing_sub'],
      ['no audience', { token: await mint({ aud: undefined }) }, {}, 'wrong_audience'],
      ['sub longer than 64', { token: await mint({ sub: 'u'.repeat(65) }) }, {}, 'malformed'],
      ['name not a string', { token: await mint({ name: 42 }) }, {}, 'malformed'],
      ['token longer than 8192', { token: await mint({ pad: 'p'.repeat(9000) }) }, {}, 'malformed'],
      ['rooms not a list', { token: await mint({ rooms: 'general' }) }, {}, 'malformed'],
      ['rooms with a non-string', { token: await mint({ rooms: ['general', 3] }) }, {}, 'malformed'],
      ['not a JWT', { token: 'not-a-jwt' }, {}, 'malformed'],
      ['bad token in the header', {}, { authorization: 'Bearer abc.def.ghi' }, 'malformed'],
    ]
    for (const [what, query, headers, reason] of cases) {
      const r = await upgrade(s, query, headers)
      expect({ what, status: r.status, body: r.body }).toEqual({ what, status: 401, body: { error: 'unauthorized', reason } })
    }
    // Nothing was registered, each refusal was counted and logged at warn, and no token reached the log.
    const metrics = await (await fetch(`${s.url}/metrics`)).text()
    expect(metrics).toMatch(/chat_connections 0\b/)
    for (const reason of [
      'missing_token',
      'bad_algorithm',
      'bad_signature',
      'expired',
      'not_yet_valid',
      'wrong_issuer',
      'wrong_audience',
      'missing_sub',
      'malformed',
    ])
      expect(metrics).toMatch(new RegExp(`chat_auth_refused_total\\{reason="${reason}"\\} [1-9]`))
    await until(() => s.logs.filter((l) => l.msg === 'upgrade refused').length >= cases.length, 'refusal log lines')
    const refused = s.logs.filter((l) => l.msg === 'upgrade refused')
    expect(refused.every((l) => l.level === 'warn')).toBe(true)
    const allLogs = JSON.stringify(s.logs) + s.stderr()
    for (const [, query] of cases) if (query.token) expect(allLogs).not.toContain(query.token)
    expect(allLogs).not.toContain(sig)
  })

  test('exp and nbf allow at most a few seconds of clock skew', async () => {
    ;(await connect(s.ws, { token: await mint({ nbf: now() + 3 }) })).close()
    expect((await upgrade(s, { token: await mint({ nbf: now() + 7 }) })).body.reason).toBe('not_yet_valid')
    expect((await upgrade(s, { token: await mint({ exp: now() - 7 }) })).body.reason).toBe('expired')
  })

  test('rooms claim: only matching rooms; DEFAULT_ROOM not allowed is not joined', async () => {
    const c = await connect(s.ws, { token: await mint({ sub: 'carol', rooms: ['team-*', 'lobby'] }) })
    expect(c.welcome.rooms).toEqual([])
    expect((await c.request({ type: 'join', room: 'team-red' })).type).toBe('joined')
    expect((await c.request({ type: 'join', room: 'lobby' })).type).toBe('joined')
    const chat = await c.request({ type: 'chat', room: 'team-red', body: 'hi' })
    expect(chat.type).toBe('ack')
    expect((await c.request({ type: 'history', room: 'team-red' })).messages).toHaveLength(1)
    expect((await c.request({ type: 'presence', room: 'team-red' })).users).toEqual([{ id: 'carol', name: 'Alice' }])
    for (const frame of [
      { type: 'join', room: 'general' },
      { type: 'join', room: 'team' }, // the prefix is `team-`, not `team`
      { type: 'join', room: 'lobby2' },
      { type: 'chat', room: 'general', body: 'x' },
      { type: 'chat', body: 'to the default room' },
      { type: 'history', room: 'general' },
      { type: 'presence', room: 'general' },
    ]) {
      const r = await c.request(frame)
      expect({ frame, type: r.type, code: r.code }).toEqual({ frame, type: 'error', code: 'forbidden' })
    }
    expect(c.all('joined').map((f) => f.room)).toEqual(['team-red', 'lobby'])
    await stillOpen(c)
    c.close()
  })

  test('a token that expires closes the socket with 4001', async () => {
    const c = await connect(s.ws, { token: await mint({ exp: now() + 2 }) })
    const t0 = Date.now()
    const closed = await Promise.race([c.closed, Bun.sleep(5000).then(() => ({ code: -1, reason: 'still open' }))])
    expect(closed).toEqual({ code: 4001, reason: 'token expired' })
    expect(Date.now() - t0).toBeGreaterThan(500)
  }, 15_000)

  test('refresh with a new token for the same sub keeps the socket open past the first expiry', async () => {
    const c = await connect(s.ws, { token: await mint({ exp: now() + 2 }) })
    const r = await c.request({ type: 'refresh', token: await mint({ exp: now() + 600 }) })
    expect(r.type).toBe('ack')
    await Bun.sleep(3500)
    await stillOpen(c)
    c.close()
  }, 15_000)

  test('refresh with a bad token or another sub is refused; the socket stays until the old exp', async () => {
    const c = await connect(s.ws, { token: await mint({ exp: now() + 3 }) })
    const other = await c.request({ type: 'refresh', token: await mint({ sub: 'mallory', exp: now() + 600 }) })
    expect([other.type, other.code]).toEqual(['error', 'forbidden'])
    const bad = await c.request({
      type: 'refresh',
      token: await mint({ exp: now() + 600 }, { key: new TextEncoder().encode('another-secret-0123456789') }),
    })
    expect([bad.type, bad.code, bad.message]).toEqual(['error', 'unauthorized', 'token: bad_signature'])
    const expired = await c.request({ type: 'refresh', token: await mint({ exp: now() - 60 }) })
    expect([expired.type, expired.code, expired.message]).toEqual(['error', 'unauthorized', 'token: expired'])
    await stillOpen(c)
    const closed = await Promise.race([c.closed, Bun.sleep(6000).then(() => ({ code: -1, reason: 'still open' }))])
    expect(closed.code).toBe(4001)
  }, 15_000)

  test("refresh to a token without exp is refused where the socket's token had one: the expiry stays", async () => {
    const c = await connect(s.ws, { token: await mint({ exp: now() + 3 }) })
    const lifted = await c.request({ type: 'refresh', token: await mint({ exp: undefined }) })
    expect([lifted.type, lifted.code, lifted.message]).toEqual(['error', 'unauthorized', 'token: missing_exp'])
    await stillOpen(c)
    const closed = await Promise.race([c.closed, Bun.sleep(6000).then(() => ({ code: -1, reason: 'still open' }))])
    expect(closed).toEqual({ code: 4001, reason: 'token expired' })
    // A socket whose token never expired (JWT_REQUIRE_EXP off) may refresh to another such token, or gain an expiry.
    const forever = await connect(s.ws, { token: await mint({ exp: undefined }) })
    expect((await forever.request({ type: 'refresh', token: await mint({ exp: undefined }) })).type).toBe('ack')
    expect((await forever.request({ type: 'refresh', token: await mint({ exp: now() + 2 }) })).type).toBe('ack')
    const ended = await Promise.race([forever.closed, Bun.sleep(6000).then(() => ({ code: -1, reason: 'still open' }))])
    expect(ended.code).toBe(4001)
  }, 20_000)

  test('refresh applies the new rooms: rooms no longer allowed are left', async () => {
    const c = await connect(s.ws, { token: await mint({ sub: 'dave' }) })
    await c.next({ type: 'joined', room: 'general' })
    expect((await c.request({ type: 'join', room: 'team-blue' })).type).toBe('joined')
    expect((await c.request({ type: 'refresh', token: await mint({ sub: 'dave', rooms: ['team-*'] }) })).type).toBe('ack')
    expect(c.all('left').map((f) => f.room)).toEqual(['general'])
    expect((await c.request({ type: 'chat', room: 'general', body: 'x' })).code).toBe('forbidden')
    expect((await c.request({ type: 'chat', room: 'team-blue', body: 'still here' })).type).toBe('ack')
    c.close()
  })
})

// ---------------------------------------------------------------------------------------
describe('PEM public key', () => {
  let rsa: RunningServer
  let ec: RunningServer
  let rsaPem: string
  let rsaKeys: CryptoKeyPair
  let ecKeys: CryptoKeyPair
  beforeAll(async () => {
    rsaKeys = (await generateKeyPair('RS256', { extractable: true })) as CryptoKeyPair
    ecKeys = (await generateKeyPair('ES256', { extractable: true })) as CryptoKeyPair
    rsaPem = await exportSPKI(rsaKeys.publicKey)
    ;[rsa, ec] = await Promise.all([
      startServer({ env: { JWT_PUBLIC_KEY: rsaPem } }),
      startServer({ env: { JWT_PUBLIC_KEY: (await exportSPKI(ecKeys.publicKey)).replaceAll('\n', '\\n') } }), // escaped line breaks, as in many .env files
    ])
  })
  afterAll(async () => {
    await Promise.all([rsa?.stop(), ec?.stop()])
  })
  const claims = { iss: undefined, aud: undefined }

  test('RS256 and PS256 tokens verify against an RSA key', async () => {
    const c = await connect(rsa.ws, { token: await mint({ ...claims, sub: 'rsa-user' }, { alg: 'RS256', key: rsaKeys.privateKey }) })
    expect(c.welcome.user.id).toBe('rsa-user')
    c.close()
    const ps256 = await importPKCS8(await exportPKCS8(rsaKeys.privateKey), 'PS256')
    ;(await connect(rsa.ws, { token: await mint(claims, { alg: 'PS256', key: ps256 }) })).close()
  })

  test('ES256 verifies against an EC P-256 key', async () => {
    const c = await connect(ec.ws, { token: await mint({ ...claims, sub: 'ec-user' }, { alg: 'ES256', key: ecKeys.privateKey }) })
    expect(c.welcome.user.id).toBe('ec-user')
    c.close()
  })

  test('HS256 signed with the PEM text, alg none, other key types and other keys are refused', async () => {
    const other = await generateKeyPair('RS256')
    const cases: [string, string, string][] = [
      ['HS256 with the public key as secret', await mint(claims, { alg: 'HS256', key: new TextEncoder().encode(rsaPem) }), 'bad_algorithm'],
      ['alg none', new UnsecuredJWT({ sub: 'alice', exp: now() + 600 }).encode(), 'bad_algorithm'],
      ['ES256 against an RSA key', await mint(claims, { alg: 'ES256', key: ecKeys.privateKey }), 'bad_algorithm'],
      ['another RSA key', await mint(claims, { alg: 'RS256', key: other.privateKey }), 'bad_signature'],
    ]
    for (const [what, token, reason] of cases) {
      const r = await upgrade(rsa, { token })
      expect({ what, status: r.status, reason: r.body.reason }).toEqual({ what, status: 401, reason })
    }
    const r = await upgrade(ec, { token: await mint(claims, { alg: 'RS256', key: rsaKeys.privateKey }) })
    expect([r.status, r.body.reason]).toEqual([401, 'bad_algorithm'])
  })

  test('startup refuses an unusable key, a private key, and two key kinds at once', async () => {
    const bad = await runServerOnce({ JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----' })
    expect(bad.code).not.toBe(0)
    expect(bad.stderr).toContain('JWT_PUBLIC_KEY')
    const priv = await runServerOnce({ JWT_PUBLIC_KEY: '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----' })
    expect(priv.code).not.toBe(0)
    expect(priv.stderr).toContain('private key')
    const two = await runServerOnce({ JWT_SECRET: SECRET, JWT_JWKS_URL: 'http://127.0.0.1:1/jwks' })
    expect(two.code).not.toBe(0)
    expect(two.stderr).toContain('JWT_SECRET, JWT_JWKS_URL')
  })
})

// ---------------------------------------------------------------------------------------
/** A tiny JWKS endpoint on 127.0.0.1 that can rotate keys, go down and come back on its port. */
function jwksEndpoint(port = 0) {
  const state = { keys: [] as JWK[], hits: 0, server: undefined as Server<unknown> | undefined, port }
  const up = () => {
    state.server = Bun.serve({
      hostname: '127.0.0.1',
      port: state.port,
      fetch(req) {
        if (new URL(req.url).pathname !== '/jwks') return new Response('no', { status: 404 })
        state.hits++
        return Response.json({ keys: state.keys })
      },
    })
    state.port = state.server.port!
  }
  return {
    state,
    up,
    down: () => state.server?.stop(true),
    get url() {
      return `http://127.0.0.1:${state.port}/jwks`
    },
  }
}

async function signingKey(kid: string, alg = 'RS256') {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' }
  return {
    kid,
    alg,
    privateKey,
    jwk,
    token: (claims: Record<string, unknown> = {}) => mint({ iss: undefined, aud: undefined, ...claims }, { alg, key: privateKey, kid }),
  }
}

describe('JWKS (remote key set)', () => {
  const endpoint = jwksEndpoint()
  let s: RunningServer
  let a: Awaited<ReturnType<typeof signingKey>>
  let b: Awaited<ReturnType<typeof signingKey>>
  beforeAll(async () => {
    ;[a, b] = await Promise.all([signingKey('key-a'), signingKey('key-b', 'ES256')])
    endpoint.state.keys = [a.jwk]
    endpoint.up()
    s = await startServer({ env: { JWT_JWKS_URL: endpoint.url, JWT_JWKS_COOLDOWN_S: '0' } })
    await until(async () => (await readyz(s)).status === 200, 'keys loaded')
  })
  afterAll(async () => {
    endpoint.down()
    await s?.stop()
  })

  test('a token signed with a published key connects; HS256 and unknown keys are refused', async () => {
    const c = await connect(s.ws, { token: await a.token({ sub: 'jwks-user' }) })
    expect(c.welcome.user.id).toBe('jwks-user')
    c.close()
    expect((await upgrade(s, { token: await mint({ iss: undefined, aud: undefined }) })).body.reason).toBe('bad_algorithm')
    expect((await upgrade(s, { token: await b.token() })).body.reason).toBe('unknown_key')
    expect((await readyz(s)).body.checks.auth).toBe('ok')
  })

  test('rotation: a token with a new kid makes the server refetch the set; known kids do not', async () => {
    const before = endpoint.state.hits
    ;(await connect(s.ws, { token: await a.token() })).close()
    expect(endpoint.state.hits).toBe(before) // served from the cache
    endpoint.state.keys = [b.jwk] // the issuer rotated to key-b and retired key-a
    const c = await connect(s.ws, { token: await b.token({ sub: 'rotated' }) })
    expect(c.welcome.user.id).toBe('rotated')
    expect(endpoint.state.hits).toBe(before + 1)
    c.close()
  })

  test('JWKS down: cached keys still verify, a new kid gets 401 keys_unavailable and /readyz 503, until the endpoint is back', async () => {
    const c = await signingKey('key-c', 'EdDSA')
    endpoint.down()
    ;(await connect(s.ws, { token: await b.token() })).close() // cached
    const r = await upgrade(s, { token: await c.token() })
    expect([r.status, r.body]).toEqual([401, { error: 'unauthorized', reason: 'keys_unavailable' }])
    const ready = await readyz(s)
    expect(ready.status).toBe(503)
    expect(ready.body.checks.auth).toStartWith('keys_unavailable')
    expect(s.proc.exitCode).toBeNull()
    endpoint.state.keys = [b.jwk, c.jwk]
    endpoint.up()
    ;(await connect(s.ws, { token: await c.token() })).close()
    expect(await readyz(s)).toMatchObject({ status: 200, body: { checks: { auth: 'ok' } } })
  })
})

describe('JWKS unreachable at startup', () => {
  test('the server starts, refuses with keys_unavailable, reports 503, and recovers when the endpoint comes up', async () => {
    const probe = Bun.serve({ hostname: '127.0.0.1', port: 0, fetch: () => new Response() })
    const port = probe.port!
    probe.stop(true)
    const endpoint = jwksEndpoint(port)
    const key = await signingKey('key-1', 'ES256')
    endpoint.state.keys = [key.jwk]
    const s = await startServer({ env: { JWT_JWKS_URL: endpoint.url } })
    try {
      await until(
        async () => (await readyz(s)).body.checks.auth?.startsWith('keys_unavailable') ?? false,
        'readyz to report keys_unavailable',
      )
      expect((await readyz(s)).status).toBe(503)
      const r = await upgrade(s, { token: await key.token() })
      expect([r.status, r.body.reason]).toEqual([401, 'keys_unavailable'])
      endpoint.up()
      const c = await connect(s.ws, { token: await key.token({ sub: 'late' }) })
      expect(c.welcome.user.id).toBe('late')
      c.close()
      await until(async () => (await readyz(s)).status === 200, 'readyz 200 after recovery')
      expect(s.logs.some((l) => l.msg === 'JWKS unavailable' && l.level === 'warn')).toBe(true)
    } finally {
      endpoint.down()
      await s.stop()
    }
  }, 20_000)
})

describe('auth off', () => {
  test('?user=&name= names the connection; no token is needed', async () => {
    const s = await startServer()
    try {
      const c = await connect(s.ws, { user: 'zed', name: 'Zed' })
      expect(c.welcome.user).toEqual({ id: 'zed', name: 'Zed' })
      expect(c.welcome.rooms).toEqual(['general'])
      const r = await c.request({ type: 'refresh', token: 'x' })
      expect(r.code).toBe('bad_request')
      c.close()
    } finally {
      await s.stop()
    }
  })
})
