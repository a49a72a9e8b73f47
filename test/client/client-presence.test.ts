// The typed client and presence at scale (issue 34): `batch` frames reach `on('presence')`,
// and `presence(room, { limit, cursor })` pages with the count.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { ChatClient } from '../../client/src/index'
import type { PresenceFrame } from '../../client/src/index'
import { startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'

let server: RunningServer
const clients: ChatClient[] = []
const make = (user: string) => {
  const c = new ChatClient({ url: server.ws, user, name: user.toUpperCase(), pingIntervalMs: 0, requestTimeoutMs: 8000 })
  clients.push(c)
  return c
}

beforeAll(async () => {
  server = await startServer({ env: { RATE_LIMIT_PER_SEC: '0', DEFAULT_ROOM: '', PRESENCE_EVENTS_MAX: '1', PRESENCE_BATCH_MS: '200' } })
})
afterAll(async () => {
  for (const c of clients) c.close()
  await server.stop()
})

test('a batch frame is a presence event of the client; presence pages with limit, cursor, next and count', async () => {
  const w = make('cw')
  const heard: PresenceFrame[] = []
  w.on('presence', (p) => heard.push(p))
  await w.join('big')
  const others = ['cx', 'cy', 'cz'].map(make)
  for (const o of others) await o.join('big')
  const joined = () => heard.flatMap((p) => (p.event === 'batch' ? p.joined.map((u) => u.id) : []))
  await until(() => ['cy', 'cz'].every((id) => joined().includes(id)), 'the batched joins', 10_000)
  const batch = heard.find((p) => p.event === 'batch')!
  expect(batch.event === 'batch' && batch.count).toBeGreaterThan(1)

  const ids: string[] = []
  let cursor: string | undefined
  for (let i = 0; i < 10; i++) {
    const page = await w.presence('big', { limit: 1, ...(cursor ? { cursor } : {}) })
    expect(page.count).toBe(4)
    expect(page.users.length).toBeLessThanOrEqual(1)
    ids.push(...page.users.map((u) => u.id))
    if (!(cursor = page.next)) break
  }
  expect(ids.sort()).toEqual(['cw', 'cx', 'cy', 'cz'])
  expect((await w.presence('big')).map((u) => u.id).sort()).toEqual(['cw', 'cx', 'cy', 'cz'])
})
