/** The shape of bench/results/*.json and the Markdown tables made from it (stdout and docs). */
import type { ConnRow } from '../connections'
import { connectionsTable } from '../connections'
import type { SmallRoomsRow } from '../small-rooms'
import type { LatencySummary } from './histogram'

export interface Skipped {
  skipped: string
  detail?: string
}

export interface RunStats {
  deliveriesPerSec: number
  messagesPerSec: number
  serverCpuPct: number
  generatorCpuPct: number
  deliveriesPerServerCpuSec?: number
  /** Server CPU-seconds per million deliveries: the server's own figure when the generator is saturated. */
  serverCpuSecPerMDeliveries?: number
  /** The generator used ≥ 90 % of a core: the rate is (also) the generator's. */
  generatorBound?: boolean
  serverCpuUsPerMessage?: number
  deliveredRatio?: number
  seconds: number
  closes: number
  members: number
  latency?: LatencySummary
  connectMs?: number
  serverRssMiB?: number
  memberWorkers?: number
}

export interface IdleRow {
  kind: 'bare' | 'chat'
  count: number
  open?: number
  failed?: number
  perConnKiB?: number
  rssBeforeMiB?: number
  rssAfterMiB?: number
  note?: string
  skipped?: string
  fdLimit?: number
}

export interface Results {
  date: string
  quick: boolean
  options: Record<string, unknown>
  machine: {
    nproc: number
    cpu: string
    memGiB: number
    bun: string
    kernel: string
    loadavg: string
    loadavgEnd?: string
    fdLimit: number
  }
  bunBinary: string
  totalSeconds?: number
  scenarios: {
    fanout?: { bare: RunStats | Skipped; chat: RunStats | Skipped }
    perMessage?: { bare: RunStats | Skipped; chat: RunStats | Skipped }
    chatBench?: { bare: RunStats | Skipped; chat: RunStats | Skipped; floor?: RunStats | Skipped }
    /** 1c without taskset: generator and server share both cores (issue 27's target). */
    chatBenchUnpinned?: { bare: RunStats | Skipped; chat: RunStats | Skipped }
    /** Many small rooms (bench/small-rooms.ts): one node memory, two nodes + Redis, two nodes + Redis Cluster. */
    small?: { rows: SmallRoomsRow[]; seconds: number }
    /** Connections at scale (bench/connections.ts, issue 34): bare-connect, one memory node, two nodes + Redis. */
    connections?: { rows: ConnRow[]; seconds: number; loadavg: string }
    latency?: { members: number; rate: number; bare: RunStats | Skipped; chat: RunStats | Skipped }[]
    cross?: { flood: RunStats & CrossCpu; paced: RunStats & CrossCpu; members: number; senders: number; rate?: number } | Skipped
    idle?: IdleRow[]
    persist?:
      | {
          committedPerSec: number
          ack?: LatencySummary
          errors: number
          senders: number
          inFlightPerSender: number
          serverCpuPct: number
          generatorCpuPct?: number
          sentTotal?: number
          ackedTotal?: number
          storedRows?: number
          baseline?: { committedPerSec: number; ack?: LatencySummary } | Skipped
        }
      | Skipped
  }
}

interface CrossCpu {
  nodeACpuPct: number
  redisCpuPct?: number
}

export const isSkipped = (x: unknown): x is Skipped => typeof x === 'object' && x !== null && 'skipped' in x
const n = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? '–' : Math.round(x).toLocaleString('en-US'))
const ms = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(2))
const ratio = (a?: number, b?: number) => (a && b ? (a / b).toFixed(2) : '–')
const verdict = (ok: boolean | undefined) => (ok === undefined ? '' : ok ? 'met' : 'NOT met')
const get = <T>(x: T | Skipped | undefined): T | undefined => (x && !isSkipped(x) ? x : undefined)
const why = (x: unknown) => (isSkipped(x) ? `skipped: ${x.skipped}` : '')
/** Marks a rate measured while the generator was saturated. */
const gb = (x?: RunStats) => (x?.generatorBound ? ' ⚠ generator-bound' : '')
const GB_NOTE =
  "⚠ generator-bound: the generator was above ~90 % of a core, so the ratio of rates is not the server's; compare the server CPU per million deliveries."
