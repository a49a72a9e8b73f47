/**
 * `npm run bench`: measures chat-server against a bare Bun.serve publish server, in one run.
 * See docs/performance.md for what each scenario does and how to read the figures.
 *
 *   npm run bench                          every scenario, defaults (~7 min)
 *   npm run bench -- --quick               every scenario for ~2 s with smaller counts
 *   npm run bench -- --only=fanout,latency --fanout-s=5 --profile
 *
 * Flags: --only=fanout,chatbench,latency,cross,idle,persist  --quick  --profile
 *   --fanout-s --latency-s --cross-s --persist-s --small-s   measured seconds of each scenario
 *   --small-members (1b: per-message cost with few members, 10; 0 skips it)
 *   --members (fan-out, 1000) --senders (10) --latency-points=10000@100,1000@100 (members@msg/s)
 *   --rate (msg/s of the paced phase of cross-node, 100)
 *   --workers (member processes, 2) --window (messages in flight, 1000)
 *   --idle=20000,50000  --idle-settle-s (2)  --out=bench/results/latest.json
 *   --peers (1c, Bun's chat-bench shape: clients that all send, 32) --peer-window (messages in flight, 32) --peer-s
 *   --members=0 skips scenario 1 (1b still runs with --only=fanout): the per-message cost alone
 *   --chat-root=<dir>  measure the chat-server of another checkout (before/after pairs against an export of main)
 *   --server-env=K=V,K=V  extra environment of the chat server only (bench/webhooks.ts turns webhooks on with it)
 *
 * 1c runs twice: pinned (server on CPU 0, generator on CPU 1, --pin=0 turns it off) and unpinned
 * (issue 27's target: generator and server free to share both cores), bare and chat-server each.
 *
 * Scenario small (issue 27), in the default run: many small rooms (bench/small-rooms.ts): 2 000
 * rooms of 2–10 members, every member with a token for its own room only, on a bare Bun.serve (the
 * reference), one memory node, two nodes + a private redis-server, two nodes + a Redis Cluster;
 * saturated then paced at half that rate. --small-rooms (2000) --small-rooms-window (2 acked in
 * flight per sender) --small-rooms-s (5 s a phase) --small-rooms-idle-s (2 s of nothing sent first,
 * the CPU without messages) --small-rooms-rate (a fixed paced rate instead of half the saturated
 * one) --small-rooms-configs=bare,memory,redis,cluster; with --profile, node A of the first Redis
 * config is profiled.
 * Scenario connections (issue 34), in the default run at 2 000 sockets (bench/connections.ts): distinct
 * users open into the default room in steps, on a bare Bun.serve that subscribes and welcomes
 * (servers/bare-connect.ts, the reference), one memory node and two nodes + Redis: connects/s, server
 * CPU per connect, frames per connect to the open sockets, RSS per socket per step; a broadcast to all
 * (p50/p99); a reconnect storm with join {since, epoch} and 5 senders (nothing lost, counted).
 * --connections (2000) --conn-step (1000) --conn-batch (200 handshakes in flight)
 * --conn-configs=bare,memory,redis --conn-workers=K (redis: one chat-server of WORKERS=K, not two nodes)
 * --conn-generators (max(2, ⌈N/15 000⌉) processes) --conn-addresses (loopback addresses 127.0.0.1–.8, 8)
 * --conn-spread=dst|src (sockets to those addresses, default; or bound from them)
 * --conn-broadcasts (3) --storm=0 (skip the storm) --storm-senders (5) --storm-rate (20 chats/s in all)
 * --storm-inflight (2000 handshakes in flight) --storm-timeout-s (180) --storm-attempt-s (30: a client's
 * wait for its answer before it closes and retries, backoff 100 ms doubling to 2 s). E.g. issue 34's one-node figures:
 * npm run bench -- --only=connections --connections=19000 --conn-configs=bare,memory
 * Opt-in, not part of the default run: --only=cluster (many rooms, one Redis vs a Redis
 * Cluster, WORKERS 1 vs 2; see bench/cluster.ts for its flags), written to bench/results/cluster.json.
 * --only=conversations: the time from open to `welcome` with 500 memberships on each engine
 * (bench/welcome.ts, --memberships --connects --engines) and the RSS of room churn with room
 * retention off and on (bench/churn.ts, --rooms --rounds), written to bench/results/conversations.json.
 * --only=pusher: deliveries/s and server CPU per delivery to Pusher subscribers next to chat-server
 * clients in one room (bench/pusher.ts, --n --messages --window).
 * --only=sse: Server-Sent Events with POST next to /ws on the same build (bench/sse.ts, --n --messages
 * --window --idle --frames --batch): deliveries/s and server CPU per delivery to a room of 1 000,
 * RSS per idle session, server CPU per client frame by POST; written to bench/results/sse.json.
 * --only=redis-cost: Redis's own CPU and commands per chat message, per connect and per close, on a
 * private redis-server (bench/redis-cost.ts, --messages --senders --window --connects --parallel --monitor).
 * --only=filter: server CPU per chat with the word filter (200 words + 3 regexes) against none, ASCII and
 * accented bodies, and a chat's ack latency with link previews on (pages answering after 3 s) against off
 * (bench/filter-previews.ts, --chats --senders --window --latency-chats); prints tables only.
 * --only=outbox: the transactional outbox's commit-to-delivery p50/p99 (paced one-row transactions)
 * and rows/s from a backlog, one memory node and two nodes + Redis (bench/outbox.ts, --rows --paced
 * --rooms --configs).
 * --only=events: server CPU per event for chat, edit, react, unreact and delete, memory and Redis
 * engines (bench/events.ts, --events --members --senders --window --engines), written to bench/results/events.json.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import { chatFrame, chatTail } from '../src/protocol/server-frames'
import { Histogram } from './lib/histogram'
import type { LatencySummary } from './lib/histogram'
import { BUN, cpuOf, cpuSeconds, fdLimit, openFds, pin, ROOT, rssBytes, startServer, Worker } from './lib/proc'
import type { Server, ServerKind } from './lib/proc'
import { renderTables } from './lib/report'
import type { Results, RunStats, Skipped } from './lib/report'

// ---- flags ----

const argv = process.argv.slice(2)
const flag = (name: string): string | undefined => {
  const hit = argv.find((a) => a === `--${name}` || a.startsWith(`--${name}=`))
  if (!hit) return undefined
  return hit.includes('=') ? hit.slice(hit.indexOf('=') + 1) : 'true'
}
const num = (name: string, dflt: number, quick: number) => {
  const v = flag(name)
  if (v !== undefined) {
    const n = Number(v)
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name}: expected a number, got ${v}`)
    return n
  }
  return QUICK ? quick : dflt
}
if (flag('help')) {
  console.log(readFileSync(import.meta.path, 'utf8').split('*/')[0])
  process.exit(0)
}
const QUICK = flag('quick') === 'true'
const ONLY = (flag('only') ?? 'fanout,chatbench,latency,cross,idle,persist,small,connections').split(',').map((s) => s.trim())
const PROFILE = flag('profile') === 'true'
const opt = {
  fanoutS: num('fanout-s', 8, 2),
  latencyS: num('latency-s', 10, 2),
  crossS: num('cross-s', 6, 2),
  persistS: num('persist-s', 6, 2),
  members: num('members', 1000, 1000),
  senders: num('senders', 10, 10),
  /** members@rate points of scenario 2; the first is the one the target applies to. */
  latencyPoints: (flag('latency-points') ?? (QUICK ? '2000@100,500@100' : '10000@100,1000@100')).split(',').map((p) => {
    const [m, r] = p.split('@').map(Number)
    if (!m || !r) throw new Error(`--latency-points: expected members@rate, got ${p}`)
    return { members: m, rate: r }
  }),
  workers: Math.max(1, num('workers', 2, 2)),
  rate: num('rate', 100, 100),
  smallMembers: num('small-members', 10, 10),
  smallS: num('small-s', 4, 2),
  window: num('window', 1000, 1000),
  peers: num('peers', 32, 32),
  peerWindow: Math.max(1, num('peer-window', 32, 32)),
  peerS: num('peer-s', 6, 2),
  /** 1c: server on CPU 0, generator on CPU 1 (taskset), the same placement for every server. --pin=0: off. */
  pin: flag('pin') !== '0' && cpus().length >= 2,
  warmupS: num('warmup-s', 1, 0.5),
  idleSettleS: num('idle-settle-s', 2, 1),
  idle: (flag('idle') ?? (QUICK ? '2000,5000' : '10000,20000,50000')).split(',').map(Number),
  out: flag('out') ?? join(ROOT, 'bench/results/latest.json'),
  /** Scenario `small` (bench/small-rooms.ts): rooms of 2..10 members through Redis, one sender each. */
  smallRooms: num('small-rooms', 2000, 400),
  smallRoomsWindow: Math.max(1, num('small-rooms-window', 2, 2)),
  smallRoomsS: num('small-rooms-s', 5, 2),
  smallRoomsIdleS: num('small-rooms-idle-s', 2, 1),
  smallRoomsRate: flag('small-rooms-rate') === undefined ? undefined : num('small-rooms-rate', 0, 0),
  smallRoomsConfigs: (flag('small-rooms-configs') ?? 'bare,memory,redis,cluster').split(','),
  /** Scenario `connections` (bench/connections.ts, issue 34). */
  connections: num('connections', 2000, 1000),
  connStep: Math.max(1, num('conn-step', 1000, 500)),
  connBatch: Math.max(1, num('conn-batch', 200, 200)),
  connConfigs: (flag('conn-configs') ?? 'bare,memory,redis').split(','),
  connWorkers: num('conn-workers', 0, 0),
  connGenerators: num('conn-generators', 0, 0),
  connAddresses: Math.min(8, Math.max(1, num('conn-addresses', 8, 8))),
  connSpread: ((v: string): 'dst' | 'src' => {
    if (v !== 'dst' && v !== 'src') throw new Error(`--conn-spread: expected dst or src, got ${v}`)
    return v
  })(flag('conn-spread') ?? 'dst'),
  connBroadcasts: num('conn-broadcasts', 3, 1),
  storm: flag('storm') !== '0' && flag('storm') !== 'false',
  stormSenders: Math.max(1, num('storm-senders', 5, 5)),
  stormRate: Math.max(1, num('storm-rate', 20, 20)),
  stormInflight: Math.max(1, num('storm-inflight', 2000, 2000)),
  stormTimeoutS: Math.max(5, num('storm-timeout-s', 180, 60)),
  stormAttemptS: Math.max(1, num('storm-attempt-s', 30, 30)),
}
// Opt-in --only=redis-cost (bench/redis-cost.ts, issue 34): Redis's own CPU and commands per chat
// message, connect and close on a private redis-server; its flags pass through. Handled before the
// scenario check, alone.
if (ONLY.includes('redis-cost')) {
  const passed = process.argv.filter((a) => /^--(messages|senders|window|connects|parallel|monitor)(=|$)/.test(a))
  const p = Bun.spawn([process.execPath, join(ROOT, 'bench/redis-cost.ts'), ...passed], { stdout: 'inherit', stderr: 'inherit' })
  process.exit(await p.exited)
}
for (const s of ONLY)
  if (
    ![
      'fanout',
      'chatbench',
      'latency',
      'cross',
      'idle',
      'persist',
      'small',
      'connections',
      'cluster',
      'conversations',
      'events',
      'pusher',
      'filter',
      'sse',
      'outbox',
    ].includes(s)
  )
    throw new Error(`--only: unknown scenario ${s}`)

