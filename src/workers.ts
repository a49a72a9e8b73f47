import type { Subprocess } from 'bun'
import { log } from './log'

/** The flag a worker is started with; its value is the worker's number (1..n). */
export const WORKER_FLAG = '--worker='

/** This process's worker number, when the supervisor started it. */
export function workerNumber(argv = process.argv): number | undefined {
  const arg = argv.find((a) => a.startsWith(WORKER_FLAG))
  return arg ? Number(arg.slice(WORKER_FLAG.length)) : undefined
}

/**
 * The command that starts this program again: `bun src/main.ts …` from source; the binary
 * itself when compiled (there `argv[1]` is the embedded entry, `/$bunfs/root/…`, not a file).
 */
export function selfCommand(argv = process.argv): string[] {
  const compiled = Bun.main.startsWith('/$bunfs/') || Bun.main.includes('~BUN')
  return compiled ? [process.execPath, ...argv.slice(2)] : [process.execPath, argv[1]!, ...argv.slice(2)]
}

const RESTART_MIN_MS = 100
const RESTART_MAX_MS = 10_000
/** A worker that ran this long before dying starts again at once (its failures were not in a row). */
const STABLE_MS = 30_000

/**
 * Runs `count` server processes that share the port (reusePort: the kernel spreads new
 * connections over them); each is a node of the cluster through Redis. A worker that dies is
 * started again, with a backoff while it keeps dying. SIGTERM or SIGINT to this process drains
 * every worker (each gets SIGTERM and closes its sockets with 1001); it exits when they have.
 */
export async function supervise(count: number, graceMs: number): Promise<never> {
  const command = selfCommand()
  const workers = new Map<number, Subprocess>()
  let stopping = false

  function start(n: number, failures: number) {
    const startedAt = Date.now()
    const proc = Bun.spawn([...command, `${WORKER_FLAG}${n}`], { env: process.env, stdin: 'ignore', stdout: 'inherit', stderr: 'inherit' })
    workers.set(n, proc)
    log.info('worker started', { worker: n, pid: proc.pid })
    void proc.exited.then((code) => {
      workers.delete(n)
      if (stopping) return
      const inARow = Date.now() - startedAt < STABLE_MS ? failures + 1 : 0
      const delay = inARow === 0 ? 0 : Math.min(RESTART_MIN_MS * 2 ** (inARow - 1), RESTART_MAX_MS)
      log.warn('worker exited; starting it again', { worker: n, code, signal: proc.signalCode, restartInMs: delay })
      setTimeout(() => {
        if (!stopping) start(n, inARow)
      }, delay)
    })
  }

  async function stop(signal: string) {
    if (stopping) return
    stopping = true
    log.info('draining workers', { signal, workers: workers.size })
    const all = [...workers.values()]
    for (const w of all) w.kill('SIGTERM')
    const killer = setTimeout(() => {
      log.warn('workers took too long to drain; killing them')
      for (const w of all) w.kill('SIGKILL')
    }, graceMs + 5_000)
    await Promise.all(all.map((w) => w.exited))
    clearTimeout(killer)
    log.info('stopped')
    process.exit(0)
  }

  process.on('SIGTERM', () => void stop('SIGTERM'))
  process.on('SIGINT', () => void stop('SIGINT'))
  // A renewed TLS certificate: each worker reads the files again (src/main.ts).
  process.on('SIGHUP', () => {
    for (const w of workers.values()) w.kill('SIGHUP')
  })
  for (let n = 1; n <= count; n++) start(n, 0)
  return new Promise<never>(() => {})
}

/** A worker whose supervisor is gone (killed outright) drains itself instead of holding the port. */
export function watchSupervisor(onGone: () => void) {
  const parent = process.ppid
  const timer = setInterval(() => {
    if (process.ppid !== parent) {
      clearInterval(timer)
      onGone()
    }
  }, 1000)
  timer.unref()
}
