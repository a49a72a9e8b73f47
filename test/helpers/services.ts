import { connect } from 'node:net'
import { test } from 'bun:test'

/** True when something accepts TCP connections on 127.0.0.1:port. */
export function listening(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port })
    const done = (ok: boolean) => {
      s.destroy()
      resolve(ok)
    }
    s.once('connect', () => done(true))
    s.once('error', () => done(false))
    setTimeout(() => done(false), 1000)
  })
}

/**
 * Decides whether a suite that needs a real service runs. Under CI=true an absent service is
 * a failure (the suite's tests fail with the reason); elsewhere the suite is skipped with a
 * printed reason.
 */
export async function needService(name: string, port: number): Promise<typeof test | typeof test.skip> {
  if (await listening(port)) return test
  const reason = `${name} is not answering on 127.0.0.1:${port}`
  if (process.env.CI === 'true') {
    return ((label: string) =>
      test(label, () => {
        throw new Error(`${reason} (CI=true: a missing service is a failure)`)
      })) as unknown as typeof test
  }
  console.warn(`skipping: ${reason}`)
  return test.skip
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): number {
  const s = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } })
  const port = s.port
  s.stop(true)
  return port
}

/**
 * A private redis-server on a free port of 127.0.0.1, for outage tests (the machine's shared
 * Redis on 6379 is never stopped). With `keepData`, an append-only file survives `restart()`.
 */
export async function privateRedis(opts: { keepData: boolean }) {
  const { mkdtempSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const port = freePort()
  const dir = mkdtempSync(join(tmpdir(), 'chat-redis-'))
  const persistence = opts.keepData ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']
  const spawn = () =>
    Bun.spawn(['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', ...persistence], {
      stdout: 'ignore',
      stderr: 'ignore',
    })
  const waitUp = async () => {
    for (let i = 0; i < 250 && !(await listening(port)); i++) await Bun.sleep(20)
  }
  let proc = spawn()
  await waitUp()
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    /** Kills it at once (no shutdown save), as a crash would. */
    async kill() {
      proc.kill('SIGKILL')
      await proc.exited
    },
    async restart() {
      proc = spawn()
      await waitUp()
    },
  }
}

/** Deletes every key under `prefix` on the shared Redis (a test file's own keys); quiet when Redis is away. */
export async function dropRedisPrefix(prefix: string) {
  const redis = new (await import('ioredis')).default('redis://127.0.0.1:6379', { lazyConnect: true })
  try {
    await redis.connect()
    const keys = await redis.keys(`${prefix}*`)
    if (keys.length) await redis.del(...keys)
  } catch {}
  redis.disconnect()
}