/** Extra environment of the chat server (never of the bare one), from --server-env=K=V,K=V. */
const SERVER_ENV: Record<string, string> = Object.fromEntries(
  (flag('server-env') ?? '')
    .split(',')
    .filter(Boolean)
    .map((kv) => {
      const i = kv.indexOf('=')
      if (i < 1) throw new Error(`--server-env: expected K=V, got ${kv}`)
      return [kv.slice(0, i), kv.slice(i + 1)]
    }),
)

const PROF_DIR = join(ROOT, 'bench/results/profiles')
const BENCH_ENV = {
  RATE_LIMIT_PER_SEC: '0', // senders go as fast as they can
  MAX_BUFFERED_BYTES: String(256 * 1024 * 1024), // never cut the generator as a slow consumer
  IDLE_TIMEOUT_S: '960',
  LOG_LEVEL: 'info', // the default; stdout is drained by the bench
  ENABLE_DEMO: 'false',
  APP_ENV: 'development',
}

const sleep = (s: number) => Bun.sleep(Math.round(s * 1000))
const log = (...a: unknown[]) => console.error('[bench]', ...a)

// ---- helpers ----

/** The length of a chat frame as chat-server sends it for the senders' body (seq of 6 digits). */
function chatFrameBytes(body: number) {
  const tail = chatTail({
    id: Bun.randomUUIDv7(),
    room: 'general',
    from: { id: 'bench-s-0', name: 'bench-s-0' },
    body: 'x'.repeat(body),
    ts: new Date().toISOString(),
  })
  return chatFrame(123456, tail).length
}
const BODY = 40

