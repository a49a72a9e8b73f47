/** Child processes of the bench: servers and generator workers, and what /proc says of them. */
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Subprocess } from 'bun'
import type { Command, Event } from '../worker'

export const ROOT = join(import.meta.dir, '..', '..')
export const BUN = process.execPath
/** Whose chat-server is measured: this checkout, or another (`--chat-root=`, e.g. an export of main for a before/after pair). */
export const CHAT_ROOT = process.argv.find((a) => a.startsWith('--chat-root='))?.slice('--chat-root='.length) ?? ROOT
const CLK_TCK = 100 // Linux USER_HZ, the unit of utime/stime in /proc/<pid>/stat

const children = new Set<Subprocess>()
const killAll = () => {
  for (const p of children) if (p.exitCode === null) p.kill('SIGKILL')
}
process.on('exit', killAll)
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.on(sig, () => {
    killAll()
    process.exit(130)
  })

/** CPU seconds (user + system) a process has used so far; NaN once it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / CLK_TCK // fields 14 and 15 of the full line
  } catch {
    return NaN
  }
}

/** Resident set size in bytes (VmRSS). */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) * 1024 : NaN
}

/** The soft open-file limit of a process. */
export function fdLimit(pid: number | 'self'): number {
  const line = readFileSync(`/proc/${pid}/limits`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'))
  return Number(line?.trim().split(/\s+/)[3])
}

export function openFds(pid: number): number {
  try {
    return require('node:fs').readdirSync(`/proc/${pid}/fd`).length
  } catch {
    return NaN
  }
}

/**
 * bare: republishes what it reads; floor: the least a server of this protocol does (servers/floor.ts);
 * bare-rooms: joins, chat and ack for the many-rooms generator, Bun's own cost (servers/bare-rooms.ts);
 * bare-connect: subscribe + welcome per socket (servers/bare-connect.ts, scenario connections); chat: chat-server.
 */
export type ServerKind = 'bare' | 'floor' | 'bare-rooms' | 'bare-connect' | 'chat'

export interface Server {
  kind: ServerKind
  pid: number
  port: number
  proc: Subprocess
  stop(): Promise<void>
}

export type StartResult = { ok: true; server: Server } | { ok: false; code: number | null; stderr: string }

/**
 * Starts the bare reference or chat-server as a child process on a free port and resolves
 * once it logs `listening`, or with its exit code and stderr when it exits first. With
 * BENCH_SERVER_LOG=<prefix> in the bench's env, each server's log lines are also written to
 * `<prefix>-<kind>-<pid>.log` (what a node warned about during a run) and its stderr to `.err`.
 */
export async function startServer(
  kind: ServerKind,
  env: Record<string, string>,
  opts: { cpuProfDir?: string; timeoutMs?: number } = {},
): Promise<StartResult> {
  const cwd = mkdtempSync(join(tmpdir(), 'chat-bench-'))
  const entry = kind === 'chat' ? join(CHAT_ROOT, 'src/main.ts') : join(ROOT, `bench/servers/${kind}.ts`)
  const prof = opts.cpuProfDir
    ? ['--cpu-prof', `--cpu-prof-dir=${opts.cpuProfDir}`, `--cpu-prof-name=${kind}-${Date.now()}.cpuprofile`]
    : []
  // BENCH_SERVER_WRAP='perf record -k 1 -g -o /tmp/x.data --': chat-server under another
  // command, from its first instruction (a profiler attached later misses the JIT's symbols).
  // Its RSS figures are then the wrapper's.
  const wrap = kind === 'chat' ? (process.env.BENCH_SERVER_WRAP?.split(' ').filter(Boolean) ?? []) : []
  const proc = Bun.spawn([...wrap, BUN, ...prof, entry], {
    cwd,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', PORT: '0', HOST: '127.0.0.1', ...env },
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  })
  children.add(proc)
  let stderr = ''
  const lines: { onLine?: (l: string) => void } = {}
  // Always drain stdout (a full pipe would stall the server); only the first lines matter.
  ;(async () => {
    const d = new TextDecoder()
    let buf = ''
    const tee = process.env.BENCH_SERVER_LOG ? Bun.file(`${process.env.BENCH_SERVER_LOG}-${kind}-${proc.pid}.log`).writer() : undefined
    for await (const chunk of proc.stdout as unknown as AsyncIterable<Uint8Array>) {
      tee?.write(chunk)
      if (!lines.onLine) continue
      buf += d.decode(chunk, { stream: true })
      let i: number
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 1)
        const f = lines.onLine as ((l: string) => void) | undefined
        if (!f) break
        f(line)
      }
    }
    await tee?.end() // the last lines, once the server has exited
  })()
  ;(async () => {
    const d = new TextDecoder()
    const tee = process.env.BENCH_SERVER_LOG ? Bun.file(`${process.env.BENCH_SERVER_LOG}-${kind}-${proc.pid}.err`).writer() : undefined
    for await (const chunk of proc.stderr as unknown as AsyncIterable<Uint8Array>) {
      tee?.write(chunk)
      if (stderr.length < 20_000) stderr += d.decode(chunk, { stream: true })
    }
    await tee?.end()
  })()
  const timeoutMs = opts.timeoutMs ?? 20_000
  const port = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => resolve(null), timeoutMs)
    lines.onLine = (line) => {
      try {
        const l = JSON.parse(line)
        if (l.msg === 'listening') {
          clearTimeout(timer)
          lines.onLine = undefined
          resolve(l.port)
        }
      } catch {}
    }
    proc.exited.then(() => {
      clearTimeout(timer)
      resolve(null)
    })
  })
  if (port === null) {
    if (proc.exitCode === null) proc.kill('SIGKILL')
    const code = await proc.exited
    await Bun.sleep(20)
    children.delete(proc)
    return { ok: false, code, stderr: stderr.trim() }
  }
  return {
    ok: true,
    server: {
      kind,
      pid: proc.pid,
      port,
      proc,
      async stop() {
        if (proc.exitCode === null) proc.kill('SIGTERM')
        const t = setTimeout(() => proc.kill('SIGKILL'), 15_000)
        await proc.exited
        clearTimeout(t)
        children.delete(proc)
      },
    },
  }
}

