// The single binary (`npm run build`): built once with the flags of package.json's build
// script, copied alone into an empty directory, and run with nothing but environment.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { copyFileSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pkg from '../../package.json'
import { variables } from '../../src/config'
import { connect } from '../helpers/client'
import { ROOT, runServerOnce, startServer, until } from '../helpers/server'
import { freePort, listening } from '../helpers/services'

const BUILD_TIMEOUT_MS = 120_000
let buildDir = ''
let installDir = ''
let bin = ''

/** package.json's build script, with its --outfile pointed at `outfile`. */
function buildCommand(outfile: string): string[] {
  const words = pkg.scripts.build.split(/\s+/)
  expect(words.slice(0, 3)).toEqual(['bun', 'build', '--compile'])
  const at = words.indexOf('--outfile')
  expect(at).toBeGreaterThan(0)
  words[at + 1] = outfile
  return [process.execPath, ...words.slice(1)]
}

beforeAll(async () => {
  buildDir = mkdtempSync(join(tmpdir(), 'chat-server-build-'))
  const proc = Bun.spawn(buildCommand(join(buildDir, 'chat-server')), { cwd: ROOT, stdout: 'pipe', stderr: 'pipe' })
  const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()])
  if (code !== 0) throw new Error(`build failed (${code}): ${out}\n${err}`)
  // Only the executable travels: no source map, no node_modules, no package.json beside it.
  installDir = mkdtempSync(join(tmpdir(), 'chat-server-bin-'))
  bin = join(installDir, 'chat-server')
  copyFileSync(join(buildDir, 'chat-server'), bin)
  Bun.spawnSync(['chmod', '+x', bin])
}, BUILD_TIMEOUT_MS)

afterAll(() => {
  for (const dir of [buildDir, installDir]) if (dir) rmSync(dir, { recursive: true, force: true })
})

