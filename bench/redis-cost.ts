/**
 * What Redis itself pays (issue 34): Redis CPU and commands per appended chat message, per
 * connect and per close, on a PRIVATE redis-server (nothing else talks to it, so its CPU and its
 * `INFO commandstats` are the chat-server node's alone).
 *
 *   npx bun run bench/redis-cost.ts [--messages=20000] [--senders=4] [--window=32] [--connects=2000] [--parallel=50] [--monitor]
 *   npm run bench -- --only=redis-cost      (the same, through bench/run.ts)
 *
 * (a) `--messages` plain chat messages (acked, `--window` in flight per sender) into one room;
 * (b) `--connects` distinct users connecting (each joins DEFAULT_ROOM), `--parallel` at a time,
 * then all closed, then the same users connecting again (members already: a reconnect's case). Each phase starts from `CONFIG RESETSTAT`; Redis CPU is `INFO cpu`
 * (used_cpu_sys + used_cpu_user: all of Redis's work, network I/O included), next to the sum of
 * commandstats' `usec` (a script's time counts both as EVALSHA and as its commands). The
 * commands counted include those a script runs.
 * `--monitor`: also prints every command Redis received for ONE connect (MONITOR), to count
 * its round trips. Everything is bounded in time; prints Markdown.
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Redis from 'ioredis'
import { cpuSeconds, startServer } from './lib/proc'

const arg = (k: string, d: string) => process.argv.find((a) => a.startsWith(`--${k}=`))?.split('=')[1] ?? d
const MESSAGES = Number(arg('messages', '20000'))
const SENDERS = Number(arg('senders', '4'))
const WINDOW = Number(arg('window', '32'))
const CONNECTS = Number(arg('connects', '2000'))
const PARALLEL = Number(arg('parallel', '50'))
const MONITOR = process.argv.includes('--monitor')
const ROOM = 'redis-cost'
const PHASE_MS = 120_000

async function freePort(): Promise<number> {
  const s = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } })
  const p = s.port
  s.stop(true)
  return p
}

async function privateRedis() {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'chat-redis-cost-'))
  const proc = Bun.spawn(
    ['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'],
    {
      stdout: 'ignore',
      stderr: 'ignore',
    },
  )
  const r = new Redis(port, '127.0.0.1', { retryStrategy: () => 20, maxRetriesPerRequest: null })
  r.on('error', () => {}) // refused until it listens: retried
  await r.ping()
  return { port, proc, r, url: `redis://127.0.0.1:${port}` }
}

interface Stats {
  calls: Map<string, number>
  usecOf: Map<string, number>
  usec: number
  cpu: number
}

async function stats(r: Redis, pid: number): Promise<Stats> {
  const text = await r.info('commandstats')
  const calls = new Map<string, number>()
  const usecOf = new Map<string, number>()
  let usec = 0
  for (const line of text.split('\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line.trim())
    if (!m || m[1] === 'info' || m[1] === 'config') continue
    calls.set(m[1]!, Number(m[2]))
    usecOf.set(m[1]!, Number(m[3]))
    usec += Number(m[3])
  }
  // INFO cpu is getrusage: microseconds, where /proc counts 10 ms ticks.
  const cpu = await r.info('cpu')
  const f = (k: string) => Number(new RegExp(`^${k}:([0-9.]+)`, 'm').exec(cpu)?.[1] ?? NaN)
  return { calls, usecOf, usec, cpu: Number.isNaN(f('used_cpu_sys')) ? cpuSeconds(pid) : f('used_cpu_sys') + f('used_cpu_user') }
}

async function reset(r: Redis, pid: number) {
  await r.config('RESETSTAT')
  return stats(r, pid)
}

function delta(a: Stats, b: Stats) {
  const calls = new Map<string, number>()
  const usecOf = new Map<string, number>()
  for (const [k, v] of b.calls)
    if (v - (a.calls.get(k) ?? 0) > 0) {
      calls.set(k, v - (a.calls.get(k) ?? 0))
      usecOf.set(k, (b.usecOf.get(k) ?? 0) - (a.usecOf.get(k) ?? 0))
    }
  return { calls, usecOf, usec: b.usec - a.usec, cpuUs: (b.cpu - a.cpu) * 1e6 }
}

function open(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url)
    const t = setTimeout(() => reject(new Error('no welcome in 30 s')), 30_000)
    ws.onmessage = (e) => {
      if (String(e.data).startsWith('{"type":"welcome"')) {
        clearTimeout(t)
        ws.onmessage = null
        resolve(ws)
      }
    }
    ws.onerror = () => reject(new Error(`could not connect to ${url}`))
  })
}

function flood(ws: WebSocket, k: number, count: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let next = 0
    let done = 0
    const t = setTimeout(() => reject(new Error('messages: not all acked in time')), PHASE_MS)
    const send = () => ws.send(JSON.stringify({ type: 'chat', room: ROOM, body: `message ${next} of sender ${k}`, id: `s${k}-${next++}` }))
    ws.onmessage = (e) => {
      const text = String(e.data)
      if (text.startsWith('{"type":"error"')) return reject(new Error(text))
      if (!text.startsWith('{"type":"ack"')) return
      done++
      if (next < count) send()
      else if (done === count) {
        clearTimeout(t)
        resolve()
      }
    }
    for (let i = 0; i < Math.min(WINDOW, count); i++) send()
  })
}

async function quiet(r: Redis, pid: number, ms = 300): Promise<Stats> {
  // Until Redis sees no command for `ms` (closes are handled after the sockets go): at most 10 s.
  let last = await stats(r, pid)
  for (let i = 0; i < 10_000 / ms; i++) {
    await Bun.sleep(ms)
    const now = await stats(r, pid)
    const n = (s: Stats) => [...s.calls.values()].reduce((a, b) => a + b, 0)
    if (n(now) === n(last)) return now
    last = now
  }
  return last
}

/** `command calls-each (µs per call)`, the commands of at least one call in 100 operations. */
const fmtCalls = (d: { calls: Map<string, number>; usecOf: Map<string, number> }, per: number) =>
  [...d.calls.entries()]
    .filter(([, v]) => v / per >= 0.01)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${(v / per).toFixed(2)} (${((d.usecOf.get(k) ?? 0) / v).toFixed(1)})`)
    .join(', ')
const total = (calls: Map<string, number>) => [...calls.values()].reduce((a, b) => a + b, 0)

export async function redisCostBench(): Promise<{ table: string; rows: Record<string, number>[] }> {
  const redis = await privateRedis()
  const out: string[] = []
  const rows: Record<string, number>[] = []
  const load = (await Bun.file('/proc/loadavg').text()).split(' ').slice(0, 3).join(' ')
  const started = await startServer('chat', {
    REDIS_URL: redis.url,
    RATE_LIMIT_PER_SEC: '0',
    LOG_LEVEL: 'info',
    ENABLE_DEMO: 'false',
    MAX_BUFFERED_BYTES: String(256 << 20),
    MAX_CONNECTIONS_PER_IP: String(CONNECTS + 100),
  })
  if (!started.ok) throw new Error(`server did not start: ${started.stderr}`)
  const { server } = started
  const url = (u: string) => `ws://127.0.0.1:${server.port}/ws?user=${u}`
  try {
    // (a) messages
    const senders = await Promise.all(Array.from({ length: SENDERS }, (_, i) => open(url(`sender${i}`))))
    for (const s of senders) s.send(JSON.stringify({ type: 'join', room: ROOM }))
    await Bun.sleep(300)
    const per = Math.floor(MESSAGES / SENDERS)
    await Promise.all(senders.map((s, k) => flood(s, k + 100, Math.min(per, 500)))) // warm-up: room state made, JIT warm
    const a0 = await reset(redis.r, redis.proc.pid)
    const t0 = performance.now()
    await Promise.all(senders.map((s, k) => flood(s, k, per)))
    const secs = (performance.now() - t0) / 1000
    const a = delta(a0, await stats(redis.r, redis.proc.pid))
    const n = per * SENDERS
    out.push(`private redis-server, one chat-server node; load average ${load} at start`)
    out.push('')
    out.push(
      '| phase | count | Redis CPU µs each (INFO cpu) | commandstats usec each (scripts and their commands both counted) | commands each | per command: calls each (µs per call) |',
    )
    out.push('|---|---:|---:|---:|---:|---|')
    out.push(
      `| chat message (${SENDERS} senders, ${Math.round(n / secs)}/s) | ${n} | ${(a.cpuUs / n).toFixed(1)} | ${(a.usec / n).toFixed(1)} | ${(total(a.calls) / n).toFixed(2)} | ${fmtCalls(a, n)} |`,
    )
    rows.push({ messages: n, cpuUsPerMessage: a.cpuUs / n, usecPerMessage: a.usec / n, commandsPerMessage: total(a.calls) / n })
    for (const s of senders) s.close()
    await quiet(redis.r, redis.proc.pid)

    // (b) connects, then closes
    const b0 = await reset(redis.r, redis.proc.pid)
    const socks: WebSocket[] = []
    const deadline = Date.now() + PHASE_MS
    for (let i = 0; i < CONNECTS && Date.now() < deadline; i += PARALLEL)
      socks.push(...(await Promise.all(Array.from({ length: Math.min(PARALLEL, CONNECTS - i) }, (_, j) => open(url(`u${i + j}`))))))
    const b = delta(b0, await quiet(redis.r, redis.proc.pid))
    const c0 = await reset(redis.r, redis.proc.pid)
    for (const s of socks) s.close()
    const c = delta(c0, await quiet(redis.r, redis.proc.pid))
    const m = socks.length
    // The same users again (a reconnect storm's case): members of the default room already.
    const d0 = await reset(redis.r, redis.proc.pid)
    const again: WebSocket[] = []
    for (let i = 0; i < m && Date.now() < deadline + PHASE_MS; i += PARALLEL)
      again.push(...(await Promise.all(Array.from({ length: Math.min(PARALLEL, m - i) }, (_, j) => open(url(`u${i + j}`))))))
    const d = delta(d0, await quiet(redis.r, redis.proc.pid))
    for (const s of again) s.close()
    await quiet(redis.r, redis.proc.pid)
    out.push(
      `| connect (${PARALLEL} at a time) | ${m} | ${(b.cpuUs / m).toFixed(1)} | ${(b.usec / m).toFixed(1)} | ${(total(b.calls) / m).toFixed(2)} | ${fmtCalls(b, m)} |`,
    )
    out.push(
      `| close | ${m} | ${(c.cpuUs / m).toFixed(1)} | ${(c.usec / m).toFixed(1)} | ${(total(c.calls) / m).toFixed(2)} | ${fmtCalls(c, m)} |`,
    )
    out.push(
      `| reconnect, same users (${PARALLEL} at a time) | ${again.length} | ${(d.cpuUs / again.length).toFixed(1)} | ${(d.usec / again.length).toFixed(1)} | ${(total(d.calls) / again.length).toFixed(2)} | ${fmtCalls(d, again.length)} |`,
    )
    rows.push({ reconnects: again.length, cpuUsPerReconnect: d.cpuUs / again.length, commandsPerReconnect: total(d.calls) / again.length })
    rows.push({ connects: m, cpuUsPerConnect: b.cpuUs / m, usecPerConnect: b.usec / m, commandsPerConnect: total(b.calls) / m })
    rows.push({ closes: m, cpuUsPerClose: c.cpuUs / m, usecPerClose: c.usec / m, commandsPerClose: total(c.calls) / m })

    if (MONITOR)
      for (const who of ['a new user', 'the same user again']) {
        // One more connect, every command Redis gets for it (the room already warm).
        const mon = await redis.r.monitor()
        const seen: string[] = []
        mon.on('monitor', (time: string, args: string[], source: string) => seen.push(`${time} ${source} ${args.slice(0, 4).join(' ')}`))
        const ws = await open(url('monitored'))
        await Bun.sleep(500)
        mon.disconnect()
        ws.close()
        await Bun.sleep(300)
        out.push('')
        out.push(`one connect of ${who}, ${seen.length} commands (time, client, first arguments):`)
        out.push('```')
        out.push(...seen.filter((l) => !l.includes(':node:')))
        out.push('```')
      }
    return { table: out.join('\n'), rows }
  } finally {
    await server.stop()
    redis.r.disconnect()
    redis.proc.kill('SIGKILL')
    await redis.proc.exited
  }
}

if (import.meta.main) console.log((await redisCostBench()).table)
