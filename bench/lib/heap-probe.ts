/**
 * Preloaded into a server by bench/idle-memory.ts (`bun --preload`): on an IPC `heap` request
 * it runs a full GC and answers with VmRSS and JSC's heap statistics (objects by type).
 */
import { heapStats } from 'bun:jsc'
import { readFileSync } from 'node:fs'

process.on('message', (m: { cmd?: string }) => {
  if (m?.cmd !== 'heap') return
  Bun.gc(true)
  Bun.gc(true)
  const h = heapStats()
  const rss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]) * 1024
  process.send!({ ev: 'heap', rss, heapSize: h.heapSize, heapCapacity: h.heapCapacity, extraMemorySize: h.extraMemorySize, objectCount: h.objectCount, types: h.objectTypeCounts })
})