const cpuM = (x?: RunStats) => (x?.serverCpuSecPerMDeliveries === undefined ? '–' : x.serverCpuSecPerMDeliveries.toFixed(3))
const lat = (l?: LatencySummary) => (l ? `${ms(l.p50)} / ${ms(l.p95)} / ${ms(l.p99)} / ${ms(l.max)}` : '–')

/** Markdown tables of a run. */
export function renderTables(r: Results): string {
  const out: string[] = []
  const m = r.machine
  out.push(
    `Run ${r.date}${r.quick ? ' (--quick)' : ''}: ${m.nproc} cores (${m.cpu}), ${m.memGiB} GiB, bun ${m.bun}, Linux ${m.kernel}; ` +
      `load average ${m.loadavg} at start${m.loadavgEnd ? `, ${m.loadavgEnd} at end` : ''}; open-file limit ${m.fdLimit}.`,
    '',
    '| scenario | figure | bare Bun publish | chat-server | chat / bare | target |',
    '|---|---|---:|---:|---:|---|',
  )
  const fo = r.scenarios.fanout
  if (fo) {
    const b = get(fo.bare)
    const c = get(fo.chat)
    const label = `1 fan-out: ${c?.members ?? b?.members ?? ''} members, ${r.options.senders} senders`
    const rt = b && c ? c.deliveriesPerSec / b.deliveriesPerSec : undefined
    out.push(
      `| ${label} | deliveries/s | ${n(b?.deliveriesPerSec)}${gb(b)} ${why(fo.bare)} | ${n(c?.deliveriesPerSec)}${gb(c)} ${why(fo.chat)} | ${ratio(c?.deliveriesPerSec, b?.deliveriesPerSec)} | ≥ 0.85 × bare: ${verdict(rt === undefined ? undefined : rt >= 0.85)} |`,
    )
    out.push(
      `| | server CPU-s per million deliveries | ${cpuM(b)} | ${cpuM(c)} | ${ratio(c?.serverCpuSecPerMDeliveries, b?.serverCpuSecPerMDeliveries)} | ≤ 1.2 × bare: ${verdict(b?.serverCpuSecPerMDeliveries && c?.serverCpuSecPerMDeliveries ? c.serverCpuSecPerMDeliveries <= 1.2 * b.serverCpuSecPerMDeliveries : undefined)} |`,
    )
    out.push(`| | messages/s in | ${n(b?.messagesPerSec)} | ${n(c?.messagesPerSec)} | ${ratio(c?.messagesPerSec, b?.messagesPerSec)} | |`)
    out.push(`| | server CPU (% of one core) | ${n(b?.serverCpuPct)} | ${n(c?.serverCpuPct)} | | |`)
    out.push(
      `| | deliveries per server CPU-second | ${n(b?.deliveriesPerServerCpuSec)} | ${n(c?.deliveriesPerServerCpuSec)} | ${ratio(c?.deliveriesPerServerCpuSec, b?.deliveriesPerServerCpuSec)} | |`,
    )
    out.push(`| | generator CPU (% of one core) | ${n(b?.generatorCpuPct)} | ${n(c?.generatorCpuPct)} | | |`)
  }
  const pm = r.scenarios.perMessage
  if (pm) {
    const b = get(pm.bare)
    const c = get(pm.chat)
    out.push(
      `| 1b per-message cost: ${c?.members ?? b?.members ?? ''} members, ${r.options.senders} senders | messages/s in | ${n(b?.messagesPerSec)}${gb(b)} ${why(pm.bare)} | ${n(c?.messagesPerSec)}${gb(c)} ${why(pm.chat)} | ${ratio(c?.messagesPerSec, b?.messagesPerSec)} | |`,
    )
    out.push(
      `| | deliveries/s; server CPU-s per million deliveries | ${n(b?.deliveriesPerSec)}; ${cpuM(b)} | ${n(c?.deliveriesPerSec)}; ${cpuM(c)} | ${ratio(c?.serverCpuSecPerMDeliveries, b?.serverCpuSecPerMDeliveries)} (CPU) | |`,
    )
    out.push(
      `| | server CPU µs per message (CPU %) | ${b?.serverCpuUsPerMessage ?? '–'} (${n(b?.serverCpuPct)}) | ${c?.serverCpuUsPerMessage ?? '–'} (${n(c?.serverCpuPct)}) | ${ratio(c?.serverCpuUsPerMessage, b?.serverCpuUsPerMessage)} | |`,
    )
    out.push(`| | generator CPU (% of one core) | ${n(b?.generatorCpuPct)} | ${n(c?.generatorCpuPct)} | | |`)
  }
  /** Scenario 1c's four rows, pinned or not: the same shape, the same targets. */
  const chatBenchRows = (cb: NonNullable<typeof r.scenarios.chatBench>, label: string) => {
    const b = get(cb.bare)
    const c = get(cb.chat)
    const rt = b && c ? c.deliveriesPerSec / b.deliveriesPerSec : undefined
    const rc =
      b?.serverCpuSecPerMDeliveries && c?.serverCpuSecPerMDeliveries
        ? c.serverCpuSecPerMDeliveries / b.serverCpuSecPerMDeliveries
        : undefined
    out.push(
      `| ${label} | deliveries/s | ${n(b?.deliveriesPerSec)}${gb(b)} ${why(cb.bare)} | ${n(c?.deliveriesPerSec)}${gb(c)} ${why(cb.chat)} | ${ratio(c?.deliveriesPerSec, b?.deliveriesPerSec)} | ≥ 0.85 × bare: ${verdict(rt === undefined ? undefined : rt >= 0.85)} |`,
    )
    out.push(
      `| | server CPU-s per million deliveries | ${cpuM(b)} | ${cpuM(c)} | ${rc === undefined ? '–' : rc.toFixed(2)} | ≤ 1.2 × bare: ${verdict(rc === undefined ? undefined : rc <= 1.2)} |`,
    )
    out.push(
      `| | messages/s in; server CPU µs per message | ${n(b?.messagesPerSec)}; ${b?.serverCpuUsPerMessage ?? '–'} | ${n(c?.messagesPerSec)}; ${c?.serverCpuUsPerMessage ?? '–'} | ${ratio(c?.messagesPerSec, b?.messagesPerSec)} | |`,
    )
    out.push(
      `| | server CPU / generator CPU (% of one core) | ${n(b?.serverCpuPct)} / ${n(b?.generatorCpuPct)} | ${n(c?.serverCpuPct)} / ${n(c?.generatorCpuPct)} | | |`,
    )
    return { b, c }
  }
  const cb = r.scenarios.chatBench
  if (cb) {
    const { b, c } = chatBenchRows(
      cb,
      `1c chat-bench shape: ${get(cb.chat)?.members ?? get(cb.bare)?.members ?? ''} clients all sending, each message to all, ${r.options.peerWindow} in flight`,
    )
    const f = cb.floor ? get(cb.floor) : undefined
    if (f) {
      // bench/servers/floor.ts: JSON parse, seq, UUIDv7, ISO time, encode, publish; nothing else.
      const fc =
        f.serverCpuSecPerMDeliveries && b?.serverCpuSecPerMDeliveries
          ? f.serverCpuSecPerMDeliveries / b.serverCpuSecPerMDeliveries
          : undefined
      out.push(
        `| | the protocol's floor (bench/servers/floor.ts: parse, seq, UUIDv7, ISO time, encode, publish): deliveries/s; server CPU-s per million deliveries (× bare); µs per message | | ${n(f.deliveriesPerSec)}${gb(f)}; ${cpuM(f)} (${fc === undefined ? '–' : fc.toFixed(2)}); ${f.serverCpuUsPerMessage ?? '–'} | chat / floor CPU: ${ratio(c?.serverCpuSecPerMDeliveries, f.serverCpuSecPerMDeliveries)} | |`,
      )
    }
  }
  const cu = r.scenarios.chatBenchUnpinned
  if (cu) chatBenchRows(cu, "1c unpinned (issue 27's target): the same shape, no taskset, generator and server share both cores")
  for (const [i, la] of (r.scenarios.latency ?? []).entries()) {
    const b = get(la.bare)
    const c = get(la.chat)
    const label = `2 latency: ${n(la.members)} members, ${la.rate} msg/s`
    const target = i === 0 ? `p99 < 10 ms: ${verdict(c?.latency ? c.latency.p99 < 10 : undefined)}` : '(reference point)'
    out.push(
      `| ${label} | p50 / p95 / p99 / max ms | ${lat(b?.latency)} ${why(la.bare)} | ${lat(c?.latency)} ${why(la.chat)} | ${ratio(c?.latency?.p99, b?.latency?.p99)} (p99) | ${target} |`,
    )
    out.push(
      `| | deliveries/s (delivered / expected) | ${n(b?.deliveriesPerSec)} (${b?.deliveredRatio ?? '–'}) | ${n(c?.deliveriesPerSec)} (${c?.deliveredRatio ?? '–'}) | | |`,
    )
    out.push(
      `| | server CPU / generator CPU (%) | ${n(b?.serverCpuPct)} / ${n(b?.generatorCpuPct)} | ${n(c?.serverCpuPct)} / ${n(c?.generatorCpuPct)} | | |`,
    )
  }
  const cr = r.scenarios.cross
  if (cr) {
    const c = get(cr)
    const bare = get(fo?.bare)
    if (!c)
      out.push(`| 3 cross-node: 2 nodes + Redis | deliveries/s, p99 | ${n(bare?.deliveriesPerSec)} | ${why(cr)} | – | ≥ 0.85 × bare |`)
    else {
      const rt = bare ? c.flood.deliveriesPerSec / bare.deliveriesPerSec : undefined
      const rate = c.rate ?? (r.options.rate as number)
      const cpu = (x: RunStats & CrossCpu) => `${n(x.nodeACpuPct)} / ${n(x.serverCpuPct)} / ${n(x.redisCpuPct)} / ${n(x.generatorCpuPct)}`
      const rc =
        bare?.serverCpuSecPerMDeliveries && c.flood.serverCpuSecPerMDeliveries
          ? c.flood.serverCpuSecPerMDeliveries / bare.serverCpuSecPerMDeliveries
          : undefined
      out.push(
        `| 3 cross-node: 2 nodes + Redis, ${n(c.members)} members on node B, ${c.senders} senders on node A | flood deliveries/s (messages/s) | ${n(bare?.deliveriesPerSec)}${gb(bare)} (scenario 1, one node) | ${n(c.flood.deliveriesPerSec)}${gb(c.flood)} (${n(c.flood.messagesPerSec)}) | ${ratio(c.flood.deliveriesPerSec, bare?.deliveriesPerSec)} | ≥ 0.85 × bare: ${verdict(rt === undefined ? undefined : rt >= 0.85)} |`,
      )
      out.push(
        `| | flood: node B server CPU-s per million deliveries | ${cpuM(bare)} (scenario 1, one node) | ${cpuM(c.flood)} | ${rc === undefined ? '–' : rc.toFixed(2)} | ≤ 1.2 × bare: ${verdict(rc === undefined ? undefined : rc <= 1.2)} |`,
      )
      out.push(`| | flood CPU node A / node B / Redis / generator (%) | | ${cpu(c.flood)} | | |`)
      out.push(`| | p50 / p95 / p99 / max ms at ${rate} msg/s (${n(rate * c.members)} deliveries/s) | | ${lat(c.paced.latency)} | | |`)
      out.push(
        `| | paced delivered / expected, CPU node A / node B / Redis / generator (%) | | ${c.paced.deliveredRatio ?? '–'}, ${cpu(c.paced)} | | |`,
      )
    }
  }
  const sm = r.scenarios.small
  if (sm) out.push('', smallRoomsTable(sm.rows))
  const cn = r.scenarios.connections
  if (cn) out.push('', connectionsTable(cn.rows), '', `(connections: load average ${cn.loadavg} at its end, ${cn.seconds} s)`)
  const idle = r.scenarios.idle
  if (idle) {
    const counts = [...new Set(idle.map((x) => x.count))]
    for (const count of counts) {
      const b = idle.find((x) => x.kind === 'bare' && x.count === count)
      const c = idle.find((x) => x.kind === 'chat' && x.count === count)
      const cell = (x?: IdleRow) =>
        !x
          ? '–'
          : x.skipped
            ? `skipped: ${x.skipped}`
            : `${x.perConnKiB?.toFixed(2)} KiB/conn, RSS ${x.rssAfterMiB} MiB${x.open !== x.count ? ` (${n(x.open)} open${x.note ? `; ${x.note}` : ''})` : ''}`
      let target = ''
      if (count >= 50_000) {
        if (c && !c.skipped && c.rssAfterMiB !== undefined) target = `< 1.5 GiB: ${verdict(c.rssAfterMiB < 1536)}`
        else {
          const base = idle
            .filter((x) => x.kind === 'chat' && !x.skipped && x.perConnKiB !== undefined)
            .sort((p, q) => q.count - p.count)[0]
          if (base) {
            const est = (base.rssBeforeMiB ?? 0) + (count * base.perConnKiB!) / 1024
            target = `< 1.5 GiB: estimate ${Math.round(est)} MiB from the ${n(base.open)} run, not measured`
          } else target = '< 1.5 GiB'
        }
      }
      // Issue 15: at most 3 KiB of RSS per idle authenticated socket, at every count measured.
      if (c && !c.skipped && c.perConnKiB !== undefined)
        target = `≤ 3 KiB per socket: ${verdict(c.perConnKiB <= 3)}${target ? `; ${target}` : ''}`
      out.push(
        `| 4 idle: ${n(count)} sockets | server RSS per connection | ${cell(b)} | ${cell(c)} | ${ratio(c?.perConnKiB, b?.perConnKiB)} | ${target} |`,
      )
    }
  }
  const pe = r.scenarios.persist
  if (pe) {
    const p = get(pe)
    if (!p) out.push(`| 5 persistence (PostgreSQL) | committed msg/s, ack p99 | | ${why(pe)} | | |`)
    else {
      out.push(
        `| 5 persistence: PostgreSQL, no Redis (ack after commit), ${p.senders} senders × ${p.inFlightPerSender} in flight | committed (acked) msg/s | | ${n(p.committedPerSec)} | | |`,
      )
      out.push(`| | ack p50 / p95 / p99 / max ms | | ${lat(p.ack)} | | |`)
      out.push(`| | server CPU / generator CPU (%) | | ${n(p.serverCpuPct)} / ${n(p.generatorCpuPct)} | | |`)
      out.push(
        `| | whole run: sent / acked / rows in messages / errors | | ${n(p.sentTotal)} / ${n(p.ackedTotal)} / ${n(p.storedRows)} / ${n(p.errors)} | | |`,
      )
      const base = p.baseline && get(p.baseline)
      if (base?.ack && p.ack) {
        out.push(
          `| | same load without a store: acked msg/s; ack p50 / p95 / p99 / max ms | | ${n(base.committedPerSec)}; ${lat(base.ack)} | | |`,
        )
        out.push(
          `| | cost of persistence: ack p50 / p99 (ms added) | | +${(p.ack.p50 - base.ack.p50).toFixed(2)} / +${(p.ack.p99 - base.ack.p99).toFixed(2)} | | |`,
        )
      }
    }
  }
  const rows = [fo?.bare, fo?.chat, pm?.bare, pm?.chat, cb?.bare, cb?.chat, cu?.bare, cu?.chat, get(cr)?.flood].map((x) =>
    get(x as RunStats | Skipped | undefined),
  )
  if (rows.some((x) => x?.generatorBound)) out.push('', GB_NOTE)
  return out.join('\n')
}