/** Splits n into k near-equal parts. */
const split = (n: number, k: number) => Array.from({ length: k }, (_, i) => Math.floor(n / k) + (i < n % k ? 1 : 0)).filter((x) => x > 0)

async function spawnMembers(server: { port: number }, kind: 'bare' | 'chat', total: number, workers: number, latency: boolean) {
  const parts = split(total, workers)
  const ws = parts.map((_, i) => new Worker(`members-${i}`))
  const t0 = performance.now()
  const ready = await Promise.all(
    ws.map((w, i) =>
      w.request(
        {
          cmd: 'members',
          host: '127.0.0.1',
          port: server.port,
          count: parts[i]!,
          user: `bench-m${i}`,
          waitJoined: kind === 'chat',
          latency,
          ramp: 200,
        },
        'ready',
      ),
    ),
  )
  const failed = ready.reduce((s, r) => s + r.failed, 0)
  if (failed) log(`members: ${failed} of ${total} failed to connect:`, ready.flatMap((r) => r.reasons).slice(0, 3))
  return { ws, open: ready.reduce((s, r) => s + r.open, 0), failed, connectMs: Math.round(performance.now() - t0) }
}

async function spawnSenders(server: { port: number }, kind: 'bare' | 'chat', count: number) {
  const w = new Worker('senders')
  const padTo = kind === 'bare' ? chatFrameBytes(BODY) : 0
  const r = await w.request(
    { cmd: 'senders', host: '127.0.0.1', port: server.port, count, user: 'bench-s', waitJoined: kind === 'chat', padTo, body: BODY },
    'ready',
  )
  if (r.failed) throw new Error(`senders failed to connect: ${r.reasons.join('; ')}`)
  return w
}

interface Window {
  seconds: number
  serverCpu: number
  generatorCpu: number
}

/** Measures `seconds` between start and stop on every worker, with the CPU each side used. */
async function measure(server: Server, workers: Worker[], seconds: number) {
  const gen = () => cpuOf(workers.map((w) => w.pid)) + (process.cpuUsage().user + process.cpuUsage().system) / 1e6
  for (const w of workers) w.send({ cmd: 'start' })
  const s0 = cpuSeconds(server.pid)
  const g0 = gen()
  const t0 = performance.now()
  await sleep(seconds)
  const stats = await Promise.all(workers.map((w) => w.request({ cmd: 'stop' }, 'stats')))
  const wall = (performance.now() - t0) / 1000
  const win: Window = { seconds: wall, serverCpu: (cpuSeconds(server.pid) - s0) / wall, generatorCpu: (gen() - g0) / wall }
  return { stats, win }
}

function mergeHist(stats: { hist?: ReturnType<Histogram['toJSON']> }[]): LatencySummary | undefined {
  const h = new Histogram()
  for (const s of stats) if (s.hist) h.merge(s.hist)
  return h.n ? h.summary() : undefined
}

const pct = (x: number) => Math.round(x * 1000) / 10

/** Flood: senders go as fast as the slowest member keeps up (credit = its count + window). */
async function floodPhase(server: Server, members: Worker[], sender: Worker, seconds: number, latency: boolean) {
  const mins = new Map<Worker, number>()
  let granted = opt.window
  let active = true
  for (const m of members)
    m.onProgress = (min) => {
      if (!active) return
      mins.set(m, min)
      if (mins.size < members.length) return
      const credit = Math.min(...mins.values()) + opt.window
      if (credit > granted + opt.window / 20) {
        granted = credit
        sender.send({ cmd: 'credit', credit })
      }
    }
  for (const m of members) m.send({ cmd: 'progress', everyMs: 10 })
  sender.send({ cmd: 'flood', credit: opt.window })
  await sleep(opt.warmupS)
  const { stats, win } = await measure(server, [...members, sender], seconds)
  active = false
  sender.send({ cmd: 'halt' })
  for (const m of members) m.send({ cmd: 'progress', everyMs: 0 })
  const memberStats = stats.slice(0, members.length)
  const senderStats = stats[members.length]!
  const deliveries = memberStats.reduce((s, x) => s + x.chat, 0)
  return {
    deliveriesPerSec: Math.round(deliveries / win.seconds),
    messagesPerSec: Math.round(senderStats.sent / win.seconds),
    serverCpuPct: pct(win.serverCpu),
    generatorCpuPct: pct(win.generatorCpu),
    deliveriesPerServerCpuSec: win.serverCpu > 0 ? Math.round(deliveries / win.seconds / win.serverCpu) : undefined,
    ...cpuPerDelivery(win, deliveries),
    seconds: Math.round(win.seconds * 100) / 100,
    closes: memberStats.reduce((s, x) => s + x.closes, 0),
    latency: latency ? mergeHist(memberStats) : undefined,
  }
}

