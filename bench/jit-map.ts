/**
 * Names for the JIT's code in `perf report`: turns the JITDump a Bun process wrote
 * (`BUN_JSC_useJITDump=1 BUN_JSC_jitDumpDirectory=<dir>`) into `/tmp/perf-<pid>.map`, the file
 * perf reads for a process's anonymous code. `perf inject --jit` cannot do it: it only knows
 * dumps named `jit-<pid>.dump`, and JSC names them `jit-<tid>-<pid>.dump`.
 *
 *   BENCH_SERVER_WRAP='perf record -k 1 -F 999 -g -o /tmp/p.data --' npm run bench -- ... \
 *     --server-env=BUN_JSC_useJITDump=1,BUN_JSC_jitDumpDirectory=/tmp/jd
 *   bun run bench/jit-map.ts /tmp/jd/jit-*.dump
 *   perf report -i /tmp/p.data --no-children --sort sym
 *
 * A JS function's samples then show as `JSC-DFG: name#hash` (or FTL, Baseline); Bun's own code
 * stays unnamed (its binary has no symbols), but the call chains through it reach the JS that
 * called it.
 */
import { basename } from 'node:path'

const JIT_CODE_LOAD = 0

for (const file of process.argv.slice(2)) {
  const pid = /^jit-\d+-(\d+)\.dump$/.exec(basename(file))?.[1] ?? /^jit-(\d+)\.dump$/.exec(basename(file))?.[1]
  if (!pid) throw new Error(`${file}: expected a JITDump named jit-<tid>-<pid>.dump or jit-<pid>.dump`)
  const buf = Buffer.from(await Bun.file(file).arrayBuffer())
  if (buf.toString('latin1', 0, 4) !== 'DTiJ') throw new Error(`${file}: not a JITDump (no JiTD magic)`)
  const lines: string[] = []
  // Header: magic, version, total_size (u32 at 8), ...; then records: id u32, size u32,
  // timestamp u64, and for a code load: pid u32, tid u32, vma u64, code_addr u64, code_size u64,
  // code_index u64, the name (NUL-terminated), the code.
  for (let at = buf.readUInt32LE(8); at + 16 <= buf.length; ) {
    const id = buf.readUInt32LE(at)
    const size = buf.readUInt32LE(at + 4)
    if (size === 0 || at + size > buf.length) break
    if (id === JIT_CODE_LOAD) {
      const name = buf.toString('utf8', at + 56, buf.indexOf(0, at + 56))
      lines.push(`${buf.readBigUInt64LE(at + 32).toString(16)} ${buf.readBigUInt64LE(at + 40).toString(16)} ${name}`)
    }
    at += size
  }
  await Bun.write(`/tmp/perf-${pid}.map`, `${lines.join('\n')}\n`)
  console.log(`/tmp/perf-${pid}.map: ${lines.length} symbols`)
}
