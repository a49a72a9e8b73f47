/**
 * Medians of interleaved runs: `bench/run.ts` results of a "before" and an "after" chat-server
 * (e.g. `--chat-root=` an export of main, and this checkout), each run with its own bare
 * reference, side by side. On a shared machine single runs differ by 10-30 %; interleave them.
 *
 *   bun run bench/compare.ts before-1.json,before-2.json after-1.json,after-2.json
 */
import { readFileSync } from 'node:fs'
import type { Results, RunStats } from './lib/report'
import { isSkipped, SMALL_TARGETS } from './lib/report'
import type { SmallRoomsRow } from './small-rooms'

const [beforeArg, afterArg] = process.argv.slice(2)
if (!beforeArg || !afterArg) throw new Error('usage: bun run bench/compare.ts before.json[,…] after.json[,…]')
const load = (list: string) => list.split(',').map((f) => JSON.parse(readFileSync(f, 'utf8')) as Results)
const groups = { before: load(beforeArg), after: load(afterArg) }

const median = (xs: number[]) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (!s.length) return NaN
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}
const stat = (r: Results, path: (r: Results) => RunStats | undefined, f: (x: RunStats) => number | undefined) => {
  const x = path(r)
  return x && !isSkipped(x) ? (f(x) ?? NaN) : NaN
}
const fmt = (x: number, d = 2) => (Number.isFinite(x) ? (Math.abs(x) >= 1000 ? Math.round(x).toLocaleString('en-US') : x.toFixed(d)) : '–')

type Row = [label: string, path: (r: Results) => RunStats | undefined, f: (x: RunStats) => number | undefined, digits?: number]
const sc = (k: 'fanout' | 'perMessage' | 'chatBench' | 'chatBenchUnpinned', side: 'bare' | 'chat' | 'floor') => (r: Results) =>
  (r.scenarios[k] as Record<string, unknown> | undefined)?.[side] as RunStats | undefined
const cross = (r: Results) => {
  const c = r.scenarios.cross
  return c && !isSkipped(c) ? (c.flood as RunStats) : undefined
}
const rows: Row[] = []
for (const [k, name] of [
  ['chatBench', '1c chat-bench shape'],
  ['chatBenchUnpinned', '1c unpinned'],
  ['fanout', '1 fan-out, 1000 members'],
  ['perMessage', '1b per-message, 10 members'],
] as const) {
  rows.push([`${name}: deliveries/s, bare`, sc(k, 'bare'), (x) => x.deliveriesPerSec, 0])
  rows.push([`${name}: deliveries/s, chat`, sc(k, 'chat'), (x) => x.deliveriesPerSec, 0])
  rows.push([`${name}: server CPU-s per M deliveries, bare`, sc(k, 'bare'), (x) => x.serverCpuSecPerMDeliveries, 3])
  rows.push([`${name}: server CPU-s per M deliveries, chat`, sc(k, 'chat'), (x) => x.serverCpuSecPerMDeliveries, 3])
  rows.push([`${name}: server CPU µs per message, chat`, sc(k, 'chat'), (x) => x.serverCpuUsPerMessage, 2])
  rows.push([`${name}: generator CPU %, chat`, sc(k, 'chat'), (x) => x.generatorCpuPct, 0])
}
rows.push([
  '1c protocol floor (bench/servers/floor.ts): server CPU-s per M deliveries',
  sc('chatBench', 'floor'),
  (x) => x.serverCpuSecPerMDeliveries,
  3,
])
rows.push(['3 cross-node flood: deliveries/s (node B)', cross, (x) => x.deliveriesPerSec, 0])
rows.push(['3 cross-node flood: node B CPU-s per M deliveries', cross, (x) => x.serverCpuSecPerMDeliveries, 3])
rows.push(['3 cross-node flood: generator CPU %', cross, (x) => x.generatorCpuPct, 0])

// Ratios are taken per run (chat over the bare of the same run), then the median.
const ratio = (k: 'fanout' | 'perMessage' | 'chatBench' | 'chatBenchUnpinned', f: (x: RunStats) => number | undefined) => (r: Results) =>
  stat(r, sc(k, 'chat'), f) / stat(r, sc(k, 'bare'), f)