/**
 * Server CPU-seconds per million deliveries, and whether the generator was saturated: above
 * ~90 % of a core it, not the server, sets the rate, and only the CPU per delivery is the server's.
 */
function cpuPerDelivery(win: Window, deliveries: number) {
  return {
    serverCpuSecPerMDeliveries: deliveries > 0 ? Math.round(((win.serverCpu * win.seconds) / deliveries) * 1e6 * 1000) / 1000 : undefined,
    generatorBound: win.generatorCpu >= GENERATOR_BOUND,
  }
}
const GENERATOR_BOUND = 0.9

/** Bun's chat-bench shape: `count` clients that all send, every message to all of them. */
async function peerFlood(kind: ServerKind, count: number, seconds: number, pinIt = opt.pin) {
  return withServer(
    kind,
    {},
    async (server) => {
      const w = new Worker('peers')
      const pinned = pinIt && pin(server.pid, 0) && pin(w.pid, 1)
      try {
        const padTo = kind === 'bare' ? chatFrameBytes(BODY) : 0
        const r = await w.request(
          { cmd: 'peers', host: '127.0.0.1', port: server.port, count, user: 'bench-p', waitJoined: kind === 'chat', padTo, body: BODY },
          'ready',
        )
        if (r.failed) throw new Error(`peers failed to connect: ${r.reasons.join('; ')}`)
        w.send({ cmd: 'peerflood', window: opt.peerWindow })
        await sleep(opt.warmupS)
        const { stats, win } = await measure(server, [w], seconds)
        w.send({ cmd: 'halt' })
        const st = stats[0]!
        return {
          deliveriesPerSec: Math.round(st.chat / win.seconds),
          messagesPerSec: Math.round(st.sent / win.seconds),
          serverCpuPct: pct(win.serverCpu),
          generatorCpuPct: pct(win.generatorCpu),
          deliveriesPerServerCpuSec: win.serverCpu > 0 ? Math.round(st.chat / win.seconds / win.serverCpu) : undefined,
          serverCpuUsPerMessage: st.sent ? Math.round(((win.serverCpu * win.seconds) / st.sent) * 1e6 * 100) / 100 : undefined,
          ...cpuPerDelivery(win, st.chat),
          seconds: Math.round(win.seconds * 100) / 100,
          closes: st.closes,
          members: r.open,
          window: opt.peerWindow,
          pinned,
          serverRssMiB: Math.round(rssBytes(server.pid) / 2 ** 20),
        }
      } finally {
        await w.exit()
      }
    },
    PROFILE && kind === 'chat' && pinIt,
  )
}

/** Paced: `rate` messages a second, round-robin over the senders; every member times every frame. */
async function pacedPhase(server: Server, members: Worker[], sender: Worker, memberCount: number, seconds: number, rate: number) {
  sender.send({ cmd: 'pace', rate })
  await sleep(opt.warmupS)
  const { stats, win } = await measure(server, [...members, sender], seconds)
  sender.send({ cmd: 'halt' })
  const memberStats = stats.slice(0, members.length)
  const sent = stats[members.length]!.sent
  const got = memberStats.reduce((s, x) => s + x.chat, 0)
  return {
    latency: mergeHist(memberStats),
    messagesPerSec: Math.round(sent / win.seconds),
    deliveriesPerSec: Math.round(got / win.seconds),
    // Frames in flight at the window edges make this approximate; a large gap means backlog.
    deliveredRatio: sent ? Math.round((got / (sent * memberCount)) * 1000) / 1000 : undefined,
    serverCpuPct: pct(win.serverCpu),
    generatorCpuPct: pct(win.generatorCpu),
    seconds: Math.round(win.seconds * 100) / 100,
    closes: memberStats.reduce((s, x) => s + x.closes, 0),
  }
}

function notAvailable(r: { code: number | null; stderr: string }, variable: string, what: string): Skipped | undefined {
  if (r.code === 1 && r.stderr.includes(`config error: ${variable}`))
    return { skipped: `${what} not available`, detail: r.stderr.split('\n').find((l) => l.includes(variable)) }
  return undefined
}

async function withServer<T>(
  kind: ServerKind,
  env: Record<string, string>,
  fn: (s: Server) => Promise<T>,
  profile = false,
): Promise<T | Skipped> {
  const r = await startServer(
    kind,
    { ...BENCH_ENV, ...(kind === 'chat' ? SERVER_ENV : {}), ...env },
    { cpuProfDir: profile ? PROF_DIR : undefined },
  )
  if (!r.ok) return { skipped: `${kind} server did not start (exit ${r.code})`, detail: r.stderr.slice(0, 300) }
  try {
    return await fn(r.server)
  } finally {
    await r.server.stop()
  }
}

// ---- scenarios ----

