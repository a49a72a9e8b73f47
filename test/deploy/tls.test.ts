// TLS in the binary: HTTPS and wss:// on PORT, startup errors naming the variable, certificate
// rotation on SIGHUP without dropping open sockets, and --healthcheck over HTTPS.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import { connect } from '../helpers/client'
import { runServerOnce, startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { needService } from '../helpers/services'

const redisTest = await needService('Redis', 6379)

const dir = mkdtempSync(join(tmpdir(), 'chat-tls-'))
const servers: RunningServer[] = []

/** A self-signed certificate for 127.0.0.1, made with openssl. */
function makeCert(name: string) {
  const r = Bun.spawnSync(
    [
      'openssl',
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '2',
      '-keyout',
      join(dir, `${name}.key`),
      '-out',
      join(dir, `${name}.crt`),
      '-subj',
      `/CN=${name}`,
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stderr: 'pipe' },
  )
  if (r.exitCode !== 0) throw new Error(`openssl failed: ${r.stderr.toString()}`)
  return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`), ca: readFileSync(join(dir, `${name}.crt`), 'utf8') }
}

let a: ReturnType<typeof makeCert>
let b: ReturnType<typeof makeCert>

beforeAll(() => {
  a = makeCert('cert-a')
  b = makeCert('cert-b')
})
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop('SIGKILL')))
})

async function tlsServer(files: { cert: string; key: string }, env: Record<string, string> = {}) {
  const s = await startServer({ env: { TLS_CERT_FILE: files.cert, TLS_KEY_FILE: files.key, RATE_LIMIT_PER_SEC: '0', ...env } })
  servers.push(s)
  return { ...s, https: `https://127.0.0.1:${s.port}`, wss: `wss://127.0.0.1:${s.port}/ws` }
}

/** The CN of the certificate a fresh TLS handshake gets. */
function peerName(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const cn = c.getPeerCertificate().subject.CN
      c.end()
      resolve(String(cn))
    })
    c.on('error', reject)
  })
}

