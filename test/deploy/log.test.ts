/**
 * The structured log (src/log.ts) writes a turn's lines together: none may be lost or reordered
 * on the way, whether the process goes on, exits by itself, or calls process.exit().
 */
import { describe, expect, test } from 'bun:test'
import { join } from 'node:path'

const LOG = join(import.meta.dir, '../../src/log.ts')

/** Runs `body` in a Bun process with `log` imported; resolves with its stdout's JSON lines. */
async function run(body: string, until?: (lines: Record<string, unknown>[]) => boolean) {
  const proc = Bun.spawn([process.execPath, '-e', `import { log } from ${JSON.stringify(LOG)}\n${body}`], {
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const dec = new TextDecoder()
  let text = ''
  const parse = () =>
    text
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
  for await (const chunk of proc.stdout as unknown as AsyncIterable<Uint8Array>) {
    text += dec.decode(chunk, { stream: true })
    if (until && text.endsWith('\n') && until(parse())) break
  }
  proc.kill()
  await proc.exited
  return { lines: parse(), code: proc.exitCode, stderr: await new Response(proc.stderr).text() }
}

describe('log lines', () => {
  test('every line logged before process.exit() is written, in order', async () => {
    const r = await run(`for (let i = 0; i < 500; i++) log.info('line', { i })\nlog.error('last words')\nprocess.exit(3)`)
    expect(r.code).toBe(3)
    expect(r.lines.length).toBe(501)
    expect(r.lines.slice(0, 500).map((l) => l.i)).toEqual(Array.from({ length: 500 }, (_, i) => i))
    expect(r.lines[500]).toMatchObject({ level: 'error', msg: 'last words' })
  })

  test('a line logged by a process that goes on is written within its turn, without waiting for more', async () => {
    // The process stays alive (a 30 s timer): the line must come out on its own.
    const r = await run(`log.warn('alone', { n: 1 })\nsetTimeout(() => {}, 30_000)`, (lines) => lines.length >= 1)
    expect(r.lines).toHaveLength(1)
    expect(r.lines[0]).toMatchObject({ level: 'warn', msg: 'alone', n: 1 })
  })

  test('more than one batch of lines (past 64 KiB) comes out whole and in order', async () => {
    const r = await run(`for (let i = 0; i < 3000; i++) log.info('x'.repeat(100), { i })`)
    expect(r.code).toBe(0)
    expect(r.lines.map((l) => l.i)).toEqual(Array.from({ length: 3000 }, (_, i) => i))
  })
})
