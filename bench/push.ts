/**
 * `bun run bench/push.ts`: what push notifications cost on the chat path, and how fast they go out.
 *
 *   1. hotpath     the JavaScript cost of one chat frame (bench/hot-path.ts's set-up: hub.message on
 *                  a memory broker, stub sockets) in a room of --members members who all have a
 *                  device and are all online: push off, push on (PUSH_COALESCE_MS 1000, the default)
 *                  and push on with a 20 ms window (a decision 50 times a second); rounds alternate,
 *                  medians compared. No push is sent (nobody is offline): this is the price of
 *                  watching for offline members.
 *   2. throughput  --pushes offline members with one device each, one message: the time from the
 *                  message to the receiver (another process) counting every push, FCM (token cached)
 *                  and Web Push (payload encrypted per device), memory queue, and the Redis stream
 *                  with --redis
 *
 *   3. server      the same room on a real server process (push off, push on with a device per
 *                  member), everyone connected: --messages chat frames from one member, the server's
 *                  CPU seconds (from /proc) per message; the two servers run side by side and take
 *                  turns for --server-rounds rounds, medians compared
 *
 * Flags: --only=hotpath,throughput,server  --n=100000 --rounds=5 --members=50 (1, 3)  --pushes=5000 (2)  --redis (2)
 *        --messages=10000 --server-rounds=3 (3)
 */
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import webpush from 'web-push'
import { memoryBroker } from '../src/broker/memory'
import { loadConfig } from '../src/config'
import { parseAllowList } from '../src/core/outbound'
import { createHub } from '../src/hub/hub'
import { configureLog } from '../src/log'
import { memoryMembers } from '../src/members/memory'
import { createMetrics } from '../src/metrics'
import { parseFrame } from '../src/app'
import { createPush } from '../src/push'
import { fcmProvider } from '../src/push/fcm'
import { webPushProvider } from '../src/push/webpush'
import { browserKeys, serviceAccount } from '../test/helpers/push-receivers'
import { cpuSeconds, startServer } from './lib/proc'
import { redisConnections } from '../src/broker/redis-connect'
import { redisCluster } from '../src/cluster/heartbeat'
import { fakeSocket } from './lib/fake-socket'

