import { afterAll, expect, test } from 'bun:test'
import { readFileSync, readdirSync } from 'node:fs'
import { ROOT, until } from '../helpers/server'
import { freePort, listening } from '../helpers/services'

/**
 * `npm start` as a person or a process manager runs it: stopping npm (SIGTERM to its pid) must
 * stop the server, through its drain. npm runs a script through `sh -c`, and a shell that waits
 * for its command does not pass a signal on: the server outlived npm.
 */

/** Every descendant of `pid` now (from /proc: each task's children). */
function descendants(pid: number): number[] {
  const out: number[] = []
  const walk = (p: number, depth: number) => {
    if (depth > 8) return
    let tasks: string[] = []
    try {
      tasks = readdirSync(`/proc/${p}/task`)
    } catch {
      return
    }
    for (const t of tasks) {
      let kids = ''
      try {
        kids = readFileSync(`/proc/${p}/task/${t}/children`, 'utf8')
      } catch {}
      for (const k of kids.split(/\s+/).filter(Boolean).map(Number)) {
        out.push(k)
        walk(k, depth + 1)
      }
    }
  }
  walk(pid, 0)
  return out
}

/** Running (a zombie waiting to be reaped has stopped). */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return false
  }
}

const started: number[] = []
afterAll(() => {
  // Whatever this test started and is still there (the server a broken `npm start` leaves).
  for (const pid of started) if (running(pid)) process.kill(pid, 'SIGKILL')
})

test("SIGTERM to npm's pid stops the server `npm start` runs, after its drain", async () => {
  const port = freePort()
  const npm = Bun.spawn(['npm', 'start'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      npm_config_update_notifier: 'false',
    },
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  })
  started.push(npm.pid)
  let out = ''
  ;(async () => {
    const decoder = new TextDecoder()
    for await (const chunk of npm.stdout) out += decoder.decode(chunk, { stream: true })
  })()
  await until(() => out.includes('"msg":"listening"'), 'npm start to listen', 20_000)
  expect(await listening(port)).toBe(true)
  const tree = descendants(npm.pid)
  started.push(...tree)
  expect(tree.length).toBeGreaterThan(0)

  npm.kill('SIGTERM')
  await until(async () => !(await listening(port)), `the server on ${port} to stop answering`, 10_000)
  await until(() => [npm.pid, ...tree].every((pid) => !running(pid)), 'npm and every process it started to exit', 10_000)
  // It stopped through its drain, not by being cut.
  expect(out).toContain('"msg":"draining"')
  expect(out).toContain('"msg":"stopped"')
}, 45_000)