async function fanout(kind: 'bare' | 'chat', members: number, seconds: number) {
  return withServer(
    kind,
    {},
    async (server) => {
      const m = await spawnMembers(server, kind, members, opt.workers, false)
      const s = await spawnSenders(server, kind, opt.senders)
      try {
        const r = await floodPhase(server, m.ws, s, seconds, false)
        const serverCpuUsPerMessage = r.messagesPerSec
          ? Math.round(((r.serverCpuPct / 100) * 1e6 * 100) / r.messagesPerSec) / 100
          : undefined
        return {
          ...r,
          serverCpuUsPerMessage,
          members: m.open,
          senders: opt.senders,
          memberWorkers: m.ws.length,
          serverRssMiB: Math.round(rssBytes(server.pid) / 2 ** 20),
        }
      } finally {
        await Promise.all([...m.ws, s].map((w) => w.exit()))
      }
    },
    PROFILE && kind === 'chat',
  )
}

async function latency(kind: 'bare' | 'chat', members: number, rate: number) {
  return withServer(
    kind,
    {},
    async (server) => {
      const m = await spawnMembers(server, kind, members, opt.workers, true)
      const s = await spawnSenders(server, kind, opt.senders)
      try {
        const r = await pacedPhase(server, m.ws, s, m.open, opt.latencyS, rate)
        return {
          ...r,
          members: m.open,
          connectMs: m.connectMs,
          rate,
          memberWorkers: m.ws.length,
          serverRssMiB: Math.round(rssBytes(server.pid) / 2 ** 20),
        }
      } finally {
        await Promise.all([...m.ws, s].map((w) => w.exit()))
      }
    },
    PROFILE && kind === 'chat',
  )
}

async function cross(): Promise<unknown> {
  const prefix = `bench-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}:`
  const env = { ...BENCH_ENV, REDIS_URL: REDIS, REDIS_PREFIX: prefix }
  const a = await startServer('chat', { ...env, NODE_ID: 'bench-a' }, { cpuProfDir: PROFILE ? PROF_DIR : undefined })
  if (!a.ok)
    return (
      notAvailable(a, 'REDIS_URL', 'cluster engine') ?? { skipped: `node A did not start (exit ${a.code})`, detail: a.stderr.slice(0, 300) }
    )
  const b = await startServer('chat', { ...env, NODE_ID: 'bench-b' }, { cpuProfDir: PROFILE ? PROF_DIR : undefined })
  if (!b.ok) {
    await a.server.stop()
    await cleanRedis(prefix)
    return { skipped: `node B did not start (exit ${b.code})`, detail: b.stderr.slice(0, 300) }
  }
  try {
    const m = await spawnMembers(b.server, 'chat', opt.members, opt.workers, true)
    const s = await spawnSenders(a.server, 'chat', opt.senders)
    try {
      // The window measures node B as "the server"; node A's and Redis's CPU are read over
      // the same phase. Paced first: a flood leaves a backlog that would inflate the latency.
      const others = async <T>(f: () => Promise<T>) => {
        const a0 = cpuSeconds(a.server.pid)
        const r0 = await redisCpuSeconds()
        const t0 = performance.now()
        const r = await f()
        const wall = (performance.now() - t0) / 1000
        const r1 = await redisCpuSeconds()
        return {
          ...r,
          nodeACpuPct: pct((cpuSeconds(a.server.pid) - a0) / wall),
          redisCpuPct: r0 === undefined || r1 === undefined ? undefined : pct((r1 - r0) / wall),
        }
      }
      const paced = await others(() => pacedPhase(b.server, m.ws, s, m.open, opt.crossS, opt.rate))
      await sleep(0.5)
      // The flood is compared with scenario 1, whose members count frames without timing them:
      // the same work per frame for the generator here.
      for (const w of m.ws) w.send({ cmd: 'timing', on: false })
      const flood = await others(() => floodPhase(b.server, m.ws, s, opt.crossS, false))
      return { flood, paced, members: m.open, senders: opt.senders, rate: opt.rate, redisPrefix: prefix }
    } finally {
      await Promise.all([...m.ws, s].map((w) => w.exit()))
    }
  } finally {
    await Promise.all([a.server.stop(), b.server.stop()])
    const left = await cleanRedis(prefix)
    if (left) log(`redis: ${left} keys under ${prefix} left behind`)
  }
}

const REDIS = 'redis://127.0.0.1:6379'

/** CPU seconds the Redis server has used (INFO cpu), or undefined when it cannot be read. */
async function redisCpuSeconds(): Promise<number | undefined> {
  try {
    const { default: Redis } = await import('ioredis')
    const r = new Redis(REDIS, { lazyConnect: true, maxRetriesPerRequest: 1 })
    await r.connect()
    const info = await r.info('cpu')
    r.disconnect()
    const f = (k: string) => Number(new RegExp(`^${k}:([0-9.]+)`, 'm').exec(info)?.[1])
    const v = f('used_cpu_sys') + f('used_cpu_user')
    return Number.isFinite(v) ? v : undefined
  } catch {
    return undefined
  }
}

/** Deletes every key under the run's prefix; returns how many are still there afterwards. */
async function cleanRedis(prefix: string): Promise<number> {
  try {
    const { default: Redis } = await import('ioredis')
    const r = new Redis(REDIS, { lazyConnect: true, maxRetriesPerRequest: 1 })
    await r.connect()
    const scan = async (del: boolean) => {
      let cursor = '0'
      let n = 0
      do {
        const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
        cursor = next
        n += keys.length
        if (del && keys.length) await r.del(...keys)
      } while (cursor !== '0' && n < 1_000_000)
      return n
    }
    await scan(true)
    const left = await scan(false)
    r.disconnect()
    return left
  } catch (err) {
    log('redis cleanup failed:', (err as Error).message)
    return -1
  }
}

const PG_ADMIN = 'postgres://postgres@127.0.0.1:5432/test'

