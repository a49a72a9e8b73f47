import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Subprocess } from 'bun'

export const ROOT = join(import.meta.dir, '..', '..')
const BUN = process.execPath

export interface RunningServer {
  port: number
  url: string
  ws: string
  proc: Subprocess<'ignore', 'pipe', 'pipe'>
  /** Every stdout line so far, parsed when it is JSON. */
  logs: Record<string, unknown>[]
  stderr: () => string
  /** Sends a signal and waits for the exit code. */
  stop: (signal?: NodeJS.Signals) => Promise<number>
  exited: Promise<number>
}

export interface StartOptions {
  env?: Record<string, string | undefined>
  /** Run this executable instead of `bun src/main.ts` (the compiled binary). */
  command?: string[]
  timeoutMs?: number
}

/**
 * Starts a real server process on a free port, in an empty working directory (so a
 * developer's .env never leaks in), and resolves once it logs `listening`.
 */
export async function startServer(opts: StartOptions = {}): Promise<RunningServer> {
  const cwd = mkdtempSync(join(tmpdir(), 'chat-server-test-'))
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '/tmp',
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
  }
  for (const [k, v] of Object.entries(opts.env ?? {})) if (v !== undefined) env[k] = v
  const proc = Bun.spawn(opts.command ?? [BUN, join(ROOT, 'src/main.ts')], { cwd, env, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' })
  const logs: Record<string, unknown>[] = []
  let err = ''
  let onLine: ((l: Record<string, unknown>) => void) | undefined
  ;(async () => {
    const decoder = new TextDecoder()
    let buf = ''
    for await (const chunk of proc.stdout) {
      buf += decoder.decode(chunk, { stream: true })
      let i: number
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 1)
        let parsed: Record<string, unknown>
        try {
          parsed = JSON.parse(line)
        } catch {
          parsed = { raw: line }
        }
        logs.push(parsed)
        onLine?.(parsed)
      }
    }
  })()
  ;(async () => {
    const decoder = new TextDecoder()
    for await (const chunk of proc.stderr) err += decoder.decode(chunk, { stream: true })
  })()
  const timeoutMs = opts.timeoutMs ?? 15_000
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`server did not start in ${timeoutMs} ms; stderr: ${err}; logs: ${JSON.stringify(logs)}`)),
      timeoutMs,
    )
    const check = (l: Record<string, unknown>) => {
      if (l.msg === 'listening') {
        clearTimeout(timer)
        resolve(l.port as number)
      }
    }
    logs.forEach(check)
    onLine = check
    proc.exited.then((code) => {
      clearTimeout(timer)
      reject(new Error(`server exited with ${code} before listening; stderr: ${err}`))
    })
  })
  onLine = undefined
  running.add(proc)
  let stopping = false
  proc.exited.then((code) => {
    running.delete(proc)
    // A server that dies on its own is a finding: show why next to the failing test.
    if (!stopping && code !== 0)
      console.error(`server on port ${port} exited by itself (${code}); stderr:\n${err}\nlast logs: ${JSON.stringify(logs.slice(-5))}`)
  })
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}/ws`,
    proc,
    logs,
    stderr: () => err,
    exited: proc.exited,
    async stop(signal = 'SIGTERM') {
      stopping = true
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal)
      return proc.exited
    },
  }
}

const running = new Set<Subprocess>()
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL')
})

/** Runs the server entry with env and returns its exit code and output (for startup errors). */
export async function runServerOnce(env: Record<string, string>, args: string[] = [], command?: string[]) {
  const cwd = mkdtempSync(join(tmpdir(), 'chat-server-test-'))
  const proc = Bun.spawn([...(command ?? [BUN, join(ROOT, 'src/main.ts')]), ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? '', PORT: '0', HOST: '127.0.0.1', ...env },
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000)
  const [code, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()])
  clearTimeout(timer)
  return { code, stdout, stderr }
}

/** Waits until `cond` holds, polling; throws with `what` after `ms`. */
export async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 5000) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await cond()) return
    await Bun.sleep(20)
  }
  throw new Error(`timed out waiting for ${what}`)
}
