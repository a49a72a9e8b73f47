/**
 * Where an idle socket's memory goes: starts chat-server (or the bare reference) with a heap
 * probe preloaded, reads RSS and JSC's heap (objects by type, after a full GC) before and after
 * opening `count` idle sockets, and prints the difference per socket.
 *
 *   bun run bench/idle-memory.ts [--count=10000] [--users=same|distinct] [--kind=chat|bare] [--top=25] [--root=<checkout>] [--census] [--env=K=V,…]
 *
 * --census also prints heap-snapshot nodes per socket with their bytes, and the bytes of the
 * butterflies (out-of-line storage) of Maps and Sets; --env=HEAP_DUMP=/tmp/snap writes the
 * snapshots.
 *
 * `--users=same`: every socket of a generator process is the same named user (scenario 4 of
 * `npm run bench`); `distinct`: one user per socket (its own user topic, membership, presence).
 */
import { join } from 'node:path'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { BUN, ROOT, Worker } from './lib/proc'

const arg = (k: string, d: string) => process.argv.find((a) => a.startsWith(`--${k}=`))?.slice(k.length + 3) ?? d
const COUNT = Number(arg('count', '10000'))
const USERS = arg('users', 'same')
const KIND = arg('kind', 'chat')
const TOP = Number(arg('top', '25'))
/** Another checkout's server (e.g. an export of main) measured with this tool. */
const SERVER_ROOT = arg('root', ROOT)

type Heap = {
  rss: number
  heapSize: number
  heapCapacity: number
  extraMemorySize: number
  objectCount: number
  types: Record<string, number>
}

/** --entry: any other server file (a variant of the bare one, say), with --env=K=V,K=V. */
const entry = arg('entry', KIND === 'bare' ? join(ROOT, 'bench/servers/bare.ts') : join(SERVER_ROOT, 'src/main.ts'))
const EXTRA_ENV = Object.fromEntries(
  arg('env', '')
    .split(',')
    .filter(Boolean)
    .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
)
let onHeap: ((h: Heap) => void) | undefined
let onCensus: ((c: Record<string, number>) => void) | undefined
/** --census: also a V8-format heap snapshot before and after, nodes by type and name (strings by text). */
const CENSUS = process.argv.includes('--census')
const proc = Bun.spawn([BUN, '--preload', join(ROOT, 'bench/lib/heap-probe.ts'), entry], {
  cwd: mkdtempSync(join(tmpdir(), 'chat-idle-')),
  env: {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '/tmp',
    PORT: '0',
    HOST: '127.0.0.1',
    RATE_LIMIT_PER_SEC: '0',
    IDLE_TIMEOUT_S: '960',
    LOG_LEVEL: 'warn',
    ENABLE_DEMO: 'false',
    APP_ENV: 'development',
    MAX_BUFFERED_BYTES: String(256 * 2 ** 20),
    ...EXTRA_ENV,
  },
  stdin: 'ignore',
  stdout: 'pipe',
  stderr: 'inherit',
  ipc: (m: { ev: string; census?: Record<string, number> } & Heap) => (m.ev === 'heap' ? onHeap?.(m) : onCensus?.(m.census!)),
  serialization: 'json',
})
process.on('exit', () => proc.kill('SIGKILL'))
const heap = () => new Promise<Heap>((resolve) => ((onHeap = resolve), proc.send({ cmd: 'heap' })))
const census = () => new Promise<Record<string, number>>((resolve) => ((onCensus = resolve), proc.send({ cmd: 'census' })))

// LOG_LEVEL=warn hides chat-server's `listening`: find the port from the bare line or /proc.
const port = await new Promise<number>(async (resolve) => {
  const d = new TextDecoder()
  let buf = ''
  ;(async () => {
    for await (const chunk of proc.stdout as unknown as AsyncIterable<Uint8Array>) {
      buf += d.decode(chunk)
      const m = /"port":(\d+)/.exec(buf)
      if (m) resolve(Number(m[1]))
    }
  })()
  for (let i = 0; i < 100; i++) {
    await Bun.sleep(100)
    const p = listeningPort(proc.pid)
    if (p) return resolve(p)
  }
})