/** 10 senders with 4 acked messages in flight each, into a room of 100 members; stops the server. */
async function ackedLoad(
  server: Awaited<ReturnType<typeof startServer>> extends infer R ? (R extends { ok: true; server: infer S } ? S : never) : never,
) {
  try {
    const m = await spawnMembers(server, 'chat', 100, 1, false)
    const s = await spawnSenders(server, 'chat', opt.senders)
    try {
      const window = 4
      s.send({ cmd: 'acked', window })
      await sleep(opt.warmupS)
      const { stats, win } = await measure(server, [...m.ws, s], opt.persistS)
      s.send({ cmd: 'halt' })
      const st = stats[stats.length - 1]!
      // Every message sent in the whole run (warm-up included) must be acked.
      let totals = (await s.request({ cmd: 'stop' }, 'stats')).totals
      for (let i = 0; i < 50 && totals.outstanding > 0; i++) {
        await sleep(0.1)
        totals = (await s.request({ cmd: 'stop' }, 'stats')).totals
      }
      return {
        sentTotal: totals.sent,
        ackedTotal: totals.acks,
        unanswered: totals.outstanding,
        storedRows: undefined as number | undefined,
        committedPerSec: Math.round(st.acks / win.seconds),
        ack: mergeHist([st]),
        errors: st.errors,
        errorReasons: st.reasons,
        inFlightPerSender: window,
        senders: opt.senders,
        serverCpuPct: pct(win.serverCpu),
        generatorCpuPct: pct(win.generatorCpu),
        seconds: Math.round(win.seconds * 100) / 100,
      }
    } finally {
      await Promise.all([...m.ws, s].map((w) => w.exit()))
    }
  } finally {
    await server.stop()
  }
}

