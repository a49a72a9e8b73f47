/**
 * `bun run bench/webhooks.ts`: what webhooks cost and deliver, against receivers in this process.
 *
 *   0. hotpath     the JavaScript cost of one chat frame (bench/hot-path.ts's set-up: hub.message on
 *                  a memory broker, stub sockets) with webhooks off and on (message.created encoded
 *                  and queued; the queue is not drained, its bound drops the oldest), rounds alternating
 *   1. throughput  events queued while the receiver answers 503, then the time the server takes
 *                  to deliver them all once it answers 200 (events/s), memory and Redis engines
 *   2. fanout      bench/run.ts scenario 1 (1 000 members, flood) with webhooks off and on
 *                  (every message.created sent to a local receiver): the fan-out ratio of each,
 *                  and the server's CPU per message; off/on alternate for --rounds rounds and
 *                  the medians are compared (a shared machine's noise moves single runs a lot)
 *   3. hook        chat ack latency, one sender, sequential, without and with the pre-publish hook
 *                  (answering allow), and the hook's own round trip measured alone: the difference
 *                  is what the hook adds beyond its round trip
 *
 * Flags: --only=hotpath,throughput,hook,fanout  --hot-n=100000 (0)  --events=50000 (1)  --batch=100 (1)  --fanout-s=8 --rounds=3 (2)
 *        --hook-n=2000 (3)  --out=bench/results/webhooks.json
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sign } from '../src/webhooks/sign'
import { createWebhooks } from '../src/webhooks'
import { loadConfig } from '../src/config'
import { memoryBroker } from '../src/broker/memory'
import { createHub } from '../src/hub/hub'
import { configureLog } from '../src/log'
import { createMetrics } from '../src/metrics'
import { BUN, ROOT, startServer } from './lib/proc'
import type { Server } from './lib/proc'
import { Histogram } from './lib/histogram'
import { listening } from '../test/helpers/services'
import { memoryMembers } from '../src/members/memory'
import { fakeSocket } from './lib/fake-socket'

const argv = process.argv.slice(2)
const flag = (name: string) => {
  const hit = argv.find((a) => a.startsWith(`--${name}=`))
  return hit?.slice(name.length + 3)
}
if (argv.includes('--help')) {
  console.log(readFileSync(import.meta.path, 'utf8').split('*/')[0])
  process.exit(0)
}
const ONLY = (flag('only') ?? 'hotpath,throughput,hook,fanout').split(',')
const EVENTS = Number(flag('events') ?? 50_000)
const BATCH = flag('batch') ?? '100'
const FANOUT_S = flag('fanout-s') ?? '8'
const ROUNDS = Number(flag('rounds') ?? 3)
const HOOK_N = Number(flag('hook-n') ?? 2000)
const OUT = flag('out') ?? join(ROOT, 'bench/results/webhooks.json')
const SECRET = 'bench-webhook-secret-0123456789'
const log = (...a: unknown[]) => console.error('[bench:webhooks]', ...a)
const results: Record<string, unknown> = { date: new Date().toISOString(), options: { EVENTS, BATCH, FANOUT_S, HOOK_N } }

/** A receiver that counts events; `ok` false answers 503 (the events stay queued). */
function receiver() {
  const state = { ok: true, events: 0, requests: 0, parse: true, firstAt: 0 }
  const server = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    idleTimeout: 0,
    async fetch(req) {
      const body = await req.text()
      if (!state.ok) return new Response('later', { status: 503 })
      if (state.requests++ === 0) state.firstAt = performance.now()
      state.events += state.parse ? (JSON.parse(body) as { events: unknown[] }).events.length : 0
      return new Response('ok')
    },
  })
  return { state, url: `http://127.0.0.1:${server.port}/events`, stop: () => server.stop(true) }
}

