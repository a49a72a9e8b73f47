/**
 * Scenario `connections` (issue 34): what a connection costs as their number grows, a reconnect
 * storm, one broadcast to everyone, and the idle memory per socket; chat-server next to a bare
 * Bun.serve that subscribes each socket to one topic and sends one welcome frame
 * (bench/servers/bare-connect.ts), in the same run.
 *
 * Configs (`--conn-configs`, default bare,memory,redis):
 *   bare     bench/servers/bare-connect.ts: Bun's own cost of a connect, the reference
 *   memory   one chat-server node, memory engine
 *   redis    two chat-server nodes + a private redis-server, socket i on node i mod 2; with
 *            --conn-workers=K one chat-server of WORKERS=K (a supervisor and K nodes on one port)
 *
 * Distinct users (`c<i>`, anonymous `?user=`) open into the default room, `--conn-batch`
 * handshakes in flight (200), in steps of `--conn-step` (1 000) up to `--connections`. Per step:
 * connects/s, server CPU ms per connect (/proc of the server and its children), Redis CPU per
 * connect, frames received per connect by the sockets already open (counted in the generators)
 * and RSS per socket. Then, every socket open: idle RSS per socket (after 2 s), one broadcast
 * (`--conn-broadcasts` of them, POST /api/publish with a `~<µs>~` stamp: delivery p50/p99 from
 * the generators' clocks), and the storm (`--storm`, on by default; `--storm=0` skips it): 5
 * senders (`--storm-senders`) send `--storm-rate` chats/s in all, every other socket is closed at
 * once and reopened, each resuming with `join {since, epoch}` from what it last saw; the time
 * until every one has its answer, the server CPU it took, and whether every acked message of the
 * window reached every socket exactly once, live or replayed (the bare server keeps nothing, so
 * its losses are expected: it is there for the time).
 *
 * Generators: `--conn-generators` processes (default max(2, ⌈N / 15 000⌉), each under the
 * 20 000 open files of a process here), bench/connections-worker.ts, raw TCP to the addresses
 * 127.0.0.1–127.0.0.8 in turn (`--conn-spread=dst`, the servers listening on all of them), or bound
 * to them as source addresses (`--conn-spread=src`, whose bind() costs grow past ~57 000 sockets).
 */
import { freePort } from '../test/helpers/services'
import { Histogram } from './lib/histogram'
import type { LatencySummary } from './lib/histogram'
import { rssBytes, startServer, Worker } from './lib/proc'
import type { Server } from './lib/proc'
import type { BenchRedis } from './lib/rooms'
import { privateRedis, redisCpu, treeCpu } from './lib/rooms'
import type { ConnCommand, ConnEvent, Spread } from './connections-worker'

export interface ConnectionsOptions {
  connections: number
  step: number
  batch: number
  configs: string[]
  storm: boolean
  stormSenders: number
  stormRate: number
  stormInflight: number
  stormTimeoutS: number
  /** Seconds a storm client waits for its answer before it closes and retries. */
  stormAttemptS: number
  broadcasts: number
  generators: number
  /** redis config: one chat-server of WORKERS=K instead of two separate nodes (0: two nodes). */
  workers: number
  addresses: number
  /** Sockets to the loopback addresses (dst, the server listening on all) or bound from them (src). */
  spread: Spread
  /** With --profile: where the CPU profile of the memory node or of the redis config's node a goes. */
  profileDir?: string
  env: Record<string, string>
}

export interface ConnStep {
  open: number
  connectsPerS: number
  cpuMsPerConnect: number
  /** The step's server CPU seconds and connects: /proc counts in 10-ms ticks, one or two of bare's steps. */
  cpuS: number
  connects: number
  redisCpuMsPerConnect?: number
  /** Frames the sockets already open received, per socket opened in the step. */
  framesPerConnect: number
  rssKiBPerSocket: number
  failed: number
  /** Connects the generators tried again (refused, closed or silent). */
  retries: number
}

