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
    return ((label: string) => test(label, () => {
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
