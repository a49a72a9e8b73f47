// Imports only go down (issue 23): every module of src/ sits on a floor, and may import from
// its own floor or the floors below it, never from above. A new folder needs a floor here.
import { describe, expect, test } from 'bun:test'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'

const SRC = join(import.meta.dir, '..', '..', 'src')

/** Lowest first. A folder is named `name/`, a top-level module by its file name. */
const FLOORS: string[][] = [
  ['core/'],
  ['log.ts'],
  ['protocol/'],
  ['config.ts', 'metrics.ts'],
  ['store/', 'cluster/'],
  ['broker/'],
  ['members/', 'uploads/'],
  ['webhooks/', 'auth/'],
  ['push/'],
  ['hub/'],
  ['outbox/'],
  ['http/'],
  ['pusher/', 'sse/'],
  ['app.ts', 'tls.ts', 'healthcheck.ts'],
  ['main.ts', 'workers.ts'],
]

const unitOf = (file: string) => {
  const r = relative(SRC, file)
  return r.includes('/') ? `${r.split('/')[0]}/` : r
}
const floorOf = (unit: string) => FLOORS.findIndex((f) => f.includes(unit))

function sources(dir: string, ext = '.ts'): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name)
    return statSync(p).isDirectory() ? sources(p, ext) : p.endsWith(ext) && !p.endsWith('.d.ts') ? [p] : []
  })
}

/** Every relative import and re-export of src/ that leaves its own folder: [from unit, to unit, where]. */
function crossings(): [string, string, string][] {
  const out: [string, string, string][] = []
  for (const file of sources(SRC)) {
    const text = readFileSync(file, 'utf8')
    for (const m of text.matchAll(/^\s*(?:import|export)\b[^'"]*?\bfrom\s+['"](\.{1,2}\/[^'"]+)['"]/gm)) {
      const target = resolve(dirname(file), m[1]!)
      if (!target.startsWith(SRC)) continue
      const withExt = statSync(target, { throwIfNoEntry: false })?.isDirectory()
        ? join(target, 'index.ts')
        : target.replace(/(\.ts)?$/, '.ts')
      const [a, b] = [unitOf(file), unitOf(withExt)]
      if (a !== b) out.push([a, b, `${relative(SRC, file)} imports ${m[1]}`])
    }
  }
  return out
}

describe('architecture', () => {
  const edges = crossings()

  test('every folder and top-level module of src/ has a floor', () => {
    const units = new Set(sources(SRC).map(unitOf))
    expect([...units].filter((u) => floorOf(u) < 0)).toEqual([])
  })

  test('imports only go down: no module imports from a floor above its own', () => {
    const upward = edges.filter(([a, b]) => floorOf(b) > floorOf(a)).map(([, , where]) => where)
    expect(upward).toEqual([])
  })

  test('no two folders import each other (no cycle between folders)', () => {
    const pairs = new Set(edges.map(([a, b]) => `${a} -> ${b}`))
    const cycles = [...pairs].filter((p) => {
      const [a, b] = p.split(' -> ')
      return a! < b! && pairs.has(`${b} -> ${a}`)
    })
    expect(cycles).toEqual([])
  })

  test('every Lua script is a .lua file whose opening comment says its KEYS (and ARGV when it takes any)', () => {
    const scripts = sources(SRC, '.lua')
    expect(scripts.length).toBeGreaterThan(10)
    const missing = scripts.filter((f) => {
      const text = readFileSync(f, 'utf8')
      const head = text
        .split('\n')
        .filter((l) => l.startsWith('--'))
        .join('\n')
      return !head.includes('KEYS') || (text.includes('ARGV[') && !head.includes('ARGV'))
    })
    expect(missing.map((f) => relative(SRC, f))).toEqual([])
    const inline = sources(SRC).filter((f) => /redis\.call\(/.test(readFileSync(f, 'utf8')))
    expect(inline.map((f) => relative(SRC, f))).toEqual([])
  })

  test('docs/architecture.md shows these floors, numbered and filled as here (the page cannot drift from the rule)', () => {
    const page = readFileSync(join(import.meta.dir, '..', '..', 'docs', 'architecture.md'), 'utf8')
    const documented: string[][] = []
    for (const m of page.matchAll(/^\| (\d+) \| ([^|]+) \|/gm))
      documented[Number(m[1])] = [...m[2]!.matchAll(/`([^`]+)`/g)].map((u) => u[1]!)
    expect(documented).toEqual(FLOORS)
  })

  test('the check sees imports at all (it would pass on nothing otherwise)', () => {
    expect(edges.length).toBeGreaterThan(50)
    expect(edges.some(([a, b]) => a === 'hub/' && b === 'broker/')).toBe(true)
  })
})