export interface ConnStorm {
  sockets: number
  /** Server RSS per socket once the storm is over (3 s after it), every socket open again. */
  rssKiBPerSocketAfter?: number
  resumed: number
  /** Resumes answered `recovered: false` (further behind than the server keeps). */
  unrecovered?: number
  failed: number
  retries: number
  /** Why the first few were retried. */
  retryReasons: string[]
  seconds: number
  p50S: number
  p99S: number
  serverCpuS: number
  redisCpuS?: number
  senders: number
  sent: number
  acked: number
  /** (socket, acked message) pairs that should have arrived. */
  expected: number
  missing: number
  duplicates: number
  socketsWithLoss: number
  /** Of those, sockets the server closed after they resumed (a slow consumer, say): the generator does not reopen them. */
  closedWithLoss?: number
  /** Of those, open sockets resumed `recovered: true` missing a seq below one they got: a hole, not a late delivery. */
  withHoles?: number
  reasons: string[]
}

export interface ConnRow {
  config: string
  nodes: number
  workers?: number
  generators: number
  steps: ConnStep[]
  idleKiBPerSocket: number
  serverRssMiB: number
  broadcast?: { sent: number; delivered: number; expected: number; latency?: LatencySummary }
  storm?: ConnStorm
  error?: string
}

const API_KEY = 'bench-connections-api-key-0123456789abcdef'
const log = (...a: unknown[]) => console.error('[bench:connections]', ...a)
const r2 = (x: number) => Math.round(x * 100) / 100
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0)

/** RSS of a process and its children. */
function treeRss(pid: number): number {
  let kids: number[] = []
  try {
    kids = require('node:fs').readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
  } catch {}
  let own = 0
  try {
    own = rssBytes(pid)
  } catch {}
  return own + sum(kids.map(treeRss))
}

