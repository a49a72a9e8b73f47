/**
 * Preloaded into a server by bench/idle-memory.ts (`bun --preload`): on an IPC `heap` request
 * it runs a full GC and answers with VmRSS and JSC's heap statistics (objects by type).
 */
import { heapStats } from 'bun:jsc'
import { readFileSync, writeFileSync } from 'node:fs'

/** Heap nodes by type and name (strings by their text, digits and hex runs masked), from a V8-format snapshot. */
let dumps = 0
function census(): Record<string, number> {
  const text = (Bun as unknown as { generateHeapSnapshot(f: 'v8'): string }).generateHeapSnapshot('v8')
  if (process.env.HEAP_DUMP) writeFileSync(`${process.env.HEAP_DUMP}-${dumps++}.heapsnapshot`, text)
  const snap = JSON.parse(text)
  const fields: string[] = snap.snapshot.meta.node_fields
  const types: string[] = snap.snapshot.meta.node_types[0]
  const w = fields.length
  const ti = fields.indexOf('type')
  const ni = fields.indexOf('name')
  const si = fields.indexOf('self_size')
  const out: Record<string, number> = {}
  for (let i = 0; i < snap.nodes.length; i += w) {
    const type = types[snap.nodes[i + ti]]
    let name: string = snap.strings[snap.nodes[i + ni]] ?? ''
    if (type === 'string' || type === 'concatenated string' || type === 'sliced string')
      name = JSON.stringify(name.slice(0, 48))
        .replace(/[0-9a-f]{6,}/g, '<hex>')
        .replace(/\d+/g, '#')
    const k = `${type} ${name}`
    out[k] = (out[k] ?? 0) + 1
    out[`bytes ${k}`] = (out[`bytes ${k}`] ?? 0) + (snap.nodes[i + si] ?? 0)
  }
  // Butterflies (a JS object's out-of-line properties and elements) by the object that owns them.
  const ef: string[] = snap.snapshot.meta.edge_fields
  const ew = ef.length
  const eto = ef.indexOf('to_node')
  const ci = fields.indexOf('edge_count')
  let e = 0
  for (let i = 0; i < snap.nodes.length; i += w) {
    const owner = `${types[snap.nodes[i + ti]]} ${snap.strings[snap.nodes[i + ni]] ?? ''}`
    for (let k = 0; k < snap.nodes[i + ci]; k++, e += ew) {
      const to = snap.edges[e + eto]
      if (snap.strings[snap.nodes[to + ni]] !== 'Cell Butterfly') continue
      const key = `bytes butterfly of ${owner}`
      out[key] = (out[key] ?? 0) + (snap.nodes[to + si] ?? 0)
    }
  }
  return out
}

process.on('message', (m: { cmd?: string }) => {
  if (m?.cmd === 'census') {
    Bun.gc(true)
    return process.send!({ ev: 'census', census: census() })
  }
  if (m?.cmd !== 'heap') return
  Bun.gc(true)
  Bun.gc(true)
  const h = heapStats()
  const rss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]) * 1024
  process.send!({
    ev: 'heap',
    rss,
    heapSize: h.heapSize,
    heapCapacity: h.heapCapacity,
    extraMemorySize: h.extraMemorySize,
    objectCount: h.objectCount,
    types: h.objectTypeCounts,
  })
})