function listeningPort(pid: number): number | undefined {
  const { readFileSync, readdirSync, readlinkSync } = require('node:fs')
  const inodes = new Set<string>()
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const l = readlinkSync(`/proc/${pid}/fd/${fd}`) as string
      if (l.startsWith('socket:[')) inodes.add(l.slice(8, -1))
    } catch {}
  }
  for (const line of (readFileSync('/proc/net/tcp', 'utf8') as string).split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f[3] === '0A' && inodes.has(f[9]!)) return parseInt(f[1]!.split(':')[1]!, 16)
  }
  return undefined
}

await Bun.sleep(500)
const before = await heap()
const censusBefore = CENSUS ? await census() : {}
const perWorker = 5000
const parts = Array.from({ length: Math.ceil(COUNT / perWorker) }, (_, i) => Math.min(perWorker, COUNT - i * perWorker))
const ws = parts.map((_, i) => new Worker(`idle-${i}`))
const ready = await Promise.all(
  ws.map((w, i) =>
    w.request(
      {
        cmd: 'idle',
        host: '127.0.0.1',
        port,
        count: parts[i]!,
        user: `idle${i}`,
        distinctUsers: USERS === 'distinct',
        waitJoined: KIND === 'chat',
        ramp: 200,
      },
      'ready',
      300_000,
    ),
  ),
)
const open = ready.reduce((s, r) => s + r.open, 0)
await Bun.sleep(Number(arg('settle-s', '2')) * 1000)
const after = await heap()
const censusAfter = CENSUS ? await census() : {}

const kib = (b: number) => (b / 1024).toFixed(2)
console.log(
  `${KIND}, ${open} idle sockets (${USERS} users), load average ${(await Bun.file('/proc/loadavg').text()).split(' ').slice(0, 3).join(' ')}`,
)
console.log(
  `RSS ${Math.round(before.rss / 2 ** 20)} → ${Math.round(after.rss / 2 ** 20)} MiB: ${kib((after.rss - before.rss) / open)} KiB per socket`,
)
console.log(
  `JS heap (after full GC) ${Math.round(before.heapSize / 2 ** 20)} → ${Math.round(after.heapSize / 2 ** 20)} MiB: ${kib((after.heapSize - before.heapSize) / open)} KiB per socket; extra memory ${kib((after.extraMemorySize - before.extraMemorySize) / open)} KiB per socket; objects ${((after.objectCount - before.objectCount) / open).toFixed(1)} per socket; heap capacity ${Math.round(before.heapCapacity / 2 ** 20)} → ${Math.round(after.heapCapacity / 2 ** 20)} MiB`,
)
const rows = Object.keys({ ...before.types, ...after.types })
  .map((t) => [t, ((after.types[t] ?? 0) - (before.types[t] ?? 0)) / open] as const)
  .filter(([, d]) => Math.abs(d) >= 0.01)
  .sort((a, b) => b[1] - a[1])
console.log('objects per socket, by type:')
for (const [t, d] of rows.slice(0, TOP)) console.log(`  ${d.toFixed(2).padStart(7)}  ${t}`)
if (CENSUS) {
  console.log('heap nodes per socket, by type and name (V8-format snapshot):')
  const b = (k: string) => (k.startsWith('bytes ') ? k : `bytes ${k}`)
  const rows = Object.keys({ ...censusBefore, ...censusAfter })
    .filter((k) => !k.startsWith('bytes ') || k.startsWith('bytes butterfly of '))
    .map(
      (k) =>
        [
          k,
          ((censusAfter[k] ?? 0) - (censusBefore[k] ?? 0)) / open,
          ((censusAfter[b(k)] ?? 0) - (censusBefore[b(k)] ?? 0)) / open,
        ] as const,
    )
    .filter(([, d, b]) => Math.abs(d) >= 0.05 || Math.abs(b) >= 4)
    .sort((a, b) => b[2] - a[2])
  console.log('  (count, bytes per socket)')
  for (const [k, d, b] of rows.slice(0, 40)) console.log(`  ${d.toFixed(2).padStart(7)} ${b.toFixed(0).padStart(6)} B  ${k}`)
}
await Promise.all(ws.map((w) => w.exit()))
proc.kill('SIGTERM')
process.exit(0)