describe('single binary', () => {
  test('is one executable file, alone in its directory', () => {
    expect(readdirSync(installDir)).toEqual(['chat-server'])
    expect(statSync(bin).mode & 0o111).not.toBe(0)
  })

  test('--version prints the package.json version', async () => {
    const r = await runServerOnce({}, ['--version'], [bin])
    expect(r.code).toBe(0)
    expect(r.stdout.trim()).toBe(`chat-server ${pkg.version}`)
  })

  test('--help lists every variable with its default', async () => {
    const r = await runServerOnce({}, ['--help'], [bin])
    expect(r.code).toBe(0)
    const lines = r.stdout.split('\n')
    for (const [name, spec] of Object.entries(variables)) {
      // A variable with a default shows `NAME=default`; one without shows `# NAME=`.
      const want = spec.default === undefined ? `# ${name}=` : `${name}=${spec.default}`
      expect(lines).toContain(want)
      expect(r.stdout).toContain(spec.help)
    }
    expect(r.stdout).toContain('--healthcheck')
  })

  test.each([
    ['PORT', 'abc'],
    ['MAX_FRAME_BYTES', 'lots'],
    ['REDIS_URL', 'not a url'],
    ['ENABLE_PERSISTENCE', 'true'],
  ])('a bad %s exits 1 with a line naming it', async (name, value) => {
    const r = await runServerOnce({ [name]: value }, [], [bin])
    expect(r.code).toBe(1)
    const line = r.stderr.split('\n').find((l) => l.includes(name))
    expect(line).toBeDefined()
    expect(line).toStartWith(`config error: ${name}:`)
    expect(r.stdout).not.toContain('listening')
  })

  test('serves the same demo page (or none) as the source does: its assets are embedded', async () => {
    const [fromBin, fromSrc] = await Promise.all([startServer({ command: [bin] }), startServer()])
    try {
      const [a, b] = await Promise.all([fetch(`${fromBin.url}/`), fetch(`${fromSrc.url}/`)])
      expect(a.status).toBe(b.status)
      expect(a.headers.get('content-type')).toBe(b.headers.get('content-type'))
      expect(await a.text()).toBe(await b.text())
    } finally {
      await Promise.all([fromBin.stop(), fromSrc.stop()])
    }
  })

  test('serves /docs, /openapi.json and /admin with their assets embedded, as the source does', async () => {
    const env = { API_KEY: 'binary-test-key-0123456789' }
    const [fromBin, fromSrc] = await Promise.all([startServer({ command: [bin], env }), startServer({ env })])
    try {
      const paths = [
        '/docs',
        '/docs/init.js',
        '/docs/swagger-ui-bundle.js',
        '/docs/swagger-ui.css',
        '/openapi.json',
        '/admin',
        '/admin/app.js',
        '/admin/style.css',
      ]
      for (const path of paths) {
        const [a, b] = await Promise.all([fetch(fromBin.url + path), fetch(fromSrc.url + path)])
        expect({ path, status: a.status }).toEqual({ path, status: 200 })
        expect(a.headers.get('content-type')).toBe(b.headers.get('content-type'))
        const [ta, tb] = await Promise.all([a.text(), b.text()])
        expect({ path, same: ta === tb, size: ta.length > 100 }).toEqual({ path, same: true, size: true })
      }
    } finally {
      await Promise.all([fromBin.stop(), fromSrc.stop()])
    }
  })

  test('serves a chat round trip from env alone, then drains on SIGTERM with 1001 and exits 0', async () => {
    const srv = await startServer({ command: [bin], env: { SHUTDOWN_GRACE_S: '3' } })
    try {
      const health = await fetch(`${srv.url}/healthz`)
      expect(health.status).toBe(200)
      expect(await health.json()).toEqual({ status: 'ok' })

      const alice = await connect(srv.ws, { user: 'alice', name: 'Alice' })
      const bob = await connect(srv.ws, { user: 'bob', name: 'Bob' })
      alice.send({ type: 'chat', body: 'Hello' })
      const [a, b] = await Promise.all([alice.next({ type: 'chat' }), bob.next({ type: 'chat' })])
      for (const f of [a, b]) {
        expect(f.body).toBe('Hello')
        expect(f.from.id).toBe('alice')
        expect(f.seq).toBe(1)
      }
      expect(b.id).toBe(a.id)

      // --healthcheck, the image's HEALTHCHECK, against the live server.
      const hc = await runServerOnce({ PORT: String(srv.port) }, ['--healthcheck'], [bin])
      expect(hc.code).toBe(0)
      expect(hc.stdout).toContain('/healthz')

      srv.proc.kill('SIGTERM')
      const [ca, cb, code] = await Promise.all([alice.closed, bob.closed, srv.exited])
      expect(ca.code).toBe(1001)
      expect(cb.code).toBe(1001)
      expect(code).toBe(0)

      const after = await runServerOnce({ PORT: String(srv.port) }, ['--healthcheck'], [bin])
      expect(after.code).toBe(1)
      expect(after.stderr).toContain('healthcheck failed')
    } finally {
      await srv.stop('SIGKILL')
    }
  })

  test('WORKERS=2 from the binary: it starts itself twice on one port, and one SIGTERM stops both', async () => {
    if (!(await listening(6379))) {
      if (process.env.CI === 'true') throw new Error('Redis is not answering on 127.0.0.1:6379 (CI=true: a missing service is a failure)')
      return console.warn('skipping: Redis is not answering on 127.0.0.1:6379')
    }
    const port = freePort()
    const srv = await startServer({
      command: [bin],
      env: { WORKERS: '2', PORT: String(port), REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: `test-binworkers-${process.pid}:` },
    })
    try {
      await until(() => srv.logs.filter((l) => l.msg === 'listening').length === 2, 'both workers listening', 15_000)
      expect(
        srv.logs
          .filter((l) => l.msg === 'listening')
          .map((l) => l.worker)
          .sort(),
      ).toEqual([1, 2])
      expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200)
      srv.proc.kill('SIGTERM')
      expect(await srv.exited).toBe(0)
      // two workers, then the supervisor (the last lines may still be in the pipe when it exits)
      await until(() => srv.logs.filter((l) => l.msg === 'stopped').length >= 3, 'three stopped lines', 5_000)
      expect(srv.logs.filter((l) => l.msg === 'stopped').length).toBe(3)
    } finally {
      await srv.stop('SIGKILL')
    }
  })
})