async function runConfig(config: string, o: ConnectionsOptions): Promise<ConnRow> {
  if (!['bare', 'memory', 'redis'].includes(config)) throw new Error(`--conn-configs: expected bare, memory or redis, got ${config}`)
  const redis: BenchRedis | undefined = config === 'redis' ? await privateRedis() : undefined
  const nodes: Server[] = []
  const gens: Worker<ConnCommand, ConnEvent>[] = []
  try {
    // On every loopback address when the sockets go to them (dst).
    // --server-env may set LOG_LEVEL (it used to be overridden here: a LOG_LEVEL=warn pair ran with its lines on).
    const env: Record<string, string> = { LOG_LEVEL: 'info', ...o.env, API_KEY, HOST: o.spread === 'dst' ? '0.0.0.0' : '127.0.0.1' }
    if (redis) Object.assign(env, { REDIS_URL: redis.url, REDIS_PREFIX: `bench-conn-${process.pid}:` })
    const names = config === 'redis' && !o.workers ? ['a', 'b'] : ['a']
    for (const name of names) {
      const kind = config === 'bare' ? 'bare-connect' : 'chat'
      const extra: Record<string, string> = { NODE_ID: `bench-conn-${name}` }
      if (config === 'redis' && o.workers) Object.assign(extra, { WORKERS: String(o.workers), PORT: String(freePort()) })
      // --profile: the memory node, or node a of the redis config, under `bun --cpu-prof` (bench/profile.ts reads it).
      const cpuProfDir = config !== 'bare' && name === 'a' ? o.profileDir : undefined
      const r = await startServer(kind, { ...env, ...extra }, { timeoutMs: 60_000, cpuProfDir })
      if (!r.ok) throw new Error(`${kind} node ${name} (${config}) did not start (exit ${r.code}): ${r.stderr.slice(0, 300)}`)
      nodes.push(r.server)
    }
    const ports = nodes.map((s) => s.port)
    const pids = nodes.map((s) => s.pid)
    const addresses = Array.from({ length: Math.max(1, o.addresses) }, (_, i) => `127.0.0.${i + 1}`)
    const G = o.generators || Math.max(2, Math.ceil(o.connections / 15_000))
    for (let i = 0; i < G; i++) gens.push(new Worker<ConnCommand, ConnEvent>(`conn-${i}`, 'bench/connections-worker.ts'))
    const serverCpu = () => sum(pids.map(treeCpu))
    const serverRss = () => sum(pids.map(treeRss))
    const rcpu = async () => (redis ? sum(await Promise.all(redis.ports.map(redisCpu))) : 0)
    const counts = async () => {
      const c = await Promise.all(gens.map((g) => g.request({ cmd: 'count' }, 'counted')))
      return { framesOfReady: sum(c.map((x) => x.framesOfReady)), maxSeq: Math.max(...c.map((x) => x.maxSeq)) }
    }
    await Bun.sleep(500)
    const rss0 = serverRss()
    const steps: ConnStep[] = []
    let open = 0
    let next = 0
    const row: ConnRow = {
      config,
      nodes: nodes.length,
      workers: config === 'redis' && o.workers ? o.workers : undefined,
      generators: G,
      steps,
      idleKiBPerSocket: NaN,
      serverRssMiB: NaN,
    }
    while (next < o.connections) {
      const n = Math.min(o.step, o.connections - next)
      const c0 = await counts()
      const cpu0 = serverCpu()
      const rc0 = await rcpu()
      const t0 = performance.now()
      // Socket i of the run is opened by generator i mod G: each step spreads over every generator.
      const per = Array.from({ length: G }, (_, g) => Math.floor(n / G) + (g < n % G ? 1 : 0))
      let from = next
      const opened = await Promise.all(
        gens.map((g, i) => {
          const r = g.request(
            {
              cmd: 'open',
              ports,
              addresses,
              spread: o.spread,
              prefix: 'c',
              from,
              count: per[i]!,
              inflight: Math.max(1, Math.ceil(o.batch / G)),
            },
            'opened',
            300_000,
          )
          from += per[i]!
          return r
        }),
      )
      const wall = (performance.now() - t0) / 1000
      // The frames a connect caused may still be on their way: wait (≤ 3 s) until the count
      // stands still, so that they and the CPU that sent them land in this step, not the next.
      let seen = -1
      for (let i = 0; i < 30; i++) {
        const f = (await counts()).framesOfReady
        if (f === seen) break
        seen = f
        await Bun.sleep(100)
      }
      const cpu = serverCpu() - cpu0
      const rc = (await rcpu()) - rc0
      const c1 = await counts()
      const ok = sum(opened.map((x) => x.open))
      const failed = sum(opened.map((x) => x.failed))
      next += n
      open += ok
      const st: ConnStep = {
        open,
        connectsPerS: Math.round(ok / wall),
        cpuMsPerConnect: ok ? r2((cpu / ok) * 1000) : NaN,
        cpuS: r2(cpu),
        connects: ok,
        redisCpuMsPerConnect: redis && ok ? r2((rc / ok) * 1000) : undefined,
        framesPerConnect: ok ? Math.round((c1.framesOfReady - c0.framesOfReady) / ok) : NaN,
        rssKiBPerSocket: open ? r2((serverRss() - rss0) / open / 1024) : NaN,
        failed,
        retries: sum(opened.map((x) => x.retries)),
      }
      steps.push(st)
      log(`${config}: ${JSON.stringify(st)}`)
      if (st.retries)
        log(
          `${config}: retried because ${opened
            .flatMap((x) => x.retryReasons)
            .slice(0, 3)
            .join(' | ')}`,
        )
      if (failed) {
        log(
          `${config}: ${failed} failed: ${opened
            .flatMap((x) => x.reasons)
            .slice(0, 3)
            .join(' | ')}`,
        )
        if (!ok) throw new Error(`${config}: no socket of the step opened: ${opened.flatMap((x) => x.reasons)[0]}`)
      }
    }
    await Bun.sleep(2000) // the connects' own work settles
    row.idleKiBPerSocket = r2((serverRss() - rss0) / open / 1024)
    row.serverRssMiB = r2(serverRss() / 1024 / 1024)

    if (o.broadcasts > 0) {
      for (const g of gens) g.send({ cmd: 'bcast-start' })
      await Bun.sleep(50)
      let delivered = 0
      for (let b = 1; b <= o.broadcasts; b++) {
        const res = await fetch(`http://127.0.0.1:${ports[0]}/api/publish`, {
          method: 'POST',
          headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
          body: JSON.stringify({ room: 'general', body: `~${Math.round((performance.timeOrigin + performance.now()) * 1000)}~` }),
        })
        if (!res.ok) throw new Error(`${config}: /api/publish answered ${res.status}: ${await res.text()}`)
        const end = Date.now() + 15_000
        do {
          await Bun.sleep(100)
          delivered = sum((await Promise.all(gens.map((g) => g.request({ cmd: 'bcast-stop' }, 'bcast')))).map((x) => x.received))
        } while (delivered < b * open && Date.now() < end)
        await Bun.sleep(300)
      }
      const all = await Promise.all(gens.map((g) => g.request({ cmd: 'bcast-stop' }, 'bcast')))
      const h = new Histogram()
      for (const x of all) h.merge(x.hist)
      row.broadcast = {
        sent: o.broadcasts,
        delivered: sum(all.map((x) => x.received)),
        expected: o.broadcasts * open,
        latency: h.n ? h.summary() : undefined,
      }
      log(`${config} broadcast: ${JSON.stringify(row.broadcast)}`)
    }

    if (o.storm) {
      const senders = new Worker<ConnCommand, ConnEvent>('conn-senders', 'bench/connections-worker.ts')
      gens.push(senders)
      await senders.request(
        { cmd: 'senders', ports, addresses, spread: o.spread, prefix: 'storm-s', count: o.stormSenders },
        'sending',
        60_000,
      )
      await Bun.sleep(500)
      const base = (await counts()).maxSeq + 1
      // Every seq the senders can take in the window is counted per socket (a byte each).
      const window = Math.min(8192, Math.ceil(o.stormRate * (o.stormTimeoutS + 20)) + 100)
      const members = gens.filter((g) => g !== senders)
      await Promise.all(members.map((g) => g.request({ cmd: 'watch', base, window }, 'watching')))
      const cpu0 = serverCpu()
      const rc0 = await rcpu()
      senders.send({ cmd: 'send', rate: o.stormRate, max: window - 50 })
      await Bun.sleep(1000) // messages flowing before the storm
      const t0 = performance.now()
      const stormed = await Promise.all(
        members.map((g) =>
          g.request(
            { cmd: 'storm', inflight: Math.max(1, Math.ceil(o.stormInflight / G)), timeoutS: o.stormTimeoutS, attemptS: o.stormAttemptS },
            'stormed',
            (o.stormTimeoutS + 60) * 1000,
          ),
        ),
      )
      const seconds = (performance.now() - t0) / 1000
      await Bun.sleep(1000) // messages flowing after it
      const unsent = await senders.request({ cmd: 'unsend' }, 'unsent', 30_000)
      const cpu = serverCpu() - cpu0
      const rc = (await rcpu()) - rc0
      await Bun.sleep(2000) // the last deliveries
      const rssAfter = serverRss()
      const checked = await Promise.all(members.map((g) => g.request({ cmd: 'check', seqs: unsent.acked }, 'checked', 60_000)))
      row.storm = {
        sockets: open,
        rssKiBPerSocketAfter: r2((rssAfter - rss0) / open / 1024),
        resumed: sum(stormed.map((x) => x.resumed)),
        unrecovered: sum(stormed.map((x) => x.unrecovered)),
        failed: sum(stormed.map((x) => x.failed)),
        retries: sum(stormed.map((x) => x.retries)),
        retryReasons: stormed.flatMap((x) => x.retryReasons).slice(0, 3),
        seconds: r2(seconds),
        p50S: r2(Math.max(...stormed.map((x) => x.p50Ms)) / 1000),
        p99S: r2(Math.max(...stormed.map((x) => x.p99Ms)) / 1000),
        serverCpuS: r2(cpu),
        redisCpuS: redis ? r2(rc) : undefined,
        senders: o.stormSenders,
        sent: unsent.sent,
        acked: unsent.acked.length,
        expected: sum(checked.map((x) => x.expected)),
        missing: sum(checked.map((x) => x.missing)),
        duplicates: sum(checked.map((x) => x.duplicates)),
        socketsWithLoss: sum(checked.map((x) => x.socketsWithLoss)),
        closedWithLoss: sum(checked.map((x) => x.closedWithLoss)),
        withHoles: sum(checked.map((x) => x.withHoles)),
        reasons: stormed.flatMap((x) => x.reasons).slice(0, 3),
      }
      log(`${config} storm: ${JSON.stringify(row.storm)}`)
    }
    return row
  } finally {
    await Promise.all(gens.map((g) => g.exit()))
    await Promise.all(nodes.map((s) => s.stop()))
    await redis?.stop()
  }
}