describe('TLS', () => {
  test('HTTPS and wss:// on PORT, verified against the certificate; plain HTTP is not served', async () => {
    const s = await tlsServer(a)
    const res = await fetch(`${s.https}/healthz`, { tls: { ca: a.ca } } as RequestInit)
    expect(res.status).toBe(200)
    expect(s.logs.find((l) => l.msg === 'listening')?.tls).toMatchObject({ subject: 'CN=cert-a' })
    // A client that does not trust the certificate is refused by its own TLS stack.
    await expect(fetch(`${s.https}/healthz`)).rejects.toThrow()
    await expect(fetch(`http://127.0.0.1:${s.port}/healthz`, { signal: AbortSignal.timeout(2000) })).rejects.toThrow()

    const alice = await connect(s.wss, { user: 'tls-alice' }, { tls: { ca: a.ca } } as never)
    const bob = await connect(s.wss, { user: 'tls-bob' }, { tls: { rejectUnauthorized: false } } as never)
    await bob.next({ type: 'joined' })
    const ack = await alice.request({ type: 'chat', body: 'over tls' })
    expect(ack.seq).toBeGreaterThan(0)
    expect(await bob.next({ type: 'chat' })).toMatchObject({ body: 'over tls', from: { id: 'tls-alice' } })
    alice.close()
    bob.close()
  })

  test('a bad, unreadable or lone file stops startup with one line naming the variable', async () => {
    const missing = await runServerOnce({ TLS_CERT_FILE: join(dir, 'nope.crt'), TLS_KEY_FILE: a.key })
    expect(missing.code).toBe(1)
    expect(missing.stderr.trim()).toBe(`config error: TLS_CERT_FILE: cannot read ${join(dir, 'nope.crt')} (ENOENT)`)

    const garbage = join(dir, 'garbage.pem')
    writeFileSync(garbage, '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n')
    const bad = await runServerOnce({ TLS_CERT_FILE: garbage, TLS_KEY_FILE: a.key })
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/^config error: TLS_CERT_FILE: .* is not a valid certificate/)

    const notKey = await runServerOnce({ TLS_CERT_FILE: a.cert, TLS_KEY_FILE: a.cert })
    expect(notKey.stderr).toMatch(/^config error: TLS_KEY_FILE: .* holds no PEM private key/)

    const mismatch = await runServerOnce({ TLS_CERT_FILE: a.cert, TLS_KEY_FILE: b.key })
    expect(mismatch.code).toBe(1)
    expect(mismatch.stderr.trim()).toBe(`config error: TLS_KEY_FILE: ${b.key} is not the key of the certificate in TLS_CERT_FILE`)

    const lone = await runServerOnce({ TLS_CERT_FILE: a.cert })
    expect(lone.code).toBe(1)
    expect(lone.stderr.trim()).toBe('config error: TLS_KEY_FILE: must be set together with TLS_CERT_FILE')
    for (const r of [missing, bad, notKey, mismatch, lone]) expect(r.stdout).not.toContain('listening')
  })

  test('SIGHUP: new connections get the renewed certificate, open sockets stay and still talk to the new ones', async () => {
    const live = { cert: join(dir, 'live.crt'), key: join(dir, 'live.key') }
    copyFileSync(a.cert, live.cert)
    copyFileSync(a.key, live.key)
    const s = await tlsServer(live)
    expect(await peerName(s.port)).toBe('cert-a')
    const old = await connect(s.wss, { user: 'tls-old' }, { tls: { ca: a.ca } } as never)
    await old.next({ type: 'joined' })

    // A broken renewal is refused and the old certificate stays.
    writeFileSync(live.cert, 'garbage')
    s.proc.kill('SIGHUP')
    await until(() => s.logs.some((l) => l.msg === 'SIGHUP: TLS files refused; still serving the old certificate'), 'refusal logged')
    expect(await peerName(s.port)).toBe('cert-a')

    // The renewal (as certbot writes it), then SIGHUP.
    copyFileSync(b.cert, live.cert)
    copyFileSync(b.key, live.key)
    s.proc.kill('SIGHUP')
    await until(() => s.logs.some((l) => l.msg === 'SIGHUP: TLS certificate reloaded for new connections'), 'reload logged')
    for (let i = 0; i < 5; i++) expect(await peerName(s.port)).toBe('cert-b')
    const fresh = await connect(s.wss, { user: 'tls-new' }, { tls: { ca: b.ca } } as never)
    await fresh.next({ type: 'joined' })

    // Both ways across the old and the new listener: room messages, and typing (sent to "everyone but me").
    old.send({ type: 'chat', body: 'from the old socket' })
    expect(await fresh.next({ type: 'chat' })).toMatchObject({ body: 'from the old socket' })
    fresh.send({ type: 'chat', body: 'from the new socket' })
    expect(await old.next((f) => f.type === 'chat' && f.body === 'from the new socket')).toBeTruthy()
    old.send({ type: 'typing', room: 'general' })
    expect(await fresh.next({ type: 'typing' })).toMatchObject({ user: { id: 'tls-old' } })
    fresh.send({ type: 'typing', room: 'general' })
    expect(await old.next({ type: 'typing' })).toMatchObject({ user: { id: 'tls-new' } })
    expect(old.ws.readyState).toBe(WebSocket.OPEN)
    expect(old.all('typing').every((f) => f.user.id !== 'tls-old')).toBe(true)

    // A drain still closes every socket, on both listeners, with 1001.
    const closes = Promise.all([old.closed, fresh.closed])
    expect(await s.stop()).toBe(0)
    expect((await closes).map((c) => c.code)).toEqual([1001, 1001])
  }, 30_000)

  redisTest(
    'WORKERS: SIGHUP to the supervisor reloads the certificate in every worker',
    async () => {
      const live = { cert: join(dir, 'workers.crt'), key: join(dir, 'workers.key') }
      copyFileSync(a.cert, live.cert)
      copyFileSync(a.key, live.key)
      const { freePort } = await import('../helpers/services')
      const s = await tlsServer(live, {
        WORKERS: '2',
        PORT: String(freePort()),
        REDIS_URL: 'redis://127.0.0.1:6379',
        REDIS_PREFIX: `tls-workers-${process.pid}-${Date.now()}:`,
      })
      await until(() => s.logs.filter((l) => l.msg === 'listening').length === 2, 'both workers listening', 10_000)
      for (let i = 0; i < 6; i++) expect(await peerName(s.port)).toBe('cert-a')
      copyFileSync(b.cert, live.cert)
      copyFileSync(b.key, live.key)
      s.proc.kill('SIGHUP')
      await until(
        () => s.logs.filter((l) => l.msg === 'SIGHUP: TLS certificate reloaded for new connections').length === 2,
        'both workers reloaded',
        10_000,
      )
      // The kernel spreads new connections over the workers: every one of them serves the new certificate.
      for (let i = 0; i < 12; i++) expect(await peerName(s.port)).toBe('cert-b')
      expect(await s.stop()).toBe(0)
    },
    30_000,
  )

  test('--healthcheck speaks HTTPS when TLS is on', async () => {
    const s = await tlsServer(a)
    const ok = await runServerOnce({ PORT: String(s.port), TLS_CERT_FILE: a.cert, TLS_KEY_FILE: a.key }, ['--healthcheck'])
    expect(ok.stdout).toContain(`https://127.0.0.1:${s.port}/healthz: 200`)
    expect(ok.code).toBe(0)
    const plain = await runServerOnce({ PORT: String(s.port) }, ['--healthcheck'])
    expect(plain.code).toBe(1)
  })
})
