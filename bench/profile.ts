/**
 * Summarises a .cpuprofile written by `bun --cpu-prof` (the bench's `--profile` flag puts
 * chat-server's under bench/results/profiles/): self time by function and by package, and
 * inclusive time of the hub's entry points, as percentages of the non-idle samples.
 *
 *   bun run bench/profile.ts [file.cpuprofile]     (default: the newest profile)
 *   bun run bench/profile.ts --before-end=20,15    only the samples from 20 s to 15 s before the
 *                                                  profile's end (scenario `small` prints the window
 *                                                  of its saturated phase: the connects are left out)
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'

interface Node {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}
interface Profile {
  nodes: Node[]
  samples: number[]
  timeDeltas: number[]
  startTime: number
  endTime: number
}

const ROOT = join(import.meta.dir, '..')
const dir = join(ROOT, 'bench/results/profiles')
const args = process.argv.slice(2)
const beforeEnd = args
  .find((a) => a.startsWith('--before-end='))
  ?.slice('--before-end='.length)
  .split(',')
  .map(Number)
if (beforeEnd && (beforeEnd.length !== 2 || beforeEnd.some((x) => !Number.isFinite(x)) || beforeEnd[0]! <= beforeEnd[1]!))
  throw new Error('--before-end: expected from,to in seconds before the end, from > to (e.g. 20,15)')
const file =
  args.find((a) => !a.startsWith('--')) ??
  readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(dir, f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0]
if (!file) throw new Error('no .cpuprofile given or found in bench/results/profiles')
const p = JSON.parse(readFileSync(file, 'utf8')) as Profile

const byId = new Map(p.nodes.map((n) => [n.id, n]))
const parent = new Map<number, number>()
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)

// Self time per node: each sample's delta goes to the node sampled (within --before-end's window).
const self = new Map<number, number>()
const [from, to] = beforeEnd ? [p.endTime - beforeEnd[0]! * 1e6, p.endTime - beforeEnd[1]! * 1e6] : [-Infinity, Infinity]
let at = p.startTime
for (let i = 0; i < p.samples.length; i++) {
  at += p.timeDeltas[i] ?? 0
  if (at < from || at > to) continue
  self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0))
}

const IDLE = new Set(['(idle)', '(program)', '(root)'])
const isIdle = (n: Node) => n.callFrame.functionName === '(idle)'
let total = 0
for (const [id, t] of self) if (!isIdle(byId.get(id)!)) total += t

const where = (url: string) => {
  if (!url) return 'native / runtime'
  const m = /node_modules\/([^/]+(?:\/[^/]+)?)/.exec(url)
  if (m) return m[1]!.startsWith('@') ? m[1]! : m[1]!.split('/')[0]!
  if (url.includes('/src/')) return relative(ROOT, url)
  return url.startsWith('/') ? relative(ROOT, url) : url
}
const label = (n: Node) =>
  `${n.callFrame.functionName || '(anonymous)'} ${where(n.callFrame.url)}${n.callFrame.url ? `:${n.callFrame.lineNumber + 1}` : ''}`

const fnSelf = new Map<string, number>()
const pkgSelf = new Map<string, number>()
for (const [id, t] of self) {
  const n = byId.get(id)!
  if (isIdle(n)) continue
  fnSelf.set(label(n), (fnSelf.get(label(n)) ?? 0) + t)
  const k =
    IDLE.has(n.callFrame.functionName) || n.callFrame.functionName.startsWith('(') ? n.callFrame.functionName : where(n.callFrame.url)
  pkgSelf.set(k, (pkgSelf.get(k) ?? 0) + t)
}

// Inclusive time per function label (a label counted once per sample stack).
const incl = new Map<string, number>()
for (const [id, t] of self) {
  if (isIdle(byId.get(id)!)) continue
  const seen = new Set<string>()
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const l = label(byId.get(cur)!)
    if (seen.has(l)) continue
    seen.add(l)
    incl.set(l, (incl.get(l) ?? 0) + t)
  }
}

const pct = (t: number) => `${((100 * t) / total).toFixed(1).padStart(5)} %`
const top = (m: Map<string, number>, k: number) => [...m].sort((a, b) => b[1] - a[1]).slice(0, k)
const wall = beforeEnd ? beforeEnd[0]! - beforeEnd[1]! : (p.endTime - p.startTime) / 1e6
console.log(
  `${relative(ROOT, file)}: ${wall.toFixed(1)} s profiled, ${(total / 1e6).toFixed(2)} s on CPU in the JS thread (${((100 * total) / 1e6 / wall).toFixed(0)} % busy)\n`,
)
console.log('self time by package / file:')
for (const [k, t] of top(pkgSelf, 15)) console.log(`  ${pct(t)}  ${k}`)
console.log('\nself time by function (top 25):')
for (const [k, t] of top(fnSelf, 25)) console.log(`  ${pct(t)}  ${k}`)
console.log('\ninclusive time, project and library functions (top 30):')
for (const [k, t] of top(new Map([...incl].filter(([k]) => !k.startsWith('('))), 30)) console.log(`  ${pct(t)}  ${k}`)
