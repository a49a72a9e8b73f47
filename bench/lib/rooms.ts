/**
 * Many rooms, one sender each, over one or several chat-server nodes: the load generator of
 * bench/cluster.ts (many rooms through one Redis vs a Redis Cluster) and bench/small-rooms.ts
 * (issue 27: rooms of 2–10 members split over two nodes), and the Redis helpers they share
 * (a private redis-server, INFO CPU, the CPU of a process tree).
 *
 * The generator runs in worker processes (bench/rooms-worker.ts) on raw TCP, the rooms split
 * between them: not in the bench process on Bun's WebSocket client, whose MessageEvent per
 * frame made the generator use most of a core and put its own event-loop delays in the
 * latencies. Its CPU (the workers' and this process's) is reported next to the servers'.
 */
import Redis from 'ioredis'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, listening } from '../../test/helpers/services'
import type { RoomsCommand, RoomsEvent } from '../rooms-worker'
import { Histogram } from './histogram'
import { cpuOf, cpuSeconds, Worker } from './proc'

/** CPU seconds of a process and its children (the supervisor's workers). */
export function treeCpu(pid: number): number {
  let kids: number[] = []
  try {
    kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
  } catch {}
  return (cpuSeconds(pid) || 0) + kids.reduce((s, k) => s + treeCpu(k), 0)
}

/** CPU seconds (INFO cpu: used_cpu_sys + used_cpu_user) of the Redis instance on `port`. */
export async function redisCpu(port: number): Promise<number> {
  const r = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 })
  try {
    await r.connect()
    const info = await r.info('cpu')
    const v = (k: string) => Number(new RegExp(`${k}:([\\d.]+)`).exec(info)?.[1] ?? NaN)
    return v('used_cpu_sys') + v('used_cpu_user')
  } finally {
    r.disconnect()
  }
}

export interface BenchRedis {
  ports: number[]
  url: string
  primaries(): Promise<number[]>
  stop(): Promise<void>
}

/** A redis-server of the bench's own on a free loopback port: no data of anyone else, no persistence. */
export async function privateRedis(): Promise<BenchRedis> {
  const port = freePort()
  const dir = mkdtempSync(join(tmpdir(), 'bench-redis-'))
  const proc = Bun.spawn(
    ['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'],
    { stdout: 'ignore', stderr: 'ignore' },
  )
  // An interrupted bench (bench/lib/proc.ts exits on SIGINT/SIGTERM) leaves no redis-server behind.
  process.on('exit', () => proc.exitCode === null && proc.kill('SIGKILL'))
  for (let i = 0; i < 250 && !(await listening(port)); i++) await Bun.sleep(20)
  if (!(await listening(port))) throw new Error(`redis-server on ${port} did not start`)
  return {
    ports: [port],
    url: `redis://127.0.0.1:${port}`,
    primaries: async () => [port],
    stop: async () => void (proc.kill('SIGKILL'), await proc.exited),
  }
}

/**
 * Room sizes from `min` to `max` members, spread evenly and deterministically: room r has
 * min + (5r mod (max-min+1)) members (5 is prime to 9, so 2..10 all come round every 9 rooms).
 */
export function roomSizes(rooms: number, min: number, max: number): number[] {
  const span = max - min + 1
  return Array.from({ length: rooms }, (_, r) => min + ((r * 5) % span))
}

/** What the generator counted over a measured window (RoomsLoad.start → stop). */
export interface RoomsPhase {
  acked: number
  delivered: number
  errors: number
  sent: number
  /** Send → ack times (µs), every worker's merged. */
  ack: Histogram
}

export interface RoomsLoad {
  sockets: number
  senders: number
  /** Generator processes. */
  workers: number
  /** CPU seconds the generator used so far: its worker processes and this one. */
  cpuSeconds(): number
  /** Starts a measured window. */
  start(): void
  /** Ends it: the workers' counts since start(), their histograms merged. */
  stop(): Promise<RoomsPhase>
  /** Saturated: every sender keeps `window` acked sends in flight. */
  flood(window: number): void
  /** Paced: `rate` messages a second in all, each worker its senders' share, round-robin over them. */
  pace(rate: number): void
  /** Stops sending and waits (≤ 5 s) for what is in flight; returns how many stayed unanswered. */
  halt(): Promise<number>
  close(): Promise<void>
}

/**
 * Opens every member of every room; member m of room r connects to node (r + m) mod nodes, so
 * with two nodes every room of 2 or more spans both and the senders (member 0) alternate.
 * One user per connection, as in real chat (no user's state holds thousands of sockets).
 * Room r is opened by worker r mod `workers`.
 */
export async function openRooms(ports: number[], sizes: number[], prefix = 'room', workers = 2, jwtSecret?: string): Promise<RoomsLoad> {
  const ws = Array.from(
    { length: Math.max(1, Math.min(workers, sizes.length)) },
    (_, i) => new Worker<RoomsCommand, RoomsEvent>(`rooms-${i}`, 'bench/rooms-worker.ts'),
  )
  const close = () => Promise.all(ws.map((w) => w.exit())).then(() => {})
  const parts = ws.map((_, i) => sizes.flatMap((size, r): [number, number][] => (r % ws.length === i ? [[r, size]] : [])))
  const opened = await Promise.all(
    ws.map((w, i) => w.request({ cmd: 'open', ports, rooms: parts[i]!, prefix, jwtSecret }, 'opened', 30 * 60_000)),
  ).catch(async (err) => {
    await close()
    throw err
  })
  const failed = opened.find((o) => o.error)
  if (failed) {
    await close()
    throw new Error(failed.error)
  }
  const senders = opened.map((o) => o.senders)
  const total = senders.reduce((a, b) => a + b, 0)
  const own = () => {
    const u = process.cpuUsage()
    return (u.user + u.system) / 1e6
  }
  return {
    sockets: opened.reduce((n, o) => n + o.sockets, 0),
    senders: total,
    workers: ws.length,
    cpuSeconds: () => cpuOf(ws.map((w) => w.pid)) + own(),
    start() {
      for (const w of ws) w.send({ cmd: 'start' })
    },
    async stop() {
      const all = await Promise.all(ws.map((w) => w.request({ cmd: 'stop' }, 'stats')))
      const ack = new Histogram()
      for (const s of all) ack.merge(s.hist)
      const sum = (k: 'acked' | 'delivered' | 'errors' | 'sent') => all.reduce((n, s) => n + s[k], 0)
      return { acked: sum('acked'), delivered: sum('delivered'), errors: sum('errors'), sent: sum('sent'), ack }
    },
    flood(window) {
      for (const w of ws) w.send({ cmd: 'flood', window })
    },
    pace(rate) {
      ws.forEach((w, i) => total && w.send({ cmd: 'pace', rate: (rate * senders[i]!) / total }))
    },
    async halt() {
      const r = await Promise.all(ws.map((w) => w.request({ cmd: 'halt' }, 'halted', 15_000)))
      return r.reduce((n, x) => n + x.unanswered, 0)
    },
    close,
  }
}
