/**
 * The cost of the TLS handshake: WebSocket connections per second to a real server process
 * (`bun src/main.ts`), with and without TLS_CERT_FILE/TLS_KEY_FILE. Each connection is opened,
 * waits for its `welcome` and is closed; `--concurrency` of them are in flight at once.
 * Bounded: `--n` connections per round (and at most `--max-s` seconds each), `--rounds` rounds
 * per mode. The certificate is a fresh self-signed P-256 (ECDSA) one, or RSA 2048 with --rsa.
 * Besides the rate (which a busy machine disturbs), the server's CPU time per connection, read
 * from /proc, is the steadier figure.
 *
 *   bun run bench/tls-connect.ts [--n=2000] [--concurrency=16] [--rounds=3] [--max-s=60] [--rsa]
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BUN, ROOT, cpuSeconds } from './lib/proc'

const arg = (k: string, d: number) => Number(process.argv.find((a) => a.startsWith(`--${k}=`))?.split('=')[1] ?? d)
const N = arg('n', 2000)
const CONCURRENCY = arg('concurrency', 16)
const ROUNDS = arg('rounds', 3)
const MAX_MS = arg('max-s', 60) * 1000
const RSA = process.argv.includes('--rsa')

const dir = mkdtempSync(join(tmpdir(), 'bench-tls-'))
const keyArgs = RSA ? ['-newkey', 'rsa:2048'] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1']
const made = Bun.spawnSync(
  [
    'openssl',
    'req',
    '-x509',
    ...keyArgs,
    '-nodes',
    '-days',
    '1',
    '-keyout',
    join(dir, 'k.pem'),
    '-out',
    join(dir, 'c.pem'),
    '-subj',
    '/CN=bench',
    '-addext',
    'subjectAltName=IP:127.0.0.1',
  ],
  { stderr: 'pipe' },
)
if (made.exitCode !== 0) throw new Error(`openssl: ${made.stderr}`)

async function startServer(tls: boolean) {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    RATE_LIMIT_PER_SEC: '0',
    ENABLE_DEMO: 'false',
  }
  if (tls) Object.assign(env, { TLS_CERT_FILE: join(dir, 'c.pem'), TLS_KEY_FILE: join(dir, 'k.pem') })
  // LOG_LEVEL=warn hides the `listening` line: find the port by asking for a free one first.
  const probe = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } })
  env.PORT = String(probe.port)
  probe.stop(true)
  const proc = Bun.spawn([BUN, join(ROOT, 'src/main.ts')], { cwd: dir, env, stdout: 'ignore', stderr: 'inherit' })
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${env.PORT}`
  for (let i = 0; i < 200; i++) {
    const ok = await fetch(`${url}/healthz`, { tls: { rejectUnauthorized: false } } as RequestInit).then(
      (r) => r.ok,
      () => false,
    )
    if (ok) return { proc, ws: `${tls ? 'wss' : 'ws'}://127.0.0.1:${env.PORT}/ws` }
    await Bun.sleep(50)
  }
  proc.kill('SIGKILL')
  throw new Error('server did not start')
}

function once(url: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { tls: { rejectUnauthorized: false } } as never)
    const timer = setTimeout(() => {
      ws.close()
      reject(new Error('no welcome in 5 s'))
    }, 5000)
    ws.onmessage = () => {
      clearTimeout(timer)
      ws.close()
      resolve()
    }
    ws.onerror = () => {
      clearTimeout(timer)
      reject(new Error('connect failed'))
    }
  })
}

async function round(url: string, pid: number) {
  const cpu0 = cpuSeconds(pid)
  let started = 0
  let done = 0
  let failed = 0
  const t0 = performance.now()
  const lane = async () => {
    while (started < N && performance.now() - t0 < MAX_MS) {
      started++
      await once(url).then(
        () => done++,
        () => failed++,
      )
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, lane))
  const s = (performance.now() - t0) / 1000
  return { done, failed, perSec: done / s, cpuMs: ((cpuSeconds(pid) - cpu0) * 1000) / Math.max(1, done) }
}

const results: Record<string, number[]> = { plain: [], tls: [] }
const cpu: Record<string, number[]> = { plain: [], tls: [] }
for (const mode of ['plain', 'tls'] as const) {
  const server = await startServer(mode === 'tls')
  try {
    await round(server.ws, server.proc.pid) // warm-up, not counted
    for (let r = 0; r < ROUNDS; r++) {
      const x = await round(server.ws, server.proc.pid)
      cpu[mode]!.push(x.cpuMs)
      if (x.failed) console.warn(`${mode}: ${x.failed} connections failed`)
      results[mode]!.push(x.perSec)
    }
  } finally {
    server.proc.kill('SIGTERM')
    await server.proc.exited
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const plain = median(results.plain!)
const tls = median(results.tls!)
console.log(
  `connections/s (open, welcome, close; ${N} per round, ${CONCURRENCY} in flight, median of ${ROUNDS}; certificate ${RSA ? 'RSA 2048' : 'ECDSA P-256'}):`,
)
console.log(
  `  ws://  ${plain.toFixed(0)}   rounds: ${results.plain!.map((x) => x.toFixed(0)).join(', ')}   server CPU ${median(cpu.plain!).toFixed(3)} ms per connection`,
)
console.log(
  `  wss:// ${tls.toFixed(0)}   rounds: ${results.tls!.map((x) => x.toFixed(0)).join(', ')}   server CPU ${median(cpu.tls!).toFixed(3)} ms per connection`,
)
console.log(
  `  TLS costs ${(1000 / tls - 1000 / plain).toFixed(3)} ms per connection (${((1 - tls / plain) * 100).toFixed(0)}% fewer connections/s); client and server share this machine's cores`,
)