export async function connectionsScenario(o: ConnectionsOptions): Promise<ConnRow[]> {
  const rows: ConnRow[] = []
  for (const c of o.configs) {
    try {
      rows.push(await runConfig(c, o))
    } catch (err) {
      log(`${c}: ${(err as Error).message}`)
      rows.push({ config: c, nodes: 0, generators: 0, steps: [], idleKiBPerSocket: NaN, serverRssMiB: NaN, error: (err as Error).message })
    }
  }
  return rows
}

/** Issue 34's targets. */
export const CONN_TARGETS = { growth: 1.3, timesBare: 10, stormOneNodeS: 5, stormRedisS: 10, broadcastP99Ms: 50, idleKiB: 3 }

/** Scenario `connections`: one column per config; the per-step rows at the first, middle and last step. */
export function connectionsTable(rows: ConnRow[]): string {
  if (!rows.length) return ''
  const t = CONN_TARGETS
  const f = (x?: number, d = 2) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(d))
  const n = (x?: number) => (x === undefined || Number.isNaN(x) ? '–' : Math.round(x).toLocaleString('en-US'))
  const ok = (b: boolean) => (b ? '✅' : '❌')
  const col = (g: (x: ConnRow) => string) => rows.map((x) => (x.error ? 'failed' : g(x))).join(' | ')
  const bare = rows.find((x) => x.config === 'bare')
  const name = (x: ConnRow) =>
    x.config === 'bare'
      ? 'bare Bun.serve (reference)'
      : x.config === 'memory'
        ? 'memory, 1 node'
        : x.workers
          ? `WORKERS=${x.workers} + Redis`
          : `${x.nodes} nodes + Redis`
  const longest = rows.reduce((m, x) => Math.max(m, x.steps.length), 0)
  const picks = [...new Set([0, Math.floor((longest - 1) / 2), longest - 1])].filter((i) => i >= 0)
  const last = (x: ConnRow) => x.steps[x.steps.length - 1]
  // Three steps a side when there are six or more: one step of 1 000 connects swings ~2x (a
  // heap's growth, /proc's 10-ms ticks), and the first holds the JIT's warm-up.
  const k3 = rows.every((x) => x.error || x.steps.length >= 6) ? 3 : 1
  const mean = (xs: ConnStep[]) => (sum(xs.map((s) => s.cpuS ?? NaN)) / sum(xs.map((s) => s.connects ?? NaN))) * 1000
  const head3 = (x: ConnRow) => mean(x.steps.slice(0, k3))
  const tail3 = (x: ConnRow) => mean(x.steps.slice(-k3))
  const bareMean = bare ? mean(bare.steps) : NaN
  const open = rows.find((x) => x.steps.length)?.steps.at(-1)?.open ?? 0
  const lines = [
    `| 7 connections: distinct users into the default room, up to ${n(open)} sockets | ${col(name)} | target |`,
    `|---|${rows.map(() => '---:').join('|')}|---|`,
  ]
  for (const i of picks)
    lines.push(
      `| step to ${n(rows.find((x) => x.steps[i])?.steps[i]?.open)}: connects/s; server CPU ms per connect; frames per connect to the open ones | ${col((x) => (x.steps[i] ? `${n(x.steps[i].connectsPerS)}; ${f(x.steps[i].cpuMsPerConnect, 3)}; ${n(x.steps[i].framesPerConnect)}` : '–'))} | |`,
    )
  lines.push(
    `| CPU per connect, ${k3 > 1 ? `last ${k3} steps ÷ first ${k3}` : 'last step ÷ first'} | ${col((x) => {
      const g = tail3(x) / head3(x)
      return x.config === 'bare' ? f(g) : `${f(g)} ${ok(g <= t.growth)}`
    })} | ≤ ${t.growth} |`,
    // Bare's side is its mean over every step: one step of bare is 1–2 ticks of /proc's CPU
    // count (10 ms a 1 000 connects), so its last step alone made the ratio swing by 2x.
    `| CPU per connect, ${k3 > 1 ? `last ${k3} steps` : 'last step'} × bare's (bare: ms per connect over all its steps) | ${col((x) => {
      if (x.config === 'bare' || !bareMean) return x.config === 'bare' ? f(bareMean, 4) : '–'
      const r = tail3(x) / bareMean
      return `${f(r, 1)} ${ok(r <= t.timesBare)}`
    })} | ≤ ${t.timesBare} |`,
    `| Redis CPU ms per connect (last step) | ${col((x) => f(last(x)?.redisCpuMsPerConnect, 3))} | reported |`,
    `| idle server RSS per socket, KiB (all open, 2 s settled); server RSS MiB | ${col((x) => `${f(x.idleKiBPerSocket, 1)} ${ok(x.idleKiBPerSocket <= t.idleKiB)}; ${f(x.serverRssMiB, 0)}`)} | ≤ ${t.idleKiB} KiB |`,
    `| broadcast (POST /api/publish) to all: delivered / expected; p50 / p99 ms | ${col((x) => (x.broadcast ? `${n(x.broadcast.delivered)} / ${n(x.broadcast.expected)}; ${f(x.broadcast.latency?.p50, 1)} / ${f(x.broadcast.latency?.p99, 1)} ${ok((x.broadcast.latency?.p99 ?? Infinity) <= t.broadcastP99Ms)}` : '–'))} | p99 ≤ ${t.broadcastP99Ms} ms |`,
    `| storm: all closed at once, reopened with join {since, epoch}: resumed / sockets in s (p50 / p99 s) | ${col((x) => {
      if (!x.storm) return '–'
      const limit = x.config === 'redis' ? t.stormRedisS : t.stormOneNodeS
      return `${n(x.storm.resumed)} / ${n(x.storm.sockets)} in ${f(x.storm.seconds, 1)} (${f(x.storm.p50S, 1)} / ${f(x.storm.p99S, 1)}) ${ok(x.storm.resumed === x.storm.sockets && x.storm.seconds <= limit)}`
    })} | ≤ ${t.stormOneNodeS} s one node, ≤ ${t.stormRedisS} s with Redis |`,
    `| storm: resumes answered \`recovered: false\` (further behind than the server keeps) | ${col((x) => (x.storm && x.config !== 'bare' ? n(x.storm.unrecovered) : '–'))} | |`,
    `| storm: idle RSS per socket after it, KiB | ${col((x) => f(x.storm?.rssKiBPerSocketAfter, 1))} | |`,
    `| storm: server CPU s (Redis CPU s) | ${col((x) => (x.storm ? `${f(x.storm.serverCpuS, 1)}${x.storm.redisCpuS === undefined ? '' : ` (${f(x.storm.redisCpuS, 1)})`}` : '–'))} | |`,
    `| storm: senders' acked messages; (socket, message) pairs missing / duplicated (bare keeps nothing: its losses are expected) | ${col((x) => (x.storm ? `${n(x.storm.acked)} of ${n(x.storm.sent)}; ${n(x.storm.missing)} / ${n(x.storm.duplicates)} of ${n(x.storm.expected)}${x.storm.socketsWithLoss ? ` (sockets with a loss: ${n(x.storm.socketsWithLoss)}, of them closed: ${n(x.storm.closedWithLoss)}, open with a hole: ${n(x.storm.withHoles)})` : ''} ${x.config === 'bare' ? '' : ok(x.storm.missing === 0 && x.storm.duplicates === 0 && x.storm.acked > 0)}` : '–'))} | nothing lost |`,
    `| failed connects (all steps); retried; in the storm failed; retried; generator processes | ${col((x) => `${n(sum(x.steps.map((s) => s.failed)))}; ${n(sum(x.steps.map((s) => s.retries)))}; ${n(x.storm?.failed)}; ${n(x.storm?.retries)}; ${x.generators}`)} | |`,
  )
  return lines.join('\n')
}
