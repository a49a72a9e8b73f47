/**
 * Many rooms, one sender each, over one or several chat-server nodes: the load generator of
 * bench/cluster.ts (many rooms through one Redis vs a Redis Cluster) and bench/small-rooms.ts
 * (issue 27: rooms of 2–10 members split over two nodes), and the Redis helpers they share
 * (a private redis-server, INFO CPU, the CPU of a process tree).
 *
 * The generator runs in the bench process itself (Bun's WebSocket client): its CPU is the
 * process's own and is reported next to the servers', so a generator-bound rate shows.
 */
import Redis from 'ioredis'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, listening } from '../../test/helpers/services'
import { Histogram } from './histogram'
import { cpuSeconds } from './proc'

const BODY = 'x'.repeat(40)

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
  const proc = Bun.spawn(['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], { stdout: 'ignore', stderr: 'ignore' })
  // An interrupted bench (bench/lib/proc.ts exits on SIGINT/SIGTERM) leaves no redis-server behind.
  process.on('exit', () => proc.exitCode === null && proc.kill('SIGKILL'))
  for (let i = 0; i < 250 && !(await listening(port)); i++) await Bun.sleep(20)
  if (!(await listening(port))) throw new Error(`redis-server on ${port} did not start`)
  return { ports: [port], url: `redis://127.0.0.1:${port}`, primaries: async () => [port], stop: async () => void (proc.kill('SIGKILL'), await proc.exited) }
}

/**
 * Room sizes from `min` to `max` members, spread evenly and deterministically: room r has
 * min + (5r mod (max-min+1)) members (5 is prime to 9, so 2..10 all come round every 9 rooms).
 */
export function roomSizes(rooms: number, min: number, max: number): number[] {
  const span = max - min + 1
  return Array.from({ length: rooms }, (_, r) => min + ((r * 5) % span))
}

export interface RoomStats {
  acked: number
  delivered: number
  errors: number
  sent: number
}

export interface RoomsLoad {
  stats: RoomStats
  /** Send → ack times (µs) since the last reset. */
  ack: Histogram
  sockets: number
  senders: number
  /** Saturated: every sender keeps `window` acked sends in flight. */
  flood(window: number): void
  /** Paced: `rate` messages a second in all, round-robin over the senders. */
  pace(rate: number): void
  /** Stops sending and waits (≤ 5 s) for what is in flight; returns how many stayed unanswered. */
  halt(): Promise<number>
  close(): void
}

/**
 * Opens every member of every room; member m of room r connects to node (r + m) mod nodes, so
 * with two nodes every room of 2 or more spans both and the senders (member 0) alternate.
 * One user per connection, as in real chat (no user's state holds thousands of sockets).
 */
export async function openRooms(ports: number[], sizes: number[], prefix = 'room'): Promise<RoomsLoad> {
  const stats: RoomStats = { acked: 0, delivered: 0, errors: 0, sent: 0 }
  const ack = new Histogram()
  const sentAt = new Map<number, number>()
  const sockets: WebSocket[] = []
  const senders: { ws: WebSocket; room: string; inflight: number }[] = []
  let mode: 'off' | 'flood' | 'pace' = 'off'
  let n = 0
  let ticker: ReturnType<typeof setInterval> | undefined
  const send = (s: (typeof senders)[number]) => {
    s.inflight++
    stats.sent++
    const id = ++n
    sentAt.set(id, performance.now())
    s.ws.send(`{"type":"chat","room":"${s.room}","body":"${BODY}","id":"m${id}"}`)
  }
  const answered = (d: string) => {
    // `"id":"m123"`: the id the generator gave; the time it was sent is kept by id.
    const i = d.indexOf('"id":"m')
    if (i < 0) return
    const id = Number(d.slice(i + 7, d.indexOf('"', i + 7)))
    const t = sentAt.get(id)
    if (t === undefined) return
    sentAt.delete(id)
    ack.record((performance.now() - t) * 1000)
  }
  /**
   * Opens one member and resolves once its join is answered. A socket closed or silent for 20 s
   * before that is retried once (on a busy machine a join can be lost in the crowd), then fails
   * the run with what it last saw, instead of hanging it.
   */
  const open = (room: string, node: number, user: string, sender: boolean, retry = true): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${ports[node]}/ws?user=${user}&name=${user}`)
      const me = { ws, room, inflight: 0 }
      let state = 'connecting'
      let done = false
      const fail = (why: string) => {
        if (done) return
        done = true
        clearTimeout(timer)
        try {
          ws.close()
        } catch {}
        if (retry) open(room, node, user, sender, false).then(resolve, reject)
        else reject(new Error(`${user} on node ${node} (port ${ports[node]}), ${state}: ${why}`))
      }
      const timer = setTimeout(() => fail('no answer to join within 20 s'), 20_000)
      ws.onopen = () => {
        state = 'open, join sent'
        ws.send(`{"type":"join","room":"${room}","id":"j"}`)
      }
      ws.onerror = () => fail('socket error')
      ws.onclose = (e) => fail(`closed (${e.code} ${e.reason})`)
      ws.onmessage = (e) => {
        const d = e.data as string
        if (d.startsWith('{"type":"chat"')) stats.delivered++
        else if (d.startsWith('{"type":"ack"') || d.startsWith('{"type":"error"')) {
          if (!done && d.includes('"id":"j"')) return fail(`join refused: ${d.slice(0, 200)}`)
          if (d.charCodeAt(9) === 101 /* e */) stats.errors++
          else stats.acked++
          me.inflight--
          answered(d)
          if (mode === 'flood') send(me)
        } else if (!done && d.startsWith('{"type":"joined"') && d.includes('"id":"j"')) {
          done = true
          clearTimeout(timer)
          ws.onclose = null
          sockets.push(ws)
          if (sender) senders.push(me)
          resolve()
        }
      }
    })
  const all: [string, number, string, boolean][] = []
  for (let r = 0; r < sizes.length; r++) for (let m = 0; m < sizes[r]!; m++) all.push([`${prefix}-${r}`, (r + m) % ports.length, `u${r}-${m}`, m === 0])
  for (let i = 0; i < all.length; i += 250) await Promise.all(all.slice(i, i + 250).map(([room, node, user, s]) => open(room, node, user, s)))
  return {
    stats,
    ack,
    sockets: sockets.length,
    senders: senders.length,
    flood(window) {
      mode = 'flood'
      for (const s of senders) for (let i = 0; i < window; i++) send(s)
    },
    pace(rate) {
      mode = 'pace'
      const t0 = performance.now()
      let due = 0
      let next = 0
      // Every 5 ms, what is due since the start: a late tick catches up instead of drifting.
      ticker = setInterval(() => {
        const target = Math.floor(((performance.now() - t0) / 1000) * rate)
        for (; due < target; due++) send(senders[next++ % senders.length]!)
      }, 5)
    },
    async halt() {
      mode = 'off'
      if (ticker) clearInterval(ticker)
      ticker = undefined
      const end = Date.now() + 5000
      while (senders.some((s) => s.inflight > 0) && Date.now() < end) await Bun.sleep(20)
      return senders.reduce((s, x) => s + Math.max(0, x.inflight), 0)
    },
    close() {
      for (const ws of sockets) ws.close()
    },
  }
}