async function persist(): Promise<unknown> {
  const db = `bench_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 6)}`
  const { default: postgres } = await import('postgres')
  // Connects to the `test` database to create (and afterwards drop) a fresh one for the run.
  const admin = postgres(PG_ADMIN, { max: 1, onnotice: () => {} })
  try {
    await admin.unsafe(`CREATE DATABASE ${db}`)
  } catch (err) {
    await admin.end()
    return { skipped: 'PostgreSQL not reachable', detail: (err as Error).message }
  }
  try {
    const r = await startServer('chat', { ...BENCH_ENV, POSTGRES_DSN: `postgres://postgres@127.0.0.1:5432/${db}` })
    if (!r.ok)
      return (
        notAvailable(r, 'POSTGRES_DSN', 'persistence engine') ?? {
          skipped: `server did not start (exit ${r.code})`,
          detail: r.stderr.slice(0, 300),
        }
      )
    const withStore = await ackedLoad(r.server)
    withStore.storedRows = await countStored(db)
    // The same load on a node without a store: what persistence costs per ack.
    const b = await startServer('chat', BENCH_ENV)
    const baseline = b.ok ? await ackedLoad(b.server) : { skipped: `server did not start (exit ${b.code})` }
    return { ...withStore, baseline }
  } finally {
    try {
      await admin.unsafe(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`)
    } catch (err) {
      log(`could not drop ${db}:`, (err as Error).message)
    }
    await admin.end()
  }
}

/** Rows in the run's messages table: every acked message must be there. */
async function countStored(db: string): Promise<number | undefined> {
  const { default: postgres } = await import('postgres')
  const sql = postgres(PG_ADMIN.replace(/\/test$/, `/${db}`), { max: 1, onnotice: () => {} })
  try {
    const [row] = await sql`select count(*)::int as n from messages`
    return row!.n as number
  } catch (err) {
    log('could not count stored messages:', (err as Error).message)
    return undefined
  } finally {
    await sql.end()
  }
}

/** Opens `count` idle sockets and reads the server's VmRSS before and after. */
async function idle(kind: 'bare' | 'chat', count: number) {
  return withServer(kind, {}, async (server) => {
    const limit = fdLimit(server.pid)
    const usable = limit - openFds(server.pid) - 32
    let target = count
    let note: string | undefined
    if (count > usable) {
      if (usable < 0.9 * count)
        return {
          skipped: `open-file limit ${limit} of the server process is below ${count} (raising the hard limit needs CAP_SYS_RESOURCE)`,
          count,
          fdLimit: limit,
        }
      target = usable
      note = `capped at ${usable} by the open-file limit ${limit}`
    }
    await sleep(0.5)
    const before = rssBytes(server.pid)
    const perWorker = Math.max(1000, Math.min(12_000, fdLimit('self') - 256))
    const parts = split(target, Math.ceil(target / perWorker))
    // Over ~25 000 sockets to one address:port the ephemeral ports run short: spread the sources.
    const nAddr = Math.ceil(target / 25_000)
    const localAddresses = nAddr > 1 ? Array.from({ length: nAddr }, (_, i) => `127.0.0.${i + 1}`) : undefined
    const ws = parts.map((_, i) => new Worker(`idle-${i}`))
    try {
      const t0 = performance.now()
      const ready = await Promise.all(
        ws.map((w, i) =>
          w.request(
            {
              cmd: 'idle',
              host: '127.0.0.1',
              port: server.port,
              count: parts[i]!,
              user: `bench-i${i}`,
              waitJoined: kind === 'chat',
              localAddresses,
              ramp: 200,
            },
            'ready',
            300_000,
          ),
        ),
      )
      const connectMs = Math.round(performance.now() - t0)
      const open = ready.reduce((s, r) => s + r.open, 0)
      const failed = ready.reduce((s, r) => s + r.failed, 0)
      await sleep(opt.idleSettleS)
      const after = rssBytes(server.pid)
      return {
        count,
        open,
        failed,
        failReasons: [...new Set(ready.flatMap((r) => r.reasons))].slice(0, 3),
        note,
        connectMs,
        rssBeforeMiB: Math.round(before / 2 ** 20),
        rssAfterMiB: Math.round(after / 2 ** 20),
        perConnKiB: open ? Math.round(((after - before) / open / 1024) * 100) / 100 : undefined,
        sourceAddresses: nAddr,
        generatorProcesses: ws.length,
      }
    } finally {
      await Promise.all(ws.map((w) => w.exit()))
    }
  })
}

// ---- main ----

function machine() {
  const mem = readFileSync('/proc/meminfo', 'utf8')
  const total = Number(/MemTotal:\s+(\d+)/.exec(mem)?.[1] ?? 0) * 1024 || totalmem()
  return {
    nproc: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    memGiB: Math.round((total / 2 ** 30) * 10) / 10,
    bun: Bun.version,
    kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
    loadavg: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
    fdLimit: fdLimit('self'),
  }
}

/** The opt-in cluster scenario runs alone and keeps its own results file. */
async function clusterMain() {
  const { clusterScenario, clusterTable } = await import('./cluster')
  const o = {
    rooms: num('cluster-rooms', 1000, 200),
    members: num('cluster-members', 10, 10),
    seconds: num('cluster-s', 5, 2),
    window: num('cluster-window', 2, 2),
    configs: (flag('cluster-configs') ?? 'single-1,cluster-1,single-2,cluster-2').split(','),
  }
  const results = await clusterScenario(o)
  const out = flag('out') ?? join(ROOT, 'bench/results/cluster.json')
  const record = {
    date: new Date().toISOString(),
    options: o,
    machine: { ...machine(), loadavgEnd: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ') },
    results,
  }
  writeFileSync(out, `${JSON.stringify(record, null, 2)}\n`)
  console.log(clusterTable(results))
  log(`wrote ${out}`)
  process.exit(0)
}

/** The opt-in conversations scenario: connect with many memberships, and room churn. */
async function conversationsMain() {
  const { welcomeBench } = await import('./welcome')
  const { churnBench } = await import('./churn')
  const welcome = await welcomeBench()
  const churn = await churnBench()
  const out = flag('out') ?? join(ROOT, 'bench/results/conversations.json')
  writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), machine: machine(), welcome, churn }, null, 2)}\n`)
  log(`wrote ${out}`)
  process.exit(0)
}

/** The opt-in events scenario: server CPU per edit, reaction and delete next to a chat message's. */
async function eventsMain() {
  const { eventsBench } = await import('./events')
  const { rows, table } = await eventsBench()
  console.log(table)
  const out = flag('out') ?? join(ROOT, 'bench/results/events.json')
  writeFileSync(out, `${JSON.stringify({ date: new Date().toISOString(), machine: machine(), rows }, null, 2)}\n`)
  log(`wrote ${out}`)
  process.exit(0)
}

/** The opt-in Pusher scenario (bench/pusher.ts): one room's deliveries to Pusher subscribers next to chat-server clients. */
async function pusherMain() {
  const passed = process.argv.filter((a) => /^--(n|messages|window)=/.test(a))
  const p = Bun.spawn([process.execPath, join(ROOT, 'bench/pusher.ts'), ...passed], { stdout: 'inherit', stderr: 'inherit' })
  process.exit(await p.exited)
}

/** The opt-in word filter and link preview scenario (bench/filter-previews.ts): CPU per chat with the filter, ack latency with previews. */
async function filterMain() {
  const passed = process.argv.filter((a) => /^--(chats|senders|window|latency-chats)=/.test(a))
  const p = Bun.spawn([process.execPath, join(ROOT, 'bench/filter-previews.ts'), ...passed], { stdout: 'inherit', stderr: 'inherit' })
  process.exit(await p.exited)
}

/** The opt-in SSE scenario (bench/sse.ts): the SSE face's deliveries, idle memory and POST path next to /ws. */
async function sseMain() {
  const passed = process.argv.filter((a) => /^--(n|messages|window|idle|frames|batch|out)=/.test(a))
  const p = Bun.spawn([process.execPath, join(ROOT, 'bench/sse.ts'), ...passed], { stdout: 'inherit', stderr: 'inherit' })
  process.exit(await p.exited)
}

/** The opt-in outbox scenario (bench/outbox.ts): commit-to-delivery p50/p99 and rows/s of the transactional outbox. */
async function outboxMain() {
  const passed = process.argv.filter((a) => /^--(rows|paced|rooms|configs)=/.test(a))
  const p = Bun.spawn([process.execPath, join(ROOT, 'bench/outbox.ts'), ...passed], { stdout: 'inherit', stderr: 'inherit' })
  process.exit(await p.exited)
}

async function main() {
  if (ONLY.includes('filter')) return filterMain()
  if (ONLY.includes('outbox')) return outboxMain()
  if (ONLY.includes('events')) return eventsMain()
  if (ONLY.includes('sse')) return sseMain()
  if (ONLY.includes('pusher')) return pusherMain()
  if (ONLY.includes('cluster')) return clusterMain()
  if (ONLY.includes('conversations')) return conversationsMain()
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true })
  if (PROFILE) mkdirSync(PROF_DIR, { recursive: true })
  const started = Date.now()
  const results: Results = {
    date: new Date().toISOString(),
    quick: QUICK,
    options: opt,
    machine: machine(),
    bunBinary: BUN,
    scenarios: {},
  }
  log(`machine: ${JSON.stringify(results.machine)}`)

  if (ONLY.includes('fanout') && opt.members > 0) {
    log(`fan-out: ${opt.members} members, ${opt.senders} senders, ${opt.fanoutS} s`)
    const bare = await fanout('bare', opt.members, opt.fanoutS)
    log('  bare', JSON.stringify(bare))
    const chat = await fanout('chat', opt.members, opt.fanoutS)
    log('  chat', JSON.stringify(chat))
    results.scenarios.fanout = { bare: bare as RunStats, chat: chat as RunStats }
  }
  if (ONLY.includes('fanout')) {
    if (opt.smallMembers > 0) {
      // Few members: fan-out is cheap, so what each message costs besides publish shows.
      log(`per-message cost: ${opt.smallMembers} members, ${opt.senders} senders, ${opt.smallS} s`)
      const b = await fanout('bare', opt.smallMembers, opt.smallS)
      log('  bare', JSON.stringify(b))
      const c = await fanout('chat', opt.smallMembers, opt.smallS)
      log('  chat', JSON.stringify(c))
      results.scenarios.perMessage = { bare: b as RunStats, chat: c as RunStats }
    }
  }
  if (ONLY.includes('chatbench') && opt.peers > 0) {
    log(`chat-bench shape: ${opt.peers} clients all sending, window ${opt.peerWindow}, ${opt.peerS} s`)
    const b = await peerFlood('bare', opt.peers, opt.peerS)
    log('  bare', JSON.stringify(b))
    const f = await peerFlood('floor', opt.peers, opt.peerS)
    log('  floor', JSON.stringify(f))
    const c = await peerFlood('chat', opt.peers, opt.peerS)
    log('  chat', JSON.stringify(c))
    results.scenarios.chatBench = { bare: b as RunStats, chat: c as RunStats, floor: f as RunStats }
    // Issue 27's target is unpinned: generator and server free to share both cores.
    if (opt.pin) {
      log(`chat-bench shape, unpinned: ${opt.peers} clients, window ${opt.peerWindow}, ${opt.peerS} s`)
      const ub = await peerFlood('bare', opt.peers, opt.peerS, false)
      log('  bare', JSON.stringify(ub))
      const uc = await peerFlood('chat', opt.peers, opt.peerS, false)
      log('  chat', JSON.stringify(uc))
      results.scenarios.chatBenchUnpinned = { bare: ub as RunStats, chat: uc as RunStats }
    } else results.scenarios.chatBenchUnpinned = { bare: b as RunStats, chat: c as RunStats }
  }
  if (ONLY.includes('latency')) {
    results.scenarios.latency = []
    for (const p of opt.latencyPoints) {
      log(`latency: ${p.members} members, ${p.rate} msg/s, ${opt.latencyS} s`)
      const bare = await latency('bare', p.members, p.rate)
      log('  bare', JSON.stringify(bare))
      const chat = await latency('chat', p.members, p.rate)
      log('  chat', JSON.stringify(chat))
      results.scenarios.latency.push({ ...p, bare: bare as RunStats, chat: chat as RunStats })
    }
  }
  if (ONLY.includes('cross')) {
    log(`cross-node: 2 nodes + Redis, ${opt.members} members on B, ${opt.senders} senders on A`)
    const r = await cross()
    log('  ', JSON.stringify(r))
    results.scenarios.cross = r as never
  }
  if (ONLY.includes('small')) {
    const { smallRoomsScenario } = await import('./small-rooms')
    log(
      `small rooms: ${opt.smallRooms} rooms of 2-10 members, window ${opt.smallRoomsWindow}, ${opt.smallRoomsS} s a phase, ${opt.smallRoomsConfigs.join(', ')}`,
    )
    const t0 = Date.now()
    const rows = await smallRoomsScenario({
      rooms: opt.smallRooms,
      minMembers: 2,
      maxMembers: 10,
      window: opt.smallRoomsWindow,
      seconds: opt.smallRoomsS,
      warmupS: opt.warmupS,
      idleS: opt.smallRoomsIdleS,
      rate: opt.smallRoomsRate,
      configs: opt.smallRoomsConfigs,
      profileDir: PROFILE ? PROF_DIR : undefined,
      env: { ...BENCH_ENV, ...SERVER_ENV },
    })
    results.scenarios.small = { rows, seconds: Math.round((Date.now() - t0) / 1000) }
  }
  if (ONLY.includes('connections')) {
    const { connectionsScenario } = await import('./connections')
    log(
      `connections: up to ${opt.connections} sockets in steps of ${opt.connStep}, ${opt.connBatch} in flight, ${opt.connConfigs.join(', ')}${opt.storm ? ', storm' : ''}`,
    )
    const t0 = Date.now()
    const rows = await connectionsScenario({
      connections: opt.connections,
      step: opt.connStep,
      batch: opt.connBatch,
      configs: opt.connConfigs,
      storm: opt.storm,
      stormSenders: opt.stormSenders,
      stormRate: opt.stormRate,
      stormInflight: opt.stormInflight,
      stormTimeoutS: opt.stormTimeoutS,
      stormAttemptS: opt.stormAttemptS,
      broadcasts: opt.connBroadcasts,
      generators: opt.connGenerators,
      workers: opt.connWorkers,
      addresses: opt.connAddresses,
      spread: opt.connSpread,
      profileDir: PROFILE ? PROF_DIR : undefined,
      env: { ...BENCH_ENV, ...SERVER_ENV },
    })
    results.scenarios.connections = {
      rows,
      seconds: Math.round((Date.now() - t0) / 1000),
      loadavg: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
    }
  }
  if (ONLY.includes('idle')) {
    const rows: unknown[] = []
    for (const count of opt.idle)
      for (const kind of ['bare', 'chat'] as const) {
        log(`idle: ${count} sockets on ${kind}`)
        const r = await idle(kind, count)
        log('  ', JSON.stringify(r))
        rows.push({ kind, ...(r as object) })
      }
    results.scenarios.idle = rows as never
  }
  if (ONLY.includes('persist')) {
    log('persistence: PostgreSQL, acked chat frames')
    const r = await persist()
    log('  ', JSON.stringify(r))
    results.scenarios.persist = r as never
  }
  results.machine.loadavgEnd = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
  results.totalSeconds = Math.round((Date.now() - started) / 1000)
  writeFileSync(opt.out, `${JSON.stringify(results, null, 2)}\n`)
  console.log(renderTables(results))
  log(`wrote ${opt.out} (${results.totalSeconds} s); chart: bun run bench/chart.ts`)
  process.exit(0)
}

await main()
