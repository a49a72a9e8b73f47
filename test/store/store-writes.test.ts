// Store writes (issue 17): audit rows are idempotent across a retried batch, and user and
// session rows wait out a PostgreSQL outage like messages do.
import { afterAll, beforeAll, describe, expect, test as realTest } from 'bun:test'
import type { Socket, TCPSocketListener } from 'bun'
import { connect } from '../helpers/client'
import { freshDatabase } from '../helpers/postgres'
import { startProxy } from '../helpers/proxy'
import { startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { needService } from '../helpers/services'

const test = await needService('PostgreSQL', 5432)
let db: Awaited<ReturnType<typeof freshDatabase>>
const servers: RunningServer[] = []
const API_KEY = 'store-writes-api-key-0123456789'

beforeAll(async () => {
  if (test === realTest) db = await freshDatabase('writes')
})
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop('SIGKILL')))
  await db?.drop()
})

/**
 * A TCP proxy to PostgreSQL that can hold back the database's answers: a statement sent
 * while held is executed and committed, but the client hears nothing, times out and retries.
 */
async function holdingProxy() {
  interface Pair {
    up?: Socket<Pair>
    down: Socket<Pair>
    toDown: Uint8Array[]
    toUp: Uint8Array[]
  }
  const pairs = new Set<Pair>()
  let held = false
  const listener: TCPSocketListener<Pair> = Bun.listen<Pair>({
    hostname: '127.0.0.1',
    port: 0,
    socket: {
      async open(down) {
        const pair: Pair = { down, toDown: [], toUp: [] }
        down.data = pair
        pairs.add(pair)
        pair.up = await Bun.connect<Pair>({
          hostname: '127.0.0.1',
          port: 5432,
          data: pair,
          socket: {
            data(_up, chunk) {
              if (held) pair.toDown.push(new Uint8Array(chunk))
              else pair.down.write(chunk)
            },
            close: () => void pair.down.end(),
            error: () => void pair.down.end(),
          },
        })
        for (const c of pair.toUp.splice(0)) pair.up.write(c)
      },
      data(down, chunk) {
        const pair = down.data
        if (pair.up) pair.up.write(chunk)
        else pair.toUp.push(new Uint8Array(chunk))
      },
      close: (down) => void down.data?.up?.end(),
      error() {},
    },
  })
  return {
    port: listener.port,
    hold: () => void (held = true),
    release() {
      held = false
      for (const p of pairs) for (const c of p.toDown.splice(0)) p.down.write(c)
    },
    close() {
      for (const p of pairs) {
        p.down.terminate()
        p.up?.terminate()
      }
      listener.stop(true)
    },
  }
}

describe('store writes', () => {
  test('an audit batch retried after a write that timed out (but committed) writes each row once', async () => {
    const { postgresStore } = await import('../../src/store/postgres')
    const { configureLog } = await import('../../src/log')
    configureLog('silent')
    const proxy = await holdingProxy()
    try {
      const store = await postgresStore({ dsn: db.dsnVia(proxy.port), nodeId: 'audit-retry' })
      // A first write prepares the statement, so that the next one is executed without a round trip.
      store.audit({ event: 'connect', user: 'retry-user', conn: 'retry-warm-up' })
      await until(async () => (await db.sql`select 1 from audit where conn = 'retry-warm-up'`).length === 1, 'warm-up written')
      proxy.hold()
      store.audit({ event: 'connect', user: 'retry-user', conn: 'retry-conn-1' })
      store.audit({ event: 'join', user: 'retry-user', conn: 'retry-conn-1', room: 'r' })
      // The insert reaches PostgreSQL and commits; its answer is held past the 5 s write timeout.
      await until(async () => (await db.sql`select 1 from audit where conn = 'retry-conn-1'`).length === 2, 'first attempt committed', 4000)
      await Bun.sleep(5600) // past the store's 5 s write timeout: the batch is sent again
      expect(store.problem()).toMatch(/no answer/)
      proxy.release()
      await until(() => store.problem() === undefined, 'store healthy again', 15_000)
      await store.close()
      const rows = await db.sql`select event, uid from audit where conn = 'retry-conn-1' order by id`
      expect(rows.map((r) => r.event)).toEqual(['connect', 'join'])
      expect(rows.every((r) => typeof r.uid === 'string')).toBe(true)
    } finally {
      proxy.release()
      proxy.close()
    }
  }, 40_000)

  test('user and session rows of a connection made during an outage are written when PostgreSQL returns', async () => {
    let proxy = await startProxy(5432)
    const port = proxy.port
    try {
      const s = await startServer({ env: { POSTGRES_DSN: db.dsnVia(port), TRUST_PROXY: '127.0.0.1', NODE_ID: 'outage-node' } })
      servers.push(s)
      proxy.close()
      await until(async () => (await fetch(`${s.url}/readyz`)).status === 503, 'readyz 503', 10_000)
      const c = await connect(
        s.ws,
        { user: 'outage-user', name: 'During' },
        { headers: { 'x-forwarded-for': '198.51.100.9', 'user-agent': 'outage-agent' } },
      )
      const conn = c.welcome.conn
      await Bun.sleep(200)
      c.ws.close(1000)
      await c.closed
      await Bun.sleep(2500) // several failed write attempts
      expect((await db.sql`select 1 from sessions where conn = ${conn}`).length).toBe(0)
      proxy = await startProxy(5432, port)
      await until(
        async () => (await db.sql`select 1 from sessions where conn = ${conn} and close_code is not null`).length === 1,
        'session written',
        15_000,
      )
      const [session] = await db.sql`select * from sessions where conn = ${conn}`
      expect(session).toMatchObject({
        user_id: 'outage-user',
        node: 'outage-node',
        remote_addr: '198.51.100.9',
        user_agent: 'outage-agent',
        close_code: 1000,
      })
      // The times are those of the connection, not of the late write.
      expect(session!.disconnected_at.getTime() - session!.connected_at.getTime()).toBeGreaterThanOrEqual(150)
      expect(session!.disconnected_at.getTime() - session!.connected_at.getTime()).toBeLessThan(2000)
      const [user] = await db.sql`select * from users where id = 'outage-user'`
      expect(user).toMatchObject({ name: 'During' })
      const events = (await db.sql`select event from audit where conn = ${conn} order by at, id`).map((r) => r.event)
      expect(events[0]).toBe('connect')
      expect(events.at(-1)).toBe('disconnect')
      await s.stop()
    } finally {
      proxy.close()
    }
  }, 40_000)

  test("the server's messages read back from PostgreSQL still carry system: true", async () => {
    const s = await startServer({ env: { POSTGRES_DSN: db.dsn, HISTORY_LIMIT: '1', API_KEY } })
    servers.push(s)
    const room = `sys-${Date.now()}`
    const res = await fetch(`${s.url}/api/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify({ room, body: 'notice' }),
    })
    expect(res.status).toBe(200)
    const c = await connect(s.ws, { user: 'reader' })
    await c.request({ type: 'join', room })
    await c.request({ type: 'chat', room, body: 'a user' })
    await c.request({ type: 'chat', room, body: 'pushes the notice out of memory' })
    const page = await c.request({ type: 'history', room })
    expect(page.messages.map((m: any) => m.from)).toEqual([
      { id: 'server', name: 'server', system: true },
      { id: 'reader', name: 'reader' },
      { id: 'reader', name: 'reader' },
    ])
    await s.stop()
  })
})