async function chatServer(env: Record<string, string>): Promise<Server> {
  const r = await startServer('chat', {
    RATE_LIMIT_PER_SEC: '0',
    LOG_LEVEL: 'info',
    ENABLE_DEMO: 'false',
    IDLE_TIMEOUT_S: '960',
    MAX_BUFFERED_BYTES: String(256 * 2 ** 20),
    ...env,
  })
  if (!r.ok) throw new Error(`chat server did not start (${r.code}): ${r.stderr.slice(0, 300)}`)
  return r.server
}

/** A WebSocket client with a promise per acked chat. */
async function client(port: number, user: string) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?user=${user}`)
  const waiting = new Map<string, () => void>()
  let joined!: () => void
  const ready = new Promise<void>((r) => (joined = r))
  ws.onmessage = (e) => {
    const s = String(e.data)
    if (s.startsWith('{"type":"joined"')) joined()
    else if (s.startsWith('{"type":"ack"') || s.startsWith('{"type":"error"')) {
      const id = (JSON.parse(s) as { id: string }).id
      waiting.get(id)?.()
      waiting.delete(id)
    }
  }
  await ready
  let n = 0
  return {
    chat(body: string) {
      const id = String(++n)
      const p = new Promise<void>((r) => waiting.set(id, r))
      ws.send(`{"type":"chat","id":"${id}","body":${JSON.stringify(body)}}`)
      return p
    },
    close: () => ws.close(),
  }
}

async function metric(port: number, name: string) {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  return Number(
    text
      .split('\n')
      .find((l) => l.startsWith(`${name} `))
      ?.split(' ')[1] ?? NaN,
  )
}

async function until(cond: () => boolean | Promise<boolean>, what: string, ms: number) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await cond()) return
    await Bun.sleep(5)
  }
  throw new Error(`timed out: ${what}`)
}

// ---- 0. the hot path with and without webhooks ----

async function hotpath() {
  const N = Number(flag('hot-n') ?? 100_000)
  configureLog('warn')
  const setup = async (on: boolean) => {
    const env: Record<string, string> = { RATE_LIMIT_PER_SEC: '0', LOG_LEVEL: 'warn', ENABLE_DEMO: 'false' }
    if (on) Object.assign(env, { WEBHOOK_URL: 'http://127.0.0.1:9/never-called', WEBHOOK_SECRET: SECRET, WEBHOOK_QUEUE_MAX: '10000' })
    const config = loadConfig(env)
    const metrics = createMetrics()
    const broker = memoryBroker({ historyLimit: config.HISTORY_LIMIT })
    const server = { publish: () => 1, subscriberCount: () => 10 }
    const webhooks = createWebhooks({ config, metrics, nodeId: 'hot' }) // never started: nothing is sent
    const hub = createHub({
      config,
      broker,
      metrics,
      nodeId: 'hot',
      server: () => server as never,
      webhooks: webhooks?.hub,
      members: memoryMembers(),
    })
    await broker.start(hub.deliver, hub.reset)
    const ws = fakeSocket()
    const c = hub.open(ws as never, { user: { id: 'bench-s-0', name: 'bench-s-0' } }, { remote: '127.0.0.1', userAgent: '' })
    await Bun.sleep(10)
    return { hub, c, metrics }
  }
  const off = await setup(false)
  const on = await setup(true)
  const text = '{"type":"chat","body":"~1795781979100000~ bench message ........"}'
  const round = async (x: typeof off) => {
    const t0 = performance.now()
    for (let i = 0; i < N; i++) {
      void x.hub.message(x.c, JSON.parse(text))
      if ((i & 1023) === 1023) await Promise.resolve()
    }
    await Bun.sleep(0)
    return ((performance.now() - t0) * 1000) / N
  }
  const r = { off: [] as number[], on: [] as number[] }
  for (let i = 0; i < 6; i++) {
    const a = await round(off)
    const b = await round(on)
    if (i > 0) {
      r.off.push(a)
      r.on.push(b)
    }
  }
  const out = {
    frames: N,
    medianUsPerFrame: { off: Math.round(median(r.off) * 1000) / 1000, on: Math.round(median(r.on) * 1000) / 1000 },
    addedUsPerFrame: Math.round((median(r.on) - median(r.off)) * 1000) / 1000,
    eventsQueuedOrDropped: on.metrics.webhook.dropped.n + on.metrics.webhook.depth.read(),
  }
  log('hot path', out)
  return out
}

// ---- 1. delivery throughput ----

async function throughput(engine: 'memory' | 'redis') {
  const rx = receiver()
  rx.state.ok = false
  const env: Record<string, string> = {
    WEBHOOK_URL: rx.url,
    WEBHOOK_SECRET: SECRET,
    WEBHOOK_EVENTS: 'message.created',
    WEBHOOK_BATCH_MAX: BATCH,
    WEBHOOK_QUEUE_MAX: String(EVENTS * 2),
  }
  if (engine === 'redis')
    Object.assign(env, { REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: `bench-wh-${process.pid}-${Date.now()}:` })
  const s = await chatServer(env)
  try {
    const c = await client(s.port, 'bench-tp')
    for (let sent = 0; sent < EVENTS; ) {
      const n = Math.min(1000, EVENTS - sent)
      await Promise.all(Array.from({ length: n }, (_, i) => c.chat(`m${sent + i}`)))
      sent += n
    }
    await until(async () => (await metric(s.port, 'chat_webhook_queue_depth')) >= EVENTS, 'all events queued', 60_000)
    rx.state.ok = true
    // Counted from the first request answered 200 (the deliverer may be in a backoff pause when the receiver comes back).
    await until(() => rx.state.events >= EVENTS, 'all events delivered', 120_000)
    const seconds = (performance.now() - rx.state.firstAt) / 1000
    c.close()
    const r = {
      engine,
      events: rx.state.events,
      requests: rx.state.requests,
      seconds: Math.round(seconds * 1000) / 1000,
      eventsPerSec: Math.round(rx.state.events / seconds),
      batchMax: Number(BATCH),
    }
    log('throughput', r)
    return r
  } finally {
    await s.stop()
    rx.stop()
    if (engine === 'redis') {
      const Redis = (await import('ioredis')).default
      const redis = new Redis('redis://127.0.0.1:6379')
      const keys = await redis.keys(`${env.REDIS_PREFIX}*`)
      if (keys.length) await redis.del(...keys)
      redis.disconnect()
    }
  }
}

// ---- 2. fan-out with webhooks off and on ----

async function runFanout(serverEnv?: Record<string, string>) {
  const out = join(tmpdir(), `bench-wh-fanout-${Date.now()}.json`)
  const args = [BUN, join(ROOT, 'bench/run.ts'), '--only=fanout', '--small-members=0', `--fanout-s=${FANOUT_S}`, `--out=${out}`]
  if (serverEnv)
    args.push(
      `--server-env=${Object.entries(serverEnv)
        .map(([k, v]) => `${k}=${v}`)
        .join(',')}`,
    )
  const p = Bun.spawn(args, { cwd: ROOT, stdout: 'ignore', stderr: 'inherit' })
  if ((await p.exited) !== 0) throw new Error('bench/run.ts failed')
  const f = JSON.parse(readFileSync(out, 'utf8')).scenarios.fanout as {
    bare: { deliveriesPerSec: number }
    chat: { deliveriesPerSec: number; messagesPerSec: number; serverCpuPct: number; serverCpuUsPerMessage: number }
  }
  return {
    bare: f.bare.deliveriesPerSec,
    chat: f.chat.deliveriesPerSec,
    messagesPerSec: f.chat.messagesPerSec,
    serverCpuUsPerMessage: f.chat.serverCpuUsPerMessage,
    ratio: Math.round((f.chat.deliveriesPerSec / f.bare.deliveriesPerSec) * 1000) / 1000,
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

async function fanout() {
  const rx = receiver()
  rx.state.parse = false // the receiver's own CPU is not the server's; keep it small
  const off: Awaited<ReturnType<typeof runFanout>>[] = []
  const on: (Awaited<ReturnType<typeof runFanout>> & { webhookRequests: number })[] = []
  for (let i = 0; i < ROUNDS; i++) {
    off.push(await runFanout())
    log(`fan-out round ${i + 1}, webhooks off`, off.at(-1))
    const before = rx.state.requests
    on.push({
      ...(await runFanout({ WEBHOOK_URL: rx.url, WEBHOOK_SECRET: SECRET, WEBHOOK_EVENTS: 'message.created' })),
      webhookRequests: rx.state.requests - before,
    })
    log(`fan-out round ${i + 1}, webhooks on`, on.at(-1))
  }
  rx.stop()
  const ratioOff = median(off.map((r) => r.ratio))
  const ratioOn = median(on.map((r) => r.ratio))
  const cpuOff = median(off.map((r) => r.serverCpuUsPerMessage))
  const cpuOn = median(on.map((r) => r.serverCpuUsPerMessage))
  return {
    off,
    on,
    medianRatio: { off: ratioOff, on: ratioOn, change: `${Math.round((ratioOn / ratioOff - 1) * 1000) / 10} %` },
    medianServerCpuUsPerMessage: { off: cpuOff, on: cpuOn, change: `${Math.round((cpuOn / cpuOff - 1) * 1000) / 10} %` },
  }
}

// ---- 3. the pre-publish hook's added latency ----

async function ackLatencies(port: number, n: number) {
  const c = await client(port, 'bench-hook')
  const h = new Histogram()
  for (let i = 0; i < 200; i++) await c.chat('warm') // warm-up
  for (let i = 0; i < n; i++) {
    const t0 = performance.now()
    await c.chat(`message ${i}`)
    h.record((performance.now() - t0) * 1000)
  }
  c.close()
  return h.summary()
}

async function hook() {
  const hookServer = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    idleTimeout: 0,
    async fetch(req) {
      await req.text()
      return Response.json({ action: 'allow' })
    },
  })
  const url = `http://127.0.0.1:${hookServer.port}/before`
  try {
    const without = await chatServer({})
    const a = await ackLatencies(without.port, HOOK_N).finally(() => without.stop())
    const withHook = await chatServer({ HOOK_BEFORE_PUBLISH_URL: url, WEBHOOK_SECRET: SECRET })
    const b = await ackLatencies(withHook.port, HOOK_N).finally(() => withHook.stop())
    // The hook's own round trip: the same signed POST, from this process, alone.
    const rtt = new Histogram()
    const payload = JSON.stringify({ room: 'general', user: { id: 'bench-hook', name: 'bench-hook' }, body: 'message 1' })
    for (let i = 0; i < HOOK_N + 200; i++) {
      const t0 = performance.now()
      const res = await fetch(url, {
        method: 'POST',
        body: payload,
        headers: { 'content-type': 'application/json', 'chat-signature': sign(SECRET, payload) },
      })
      await res.json()
      if (i >= 200) rtt.record((performance.now() - t0) * 1000)
    }
    const r = rtt.summary()
    const added = (k: 'p50' | 'mean' | 'p99') => Math.round((b[k] - a[k] - r[k]) * 1000) / 1000
    const out = {
      ackWithoutHookMs: a,
      ackWithHookMs: b,
      hookRoundTripMs: r,
      addedBeyondRoundTripMs: { p50: added('p50'), mean: added('mean'), p99: added('p99') },
    }
    log('hook', JSON.stringify(out))
    return out
  } finally {
    hookServer.stop(true)
  }
}

if (ONLY.includes('hotpath')) results.hotpath = await hotpath()
if (ONLY.includes('throughput')) {
  results.throughput = [await throughput('memory')]
  if (await listening(6379)) (results.throughput as unknown[]).push(await throughput('redis'))
  else log('Redis not answering on 6379: the Redis engine is skipped')
}
if (ONLY.includes('hook')) results.hook = await hook()
if (ONLY.includes('fanout')) results.fanout = await fanout()
writeFileSync(OUT, `${JSON.stringify(results, null, 1)}\n`)
console.log(JSON.stringify(results, null, 1))
