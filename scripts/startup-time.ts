// Measures the time from spawn to the `listening` log line, over repeated starts.
//   bun run scripts/startup-time.ts [command ...]     (default: dist/chat-server; build it first)
//   RUNS=50 bun run scripts/startup-time.ts bun src/main.ts
import { existsSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

// Each run starts in an empty directory (no .env), so relative paths are made absolute first.
const command = (process.argv.length > 2 ? process.argv.slice(2) : [join(import.meta.dir, '..', 'dist', 'chat-server')]).map((a) =>
  existsSync(a) ? resolve(a) : a,
)
const runs = Number(process.env.RUNS ?? 30)
const cwd = mkdtempSync(join(tmpdir(), 'chat-server-startup-'))

async function once(): Promise<number> {
  const t0 = performance.now()
  const proc = Bun.spawn(command, {
    cwd,
    env: { PATH: process.env.PATH ?? '', PORT: '0', HOST: '127.0.0.1' },
    stdout: 'pipe',
    stderr: 'inherit',
  })
  const decoder = new TextDecoder()
  let buf = ''
  let ms = NaN
  for await (const chunk of proc.stdout) {
    buf += decoder.decode(chunk, { stream: true })
    if (buf.includes('"msg":"listening"')) {
      ms = performance.now() - t0
      break
    }
  }
  proc.kill('SIGTERM')
  await proc.exited
  if (Number.isNaN(ms)) throw new Error(`no listening line; exit ${proc.exitCode}`)
  return ms
}

await once() // warm the page cache
const times: number[] = []
for (let i = 0; i < runs; i++) times.push(await once())
times.sort((a, b) => a - b)
const at = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))]!.toFixed(1)
const mean = times.reduce((a, b) => a + b, 0) / times.length
console.log(
  `${command.join(' ')}: spawn -> "listening" over ${runs} runs: min ${at(0)} ms, median ${at(0.5)} ms, mean ${mean.toFixed(1)} ms, p90 ${at(0.9)} ms, max ${at(1)} ms`,
)