/**
 * A generator worker process with a request/response helper over IPC: bench/worker.ts by
 * default, or another script of the same pattern (`script`, from the repository's root; its
 * commands `C` and events `E`, an `exit` command among them).
 */
export class Worker<C extends { cmd: string } = Command, E extends { ev: string } = Event> {
  readonly proc: Subprocess
  private waiters: { ev: E['ev']; resolve: (e: E) => void }[] = []
  onProgress?: (min: number) => void

  constructor(
    readonly name: string,
    script = 'bench/worker.ts',
  ) {
    this.proc = Bun.spawn([BUN, join(ROOT, script)], {
      cwd: ROOT,
      stdin: 'ignore',
      stdout: 'inherit',
      stderr: 'inherit',
      ipc: (m: E) => {
        if (m.ev === 'progress') return this.onProgress?.((m as unknown as { min: number }).min)
        const i = this.waiters.findIndex((w) => w.ev === m.ev)
        if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(m)
      },
      serialization: 'json',
    })
    children.add(this.proc)
  }

  get pid() {
    return this.proc.pid
  }

  send(c: C) {
    this.proc.send(c)
  }

  /** Sends `c` and waits for the worker's next `ev` event. */
  request<K extends E['ev']>(c: C, ev: K, timeoutMs = 120_000): Promise<Extract<E, { ev: K }>> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${this.name}: no ${ev} within ${timeoutMs} ms`)), timeoutMs)
      this.waiters.push({ ev, resolve: (e) => (clearTimeout(t), resolve(e as Extract<E, { ev: K }>)) })
      this.proc.exited.then((code) => reject(new Error(`${this.name} exited with ${code}`)))
      this.send(c)
    })
  }

  async exit() {
    if (this.proc.exitCode !== null) return
    try {
      this.send({ cmd: 'exit' } as C)
    } catch {}
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 3000)
    await this.proc.exited
    clearTimeout(t)
    children.delete(this.proc)
  }
}

/** CPU seconds of several processes, summed. */
export const cpuOf = (pids: number[]) => pids.reduce((s, p) => s + (cpuSeconds(p) || 0), 0)

/**
 * Pins a process (and its threads) to one CPU with taskset, when there is one: with the server
 * on one core and the generator on the other, a run does not depend on where the scheduler
 * happened to put them. Returns whether it was pinned.
 */
export function pin(pid: number, cpu: number): boolean {
  try {
    return Bun.spawnSync(['taskset', '-a', '-cp', String(cpu), String(pid)], { stdout: 'ignore', stderr: 'ignore' }).exitCode === 0
  } catch {
    return false
  }
}
