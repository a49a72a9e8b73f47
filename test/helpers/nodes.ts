import { afterAll } from 'bun:test'
import { connect } from './client'
import { startServer } from './server'
import type { RunningServer } from './server'

/**
 * Servers of one test file, with the bearer key `apiKey`: `node(env)` starts one (stopped after
 * the file), `api` calls its /api, `as` connects as a named user, `uid` makes names unique per
 * run (the Redis engine shares one server with other test files).
 */
export function testNodes(apiKey: string) {
  const servers: RunningServer[] = []
  let n = 0
  const tag = `${process.pid.toString(36)}${Date.now().toString(36)}`
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop('SIGKILL')))
  })
  return {
    tag,
    uid: (what: string) => `${what}-${tag}-${++n}`,
    async node(env: Record<string, string> = {}) {
      const s = await startServer({ env: { RATE_LIMIT_PER_SEC: '0', API_KEY: apiKey, ...env } })
      servers.push(s)
      return s
    },
    api: (s: RunningServer, method: string, path: string, body?: unknown) =>
      fetch(`${s.url}/api${path}`, {
        method,
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      }),
    as: (s: RunningServer, user: string) => connect(s.ws, { user, name: user.toUpperCase() }),
  }
}