/** Issue 27's targets for scenario `small`. */
export const SMALL_TARGETS = { serverCpuUsPerMsg: 40, pacedP99Ms: 10 }

/**
 * Scenario `small`: one column per config (bare = a bare Bun.serve, the reference; memory = one
 * node, the engine floor; redis, cluster = two nodes). The CPU target applies to the saturated
 * phase, the latency target to the paced one, both only through Redis.
 */
export function smallRoomsTable(rows: SmallRoomsRow[]): string {
  if (!rows.length) return ''
  const f1 = (x?: number) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(1))
  const col = (f: (x: SmallRoomsRow) => string) => rows.map(f).join(' | ')
  const bare = rows.find((x) => x.config === 'bare')
  const floor = rows.find((x) => x.config === 'memory')
  const t = SMALL_TARGETS
  const through = (x: SmallRoomsRow) => x.config !== 'memory' && x.config !== 'bare'
  const cpuOk = (x: SmallRoomsRow) => (through(x) ? ` (${verdict(x.saturated.serverCpuUsPerMsg <= t.serverCpuUsPerMsg)})` : '')
  const latOk = (x: SmallRoomsRow) => (through(x) && x.paced.ack ? ` (${verdict(x.paced.ack.p99 <= t.pacedP99Ms)})` : '')
  const times = (x?: number, of?: number) => (x && of ? (x / of).toFixed(2) : '–')
  const name = (x: SmallRoomsRow) =>
    x.config === 'bare'
      ? 'bare Bun.serve, 1 node (reference)'
      : x.config === 'memory'
        ? 'memory, 1 node (engine floor)'
        : x.config === 'redis'
          ? '2 nodes + Redis'
          : '2 nodes + Redis Cluster (3 primaries)'
  const r0 = rows[0]!
  const head = `6 small rooms: ${n(r0.rooms)} rooms of 2–10 members (${r0.meanMembers} on average, ${n(r0.sockets)} sockets), one sender per room, ${r0.window} acked in flight`
  const lines = [
    `| ${head} | ${col(name)} | target |`,
    `|---|${rows.map(() => '---:').join('|')}|---|`,
    `| saturated: acked msg/s; deliveries/s | ${col((x) => `${n(x.saturated.msgsPerS)}; ${n(x.saturated.deliveriesPerS)}`)} | |`,
    `| saturated: server CPU µs per acked message (all nodes) | ${col((x) => `${f1(x.saturated.serverCpuUsPerMsg)}${cpuOk(x)}`)} | ≤ ${t.serverCpuUsPerMsg} µs through Redis |`,
    `| saturated: × bare; × memory (the one-node engine floor) | ${col((x) => `${times(x.saturated.serverCpuUsPerMsg, bare?.saturated.serverCpuUsPerMsg)}; ${times(x.saturated.serverCpuUsPerMsg, floor?.saturated.serverCpuUsPerMsg)}`)} | |`,
    `| saturated: the same net of the idle CPU (all sockets open, nothing sent) | ${col((x) => f1(x.saturated.serverCpuUsPerMsgNet))} | |`,
    `| idle: CPU % server per node / Redis | ${col((x) => (x.idle ? `${x.idle.nodeCpuPct.map(f1).join(' + ')} / ${f1(x.idle.redisCpuPct)}` : '–'))} | |`,
    `| saturated: Redis CPU µs per message, all instances (primaries) | ${col((x) => (x.saturated.redisCpuUsPerMsg === undefined ? '–' : `${f1(x.saturated.redisCpuUsPerMsg)} (${f1(x.saturated.redisPrimariesCpuUsPerMsg)})`))} | reported |`,
    `| saturated: CPU % server per node / Redis / generator | ${col((x) => `${x.saturated.nodeCpuPct.map(f1).join(' + ')} / ${f1(x.saturated.redisCpuPct)} / ${f1(x.saturated.generatorCpuPct)}`)} | |`,
    `| paced at half the saturated rate (or --small-rooms-rate): msg/s asked; acked | ${col((x) => `${n(x.paced.rate)}; ${n(x.paced.msgsPerS)}`)} | |`,
    `| paced: ack p50 / p99 ms (send → ack) | ${col((x) => `${ms(x.paced.ack?.p50)} / ${ms(x.paced.ack?.p99)}${latOk(x)}`)} | p99 ≤ ${t.pacedP99Ms} ms |`,
    `| paced: server CPU µs per message (net of idle); × bare; Redis µs per message | ${col((x) => `${f1(x.paced.serverCpuUsPerMsg)} (${f1(x.paced.serverCpuUsPerMsgNet)}); ${times(x.paced.serverCpuUsPerMsg, bare?.paced.serverCpuUsPerMsg)}; ${f1(x.paced.redisCpuUsPerMsg)}`)} | |`,
    `| paced: CPU % server per node / Redis / generator | ${col((x) => `${x.paced.nodeCpuPct.map(f1).join(' + ')} / ${f1(x.paced.redisCpuPct)} / ${f1(x.paced.generatorCpuPct)}`)} | |`,
    `| errors; unanswered at the end; connect ms | ${col((x) => `${x.saturated.errors + x.paced.errors}; ${x.unanswered}; ${n(x.connectMs)}`)} | |`,
  ]
  return lines.join('\n')
}