const argv = process.argv.slice(2)
const flag = (name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
if (argv.includes('--help')) {
  console.log(readFileSync(import.meta.path, 'utf8').split('*/')[0])
  process.exit(0)
}
const ONLY = (flag('only') ?? 'hotpath,throughput').split(',')
const N = Number(flag('n') ?? 100_000)
const ROUNDS = Number(flag('rounds') ?? 5)
const MEMBERS = Number(flag('members') ?? 50)
const PUSHES = Number(flag('pushes') ?? 5000)
const log = (...a: unknown[]) => console.error('[bench:push]', ...a)
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
configureLog('warn')
const vapid = webpush.generateVAPIDKeys()
const VAPID_ENV = {
  PUSH_VAPID_PUBLIC_KEY: vapid.publicKey,
  PUSH_VAPID_PRIVATE_KEY: vapid.privateKey,
  PUSH_VAPID_SUBJECT: 'mailto:bench@example.com',
  OUTBOUND_ALLOW: '127.0.0.1',
}

// ---- 1. the chat path with push off and on ----

async function hotpath() {
  const setup = async (push: false | { coalesceMs: number }) => {
    const env: Record<string, string> = { RATE_LIMIT_PER_SEC: '0', LOG_LEVEL: 'warn', ENABLE_DEMO: 'false' }
    if (push) Object.assign(env, VAPID_ENV, { PUSH_COALESCE_MS: String(push.coalesceMs) })
    const config = loadConfig(env)
    const metrics = createMetrics()
    const members = memoryMembers()
    const broker = memoryBroker({ historyLimit: config.HISTORY_LIMIT })
    const p = push ? createPush({ config, metrics, nodeId: 'hot', members, badge: (user) => hub.badge(user) }) : undefined
    const server = { publish: () => 1, subscriberCount: () => 10 }
    const hub = createHub({ config, broker, metrics, nodeId: 'hot', server: () => server as never, members, push: p?.hub })
    await broker.start(hub.deliver, hub.reset)
    await p?.start()
    const room = 'bench-room'
    const ws = () => fakeSocket()
    for (let i = 0; i <= MEMBERS; i++) {
      const user = { id: `m-${i}`, name: `m-${i}` }
      await members.add(room, user, 0, 1000)
      if (i > 0)
        await members.putDevice(
          user.id,
          {
            device: 'web',
            kind: 'webpush',
            subscription: { endpoint: 'https://127.0.0.1:9/never', keys: browserKeys().keys },
            updated: new Date().toISOString(),
          },
          20,
        )
    }
    // Every member online (each its own connection): nobody is to be pushed.
    const conns = Array.from({ length: MEMBERS + 1 }, (_, i) =>
      hub.open(ws() as never, { user: { id: `m-${i}`, name: `m-${i}` } }, { remote: '127.0.0.1', userAgent: '' }),
    )
    await Bun.sleep(50)
    return { hub, c: conns[0]!, metrics, stop: () => p?.stop(100) }
  }
  const variants = { off: await setup(false), on: await setup({ coalesceMs: 1000 }), on20ms: await setup({ coalesceMs: 20 }) }
  const text = '{"type":"chat","room":"bench-room","body":"~1795781979100000~ bench message ........"}'
  // CPU time of this process (not wall time): other work on a shared machine stalls us, it does not bill us.
  const round = async (x: Awaited<ReturnType<typeof setup>>) => {
    const t0 = process.cpuUsage()
    for (let i = 0; i < N; i++) {
      void x.hub.message(x.c, parseFrame(text))
      if ((i & 1023) === 1023) await Promise.resolve()
    }
    await Bun.sleep(0)
    const d = process.cpuUsage(t0)
    return (d.user + d.system) / N
  }
  const r: Record<keyof typeof variants, number[]> = { off: [], on: [], on20ms: [] }
  const keys = Object.keys(variants) as (keyof typeof variants)[]
  for (let i = 0; i <= ROUNDS; i++)
    // Each round in another order: no variant always runs first (warm caches, a fresh GC).
    for (const k of keys.map((_k, j) => keys[(j + i) % keys.length]!)) {
      const us = await round(variants[k])
      if (i > 0) r[k].push(us) // the first round warms up
    }
  const m = { off: median(r.off), on: median(r.on), on20ms: median(r.on20ms) }
  let sent = 0
  for (const v of Object.values(variants)) sent += (await v.metrics.push.sent.get()).values.reduce((a, b) => a + b.value, 0)
  const out = {
    frames: N,
    members: MEMBERS,
    medianCpuUsPerFrame: { off: +m.off.toFixed(3), on: +m.on.toFixed(3), on20ms: +m.on20ms.toFixed(3) },
    addedPercent: { on: +((m.on / m.off - 1) * 100).toFixed(1), on20ms: +((m.on20ms / m.off - 1) * 100).toFixed(1) },
    pushesSent: sent,
  }
  log('hot path', out)
  for (const v of Object.values(variants)) await v.stop()
  return out
}

// ---- 2. pushes per second to a receiver in another process ----

/** A receiver in its own process (so its work is not counted against ours): answers and counts. */
async function receiver() {
  const code = `
    let n = 0
    const s = Bun.serve({ hostname: '127.0.0.1', port: 0, async fetch(req) {
      const u = new URL(req.url)
      if (u.pathname === '/count') return new Response(String(n))
      if (u.pathname === '/token') return Response.json({ access_token: 'tok', expires_in: 3600 })
      await req.arrayBuffer(); n++
      return u.pathname.startsWith('/push') ? new Response(null, { status: 201 }) : Response.json({ name: 'm' })
    } })
    console.log(s.port)`
  const proc = Bun.spawn([process.execPath, '-e', code], { stdout: 'pipe', stderr: 'inherit' })
  const reader = proc.stdout.getReader()
  const port = Number(new TextDecoder().decode((await reader.read()).value).trim())
  const base = `http://127.0.0.1:${port}`
  return { base, count: async () => Number(await (await fetch(`${base}/count`)).text()), stop: () => proc.kill() }
}

async function throughput(kind: 'fcm' | 'webpush', redis: boolean) {
  const rx = await receiver()
  const env: Record<string, string> = {
    LOG_LEVEL: 'warn',
    PUSH_COALESCE_MS: '0',
    ...(redis ? { REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: `bench-push-${process.pid}:` } : {}),
  }
  const config = loadConfig(env)
  const members = memoryMembers()
  const provider =
    kind === 'fcm'
      ? fcmProvider({ account: { ...serviceAccount(`${rx.base}/token`, tmpdir()).creds }, url: rx.base, timeoutMs: 10_000 })
      : webPushProvider({
          publicKey: vapid.publicKey,
          privateKey: vapid.privateKey,
          subject: 'mailto:bench@example.com',
          timeoutMs: 10_000,
          allow: parseAllowList('127.0.0.1'),
        })
  const connections = redis ? redisConnections(config.REDIS_URL!, false) : undefined
  const nodes = connections && redisCluster({ cmd: connections.cmd, prefix: config.REDIS_PREFIX, nodeId: 'tp' })
  const push = createPush({
    config,
    metrics: createMetrics(),
    nodeId: 'tp',
    members,
    providers: [provider],
    redis: connections && nodes && { connections, nodes },
    badge: async () => 1,
  })!
  await push.start()
  await nodes?.start()
  const room = 'tp-room'
  const keys = browserKeys().keys // one browser's keys for all: the encryption work per push is the same
  for (let i = 0; i < PUSHES; i++) {
    const user = { id: `u-${i}`, name: `u-${i}` }
    await members.add(room, user, 0, 10)
    await members.putDevice(
      user.id,
      kind === 'fcm'
        ? { device: 'd', kind, token: `t-${i}`, updated: '' }
        : { device: 'd', kind, subscription: { endpoint: `${rx.base}/push/${i}`, keys }, updated: '' },
      20,
    )
  }
  const t0 = performance.now()
  push.hub.created(room, { id: 'sender', name: 'Sender' }, 1, 'm-1', 'hello everyone', 'chat')
  let got = 0
  while ((got = await rx.count()) < PUSHES) await Bun.sleep(20)
  const s = (performance.now() - t0) / 1000
  await push.stop(500)
  await nodes?.stop()
  connections?.close()
  rx.stop()
  if (redis) {
    const Redis = (await import('ioredis')).default
    const r = new Redis('redis://127.0.0.1:6379')
    const ks = await r.keys(`bench-push-${process.pid}:*`)
    if (ks.length) await r.del(...ks)
    r.disconnect()
  }
  const out = {
    provider: kind,
    queue: redis ? 'redis' : 'memory',
    pushes: got,
    seconds: +s.toFixed(2),
    pushesPerSecond: Math.round(got / s),
  }
  log('throughput', out)
  return out
}

// ---- 3. a real server's CPU per message, push off and on ----

async function serverCpu() {
  const MESSAGES = Number(flag('messages') ?? 10_000)
  const ROUNDS_S = Number(flag('server-rounds') ?? 3)
  const KEY = 'bench-push-api-key-0123456789abcdef'
  const room = 'bench-room'
  const start = async (on: boolean) => {
    const r = await startServer('chat', {
      RATE_LIMIT_PER_SEC: '0',
      LOG_LEVEL: 'info',
      ENABLE_DEMO: 'false',
      API_KEY: KEY,
      IDLE_TIMEOUT_S: '960',
      MAX_BUFFERED_BYTES: String(256 * 2 ** 20),
      ...(on ? VAPID_ENV : {}),
    })
    if (!r.ok) throw new Error(`chat server did not start: ${r.stderr.slice(0, 300)}`)
    const base = `http://127.0.0.1:${r.server.port}/api`
    const api = (method: string, path: string, body?: unknown) =>
      fetch(base + path, {
        method,
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      })
    for (let i = 0; i <= MEMBERS; i++) {
      await api('PUT', `/rooms/${room}/members/m-${i}`, { name: `m-${i}` })
      if (on && i > 0)
        await api('PUT', `/users/m-${i}/devices/web`, {
          kind: 'webpush',
          subscription: { endpoint: 'http://127.0.0.1:9/never', keys: browserKeys().keys },
        })
    }
    let got = 0
    let want = Infinity
    let reached: (() => void) | undefined
    const socks = await Promise.all(
      Array.from(
        { length: MEMBERS + 1 },
        (_, i) =>
          new Promise<WebSocket>((resolve) => {
            const ws = new WebSocket(`ws://127.0.0.1:${r.server.port}/ws?user=m-${i}`)
            ws.onmessage = (e) => {
              const t = String(e.data)
              if (t.includes('"type":"welcome"')) resolve(ws)
              else if (i === MEMBERS && t.startsWith('{"type":"chat"') && ++got >= want) reached?.()
            }
          }),
      ),
    )
    await Bun.sleep(300)
    const text = JSON.stringify({ type: 'chat', room, body: 'bench message, nobody offline ........' })
    return {
      server: r.server,
      async round() {
        got = 0
        want = MESSAGES
        const done = new Promise<void>((res) => (reached = res))
        const c0 = cpuSeconds(r.server.pid)
        for (let i = 0; i < MESSAGES; i++) {
          socks[0]!.send(text)
          if (i % 200 === 199) await Bun.sleep(1)
        }
        await done
        return ((cpuSeconds(r.server.pid) - c0) * 1e6) / MESSAGES
      },
      async stop() {
        for (const w of socks) w.close()
        await r.server.stop()
      },
    }
  }
  const off = await start(false)
  const on = await start(true)
  const r = { off: [] as number[], on: [] as number[] }
  for (let i = 0; i <= ROUNDS_S; i++) {
    const pair =
      i % 2
        ? ([
            ['on', on],
            ['off', off],
          ] as const)
        : ([
            ['off', off],
            ['on', on],
          ] as const)
    for (const [k, x] of pair) {
      const us = await x.round()
      if (i > 0) r[k].push(us)
    }
  }
  await off.stop()
  await on.stop()
  const m = { off: median(r.off), on: median(r.on) }
  const out = {
    messages: MESSAGES,
    members: MEMBERS,
    rounds: ROUNDS_S,
    serverCpuUsPerMessage: { off: +m.off.toFixed(2), on: +m.on.toFixed(2) },
    samples: r,
    addedPercent: +((m.on / m.off - 1) * 100).toFixed(1),
  }
  log('server', out)
  return out
}

const results: Record<string, unknown> = { date: new Date().toISOString() }
if (ONLY.includes('hotpath')) results.hotpath = await hotpath()
if (ONLY.includes('throughput')) {
  results.throughput = [await throughput('fcm', false), await throughput('webpush', false)]
  if (argv.includes('--redis')) (results.throughput as unknown[]).push(await throughput('fcm', true))
}
if (ONLY.includes('server')) results.server = await serverCpu()
console.log(JSON.stringify(results, null, 2))
process.exit(0)