const ratios: [string, (r: Results) => number][] = [
  ['1c unpinned: chat / bare deliveries/s (issue 27 target ≥ 0.85)', ratio('chatBenchUnpinned', (x) => x.deliveriesPerSec)],
  [
    '1c unpinned: chat / bare server CPU per delivery (issue 27 target ≤ 1.2)',
    ratio('chatBenchUnpinned', (x) => x.serverCpuSecPerMDeliveries),
  ],
  ['1c: chat / bare deliveries/s (target ≥ 0.85)', ratio('chatBench', (x) => x.deliveriesPerSec)],
  ['1c: chat / bare server CPU per delivery (target ≤ 1.2)', ratio('chatBench', (x) => x.serverCpuSecPerMDeliveries)],
  [
    '1c: floor / bare server CPU per delivery',
    (r) =>
      stat(r, sc('chatBench', 'floor'), (x) => x.serverCpuSecPerMDeliveries) /
      stat(r, sc('chatBench', 'bare'), (x) => x.serverCpuSecPerMDeliveries),
  ],
  [
    '1c: chat / floor server CPU per delivery',
    (r) =>
      stat(r, sc('chatBench', 'chat'), (x) => x.serverCpuSecPerMDeliveries) /
      stat(r, sc('chatBench', 'floor'), (x) => x.serverCpuSecPerMDeliveries),
  ],
  ['1: chat / bare deliveries/s', ratio('fanout', (x) => x.deliveriesPerSec)],
  ['1: chat / bare server CPU per delivery', ratio('fanout', (x) => x.serverCpuSecPerMDeliveries)],
  ['1b: chat / bare server CPU per delivery', ratio('perMessage', (x) => x.serverCpuSecPerMDeliveries)],
  [
    '3: flood deliveries/s / one-node bare of the same run (target ≥ 0.85)',
    (r) => stat(r, cross, (x) => x.deliveriesPerSec) / stat(r, sc('fanout', 'bare'), (x) => x.deliveriesPerSec),
  ],
  [
    '3: node B CPU per delivery / one-node bare (target ≤ 1.2)',
    (r) => stat(r, cross, (x) => x.serverCpuSecPerMDeliveries) / stat(r, sc('fanout', 'bare'), (x) => x.serverCpuSecPerMDeliveries),
  ],
]

// Scenario 6 (small rooms): per config; the targets are issue 27's.
const small = (config: string, f: (x: SmallRoomsRow) => number | undefined) => (r: Results) => {
  const row = r.scenarios.small?.rows.find((x) => x.config === config)
  return row ? (f(row) ?? NaN) : NaN
}
const bareUs = small('bare', (x) => x.saturated.serverCpuUsPerMsg)
for (const [config, name] of [
  ['bare', '6 small rooms, bare Bun.serve (reference)'],
  ['memory', '6 small rooms, 1 node memory (engine floor)'],
  ['redis', '6 small rooms, 2 nodes + Redis'],
  ['cluster', '6 small rooms, 2 nodes + Redis Cluster'],
] as const) {
  const through = config !== 'memory' && config !== 'bare'
  ratios.push([`${name}: acked msg/s (saturated)`, small(config, (x) => x.saturated.msgsPerS)])
  ratios.push([
    `${name}: server CPU µs per acked message${through ? ` (target ≤ ${SMALL_TARGETS.serverCpuUsPerMsg})` : ''}`,
    small(config, (x) => x.saturated.serverCpuUsPerMsg),
  ])
  if (config !== 'bare')
    ratios.push([`${name}: × bare CPU per acked message`, (r) => small(config, (x) => x.saturated.serverCpuUsPerMsg)(r) / bareUs(r)])
  if (through) ratios.push([`${name}: Redis CPU µs per message`, small(config, (x) => x.saturated.redisCpuUsPerMsg)])
  ratios.push([
    `${name}: paced ack p99 ms${through ? ` (target ≤ ${SMALL_TARGETS.pacedP99Ms})` : ''}`,
    small(config, (x) => x.paced.ack?.p99),
  ])
  ratios.push([`${name}: generator CPU % (saturated)`, small(config, (x) => x.saturated.generatorCpuPct)])
}

const loads = (g: Results[]) => g.map((r) => r.machine.loadavg.split(' ')[0]).join(', ')
console.log(
  `before: ${groups.before.length} runs (load average at start ${loads(groups.before)}); after: ${groups.after.length} runs (${loads(groups.after)}); medians`,
)
console.log('')
console.log('| figure | before | after |')
console.log('|---|---:|---:|')
for (const [label, path, f, d] of rows)
  console.log(
    `| ${label} | ${fmt(median(groups.before.map((r) => stat(r, path, f))), d)} | ${fmt(median(groups.after.map((r) => stat(r, path, f))), d)} |`,
  )
for (const [label, f] of ratios) console.log(`| ${label} | ${fmt(median(groups.before.map(f)))} | ${fmt(median(groups.after.map(f)))} |`)

// Scenario 4: RSS per idle socket, by count and server.
const idleRows = (g: Results[]) => {
  const out = new Map<string, number[]>()
  for (const r of g)
    for (const row of (r.scenarios.idle ?? []) as { kind?: string; count?: number; open?: number; perConnKiB?: number }[]) {
      if (row.perConnKiB === undefined) continue
      const k = `4 idle, ${row.kind}, ${row.count} sockets asked (at most the open-file limit allows): RSS KiB per socket`
      out.set(k, [...(out.get(k) ?? []), row.perConnKiB])
    }
  return out
}
const ib = idleRows(groups.before)
const ia = idleRows(groups.after)
for (const k of new Set([...ib.keys(), ...ia.keys()]))
  console.log(
    `| ${k} | ${fmt(median(ib.get(k) ?? []))} (${(ib.get(k) ?? []).join(', ')}) | ${fmt(median(ia.get(k) ?? []))} (${(ia.get(k) ?? []).join(', ')}) |`,
  )
