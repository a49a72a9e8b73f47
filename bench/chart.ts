/**
 * Draws the latency percentiles of a bench run as an SVG bar chart (log scale, with the
 * 10 ms target) and refreshes the generated tables in docs/performance.md.
 *
 *   bun run bench/chart.ts [bench/results/latest.json] [docs/performance-latency.svg]
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { isSkipped, renderTables } from './lib/report'
import type { Results, RunStats } from './lib/report'
import type { LatencySummary } from './lib/histogram'

const ROOT = join(import.meta.dir, '..')
const input = process.argv[2] ?? join(ROOT, 'bench/results/latest.json')
const output = process.argv[3] ?? join(ROOT, 'docs/performance-latency.svg')
const r = JSON.parse(readFileSync(input, 'utf8')) as Results

interface Group {
  label: string
  bars: { name: string; color: string; l?: LatencySummary }[]
}
const groups: Group[] = []
const lat = (x: RunStats | unknown) => (x && !isSkipped(x) ? (x as RunStats).latency : undefined)
for (const p of r.scenarios.latency ?? [])
  groups.push({
    label: `latency: ${p.members.toLocaleString('en-US')} members, ${p.rate} msg/s`,
    bars: [
      { name: 'bare Bun publish', color: '#9aa5b1', l: lat(p.bare) },
      { name: 'chat-server', color: '#2f6fde', l: lat(p.chat) },
    ],
  })
const cross = r.scenarios.cross
if (cross && !isSkipped(cross))
  groups.push({
    label: `cross-node: ${cross.members.toLocaleString('en-US')} members, ${r.options.rate} msg/s`,
    bars: [{ name: 'chat-server', color: '#2f6fde', l: cross.paced.latency }],
  })
const persist = r.scenarios.persist
if (persist && !isSkipped(persist))
  groups.push({ label: 'persistence: ack, commit before ack', bars: [{ name: 'chat-server', color: '#2f6fde', l: persist.ack }] })

const keys = ['p50', 'p95', 'p99', 'max'] as const
const shade = { p50: 1, p95: 0.8, p99: 0.6, max: 0.35 }
// Bars a fixed width, the chart as wide as its groups need, so that no label overlaps another.
const BW = 26
const groupWidth = (g: Group) => Math.max(9 * BW, BW * (g.bars.length * keys.length + g.bars.length - 1) + 3 * BW)
const H = 440
const left = 70
const right = 20
const top = 60
const bottom = 100
const W = Math.max(880, left + right + groups.reduce((s, g) => s + groupWidth(g), 0))
const values = groups.flatMap((g) => g.bars.flatMap((b) => (b.l ? keys.map((k) => b.l![k]) : []))).filter((v) => v > 0)
const lo = 10 ** Math.floor(Math.log10(Math.min(0.1, ...values)))
const hi = 10 ** Math.ceil(Math.log10(Math.max(10, ...values)))
const y = (v: number) => top + (H - top - bottom) * (1 - (Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)))
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;')

const svg: string[] = []
svg.push(
  `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, sans-serif" font-size="12">`,
)
svg.push(`<rect width="${W}" height="${H}" fill="white"/>`)
svg.push(`<text x="${left}" y="22" font-size="15" font-weight="bold">Publish-to-receive latency (ms, log scale)</text>`)
svg.push(
  `<text x="${left}" y="40" fill="#555">${esc(`${r.date.slice(0, 16)} · ${r.machine.nproc} cores · bun ${r.machine.bun} · load avg ${r.machine.loadavg}${r.quick ? ' · --quick' : ''}`)}</text>`,
)
for (let d = lo; d <= hi; d *= 10) {
  svg.push(`<line x1="${left}" x2="${W - right}" y1="${y(d)}" y2="${y(d)}" stroke="#e3e3e3"/>`)
  svg.push(`<text x="${left - 8}" y="${y(d) + 4}" text-anchor="end" fill="#555">${d >= 1 ? d : d.toFixed(-Math.log10(d))}</text>`)
}
svg.push(`<line x1="${left}" x2="${W - right}" y1="${y(10)}" y2="${y(10)}" stroke="#d33" stroke-dasharray="6 4"/>`)

const plotW = W - left - right
const scale = groups.length ? plotW / groups.reduce((s, g) => s + groupWidth(g), 0) : 1
let gx = left
groups.forEach((g) => {
  const gw = groupWidth(g) * scale
  const bw = BW
  const span = bw * (g.bars.length * keys.length) + bw * (g.bars.length - 1)
  let x = gx + (gw - span) / 2
  for (const b of g.bars) {
    for (const k of keys) {
      const v = b.l?.[k]
      if (v !== undefined && v > 0) {
        svg.push(
          `<rect x="${x.toFixed(1)}" y="${y(v).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${(H - bottom - y(v)).toFixed(1)}" fill="${b.color}" fill-opacity="${shade[k]}"><title>${esc(`${g.label}, ${b.name}, ${k}: ${v} ms`)}</title></rect>`,
        )
        svg.push(
          `<text x="${(x + bw / 2 - 1).toFixed(1)}" y="${(y(v) - 3).toFixed(1)}" text-anchor="middle" font-size="9" fill="#333">${v < 10 ? v.toFixed(1) : Math.round(v)}</text>`,
        )
      }
      svg.push(`<text x="${(x + bw / 2 - 1).toFixed(1)}" y="${H - bottom + 13}" text-anchor="middle" font-size="9" fill="#555">${k}</text>`)
      x += bw
    }
    svg.push(
      `<text x="${(x - (bw * keys.length) / 2 - bw / 2).toFixed(1)}" y="${H - bottom + 27}" text-anchor="middle" font-size="10">${esc(b.name)}${b.l ? '' : ' (none)'}</text>`,
    )
    x += bw
  }
  // The group's label on up to two lines (split at the first comma), centred under it.
  const cut = g.label.indexOf(', ')
  const lines = cut > 0 ? [g.label.slice(0, cut), g.label.slice(cut + 2)] : [g.label]
  lines.forEach((l, i) =>
    svg.push(
      `<text x="${(gx + gw / 2).toFixed(1)}" y="${H - bottom + 47 + i * 15}" text-anchor="middle" font-weight="bold">${esc(l)}</text>`,
    ),
  )
  if (gx > left) svg.push(`<line x1="${gx.toFixed(1)}" x2="${gx.toFixed(1)}" y1="${top}" y2="${H - bottom + 60}" stroke="#eee"/>`)
  gx += gw
})

if (!groups.length) svg.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle">no latency figures in ${esc(input)}</text>`)
svg.push(
  `<text x="${left}" y="${H - 12}" fill="#555" font-size="11">Bars: p50, p95, p99, max (lighter = higher percentile). Red dashed line: the p99 &lt; 10 ms target. Generator and servers share the same 2 cores.</text>`,
)
svg.push('</svg>')
mkdirSync(dirname(output), { recursive: true })
writeFileSync(output, `${svg.join('\n')}\n`)
console.log(`wrote ${output}`)

// Refresh the generated part of docs/performance.md, between its markers.
const doc = join(ROOT, 'docs/performance.md')
if (existsSync(doc) && input === join(ROOT, 'bench/results/latest.json')) {
  const text = readFileSync(doc, 'utf8')
  const begin = '<!-- bench:begin -->'
  const end = '<!-- bench:end -->'
  const a = text.indexOf(begin)
  const b = text.indexOf(end)
  if (a >= 0 && b > a) {
    writeFileSync(doc, `${text.slice(0, a + begin.length)}\n${renderTables(r)}\n${text.slice(b)}`)
    console.log(`refreshed the tables in ${doc}`)
  }
}
