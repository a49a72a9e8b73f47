// Presence at scale (issue 34) on real servers: batch frames above PRESENCE_EVENTS_MAX, per-user
// events at or below it, paged presence answers with the count, and an empty DEFAULT_ROOM.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { loadConfig } from '../../src/config'
import { connect } from '../helpers/client'
import type { Frame, TestClient } from '../helpers/client'
import { startServer } from '../helpers/server'
import type { RunningServer } from '../helpers/server'

const API_KEY = 'test-api-key-0123456789'
const MAX = 3
let lobby: RunningServer // DEFAULT_ROOM=lobby: every connection joins it
let bare: RunningServer // DEFAULT_ROOM= (empty): nothing joined on connect
const open: TestClient[] = []
let n = 0
const room = () => `ps-${++n}`

beforeAll(async () => {
  const env = { API_KEY, RATE_LIMIT_PER_SEC: '0', PRESENCE_EVENTS_MAX: String(MAX), PRESENCE_BATCH_MS: '200' }
  ;[lobby, bare] = await Promise.all([
    startServer({ env: { ...env, DEFAULT_ROOM: 'lobby' } }),
    startServer({ env: { ...env, DEFAULT_ROOM: '' } }),
  ])
})
afterAll(async () => {
  for (const c of open) c.close()
  expect(await lobby.stop()).toBe(0)
  expect(await bare.stop()).toBe(0)
})

async function user(s: RunningServer, id: string, r?: string): Promise<TestClient> {
  const c = await connect(s.ws, { user: id, name: id.toUpperCase() })
  open.push(c)
  if (r) expect((await c.request({ type: 'join', room: r })).type).toBe('joined')
  return c
}

const presence = (c: TestClient, r: string) => c.frames.filter((f) => f.type === 'presence' && f.room === r && f.event)
/** Each user named by the presence events and batches `c` got in `r`, with how: 'join'/'leave' (an event) or 'batch+'/'batch-'. */
function heard(c: TestClient, r: string): Map<string, string[]> {
  const out = new Map<string, string[]>()
  const add = (id: string, how: string) => out.set(id, [...(out.get(id) ?? []), how])
  for (const f of presence(c, r)) {
    if (f.event === 'batch') {
      for (const u of f.joined) add(u.id, 'batch+')
      for (const u of f.left) add(u.id, 'batch-')
    } else add(f.user.id, f.event)
  }
  return out
}
async function until(cond: () => boolean, what: string, ms = 10_000) {
  for (const end = Date.now() + ms; !cond(); await Bun.sleep(20)) if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
}

describe('presence events', () => {
  test('at or below PRESENCE_EVENTS_MAX each join and leave is its own event, and no batch', async () => {
    const r = room()
    const w = await user(bare, 'w1', r)
    const a = await user(bare, 'a1', r)
    const b = await user(bare, 'b1', r)
    await w.next((f) => f.type === 'presence' && f.event === 'join' && f.user.id === 'b1')
    b.close()
    await w.next((f) => f.type === 'presence' && f.event === 'leave' && f.user.id === 'b1')
    await Bun.sleep(400) // two windows: a batch, if one were due, would be here
    expect([...heard(w, r)]).toEqual([
      ['w1', ['join']], // its own, as before
      ['a1', ['join']],
      ['b1', ['join', 'leave']],
    ])
    a.close()
  })

  test('above it, joins and leaves reach each member once, in batches with the count', async () => {
    const r = room()
    const w = await user(bare, 'w2', r)
    const early = [await user(bare, 'e1', r), await user(bare, 'e2', r)]
    await w.next((f) => f.type === 'presence' && f.user?.id === 'e2')
    const late = await Promise.all(['l1', 'l2', 'l3', 'l4'].map((id) => user(bare, id, r)))
    await until(() => ['l1', 'l2', 'l3', 'l4'].every((id) => heard(w, r).has(id)), 'the late joins')
    late[0]!.close()
    late[1]!.close()
    await until(() => heard(w, r).get('l2')?.length === 2 && heard(w, r).get('l1')?.length === 2, 'the leaves')
    const got = heard(w, r)
    for (const id of ['l1', 'l2']) expect(got.get(id)).toEqual(['batch+', 'batch-'])
    for (const id of ['l3', 'l4']) expect(got.get(id)).toEqual(['batch+'])
    const batches = presence(w, r).filter((f) => f.event === 'batch')
    for (const f of batches) expect(f.count).toBeGreaterThan(MAX)
    expect(batches.at(-1)!.count).toBe(5)
    expect((await w.request({ type: 'presence', room: r })).count).toBe(5)
    for (const c of [...early, ...late]) c.close()
  })

  test('a connect in a room above the threshold sends no per-user presence frame to the members', async () => {
    const w = await user(lobby, 'lw')
    const others = [await user(lobby, 'lx'), await user(lobby, 'ly'), await user(lobby, 'lz')]
    await until(() => heard(w, 'lobby').has('lz'), "lz's join")
    const late = await user(lobby, 'late')
    await until(() => heard(w, 'lobby').has('late'), "late's join")
    expect(heard(w, 'lobby').get('late')).toEqual(['batch+'])
    expect(presence(w, 'lobby').filter((f) => f.event !== 'batch' && f.user.id === 'late')).toEqual([])
    for (const c of [...others, late]) c.close()
  })
})

describe('paged presence answers', () => {
  const pages = async (ask: (cursor?: string) => Promise<Frame>) => {
    const ids: string[] = []
    let cursor: string | undefined
    const counts: number[] = []
    for (let i = 0; i < 20; i++) {
      const p = await ask(cursor)
      expect(p.users.length).toBeLessThanOrEqual(3)
      ids.push(...p.users.map((u: Frame) => u.id))
      counts.push(p.count)
      if (!(cursor = p.next)) break
    }
    return { ids: ids.sort(), counts }
  }

  test('limit, cursor and next cover every user once, by frame and by the HTTP API; count is the whole room', async () => {
    const r = room()
    const ids = ['pa', 'pb', 'pc', 'pd', 'pe', 'pf', 'pg']
    const cs = await Promise.all(ids.map((id) => user(bare, id, r)))
    const byFrame = await pages((cursor) => cs[0]!.request({ type: 'presence', room: r, limit: 3, ...(cursor ? { cursor } : {}) }))
    expect(byFrame.ids).toEqual(ids)
    expect(new Set(byFrame.counts)).toEqual(new Set([7]))
    const byHttp = await pages(async (cursor) => {
      const res = await fetch(`${bare.url}/api/rooms/${r}/presence?limit=3${cursor ? `&cursor=${cursor}` : ''}`, {
        headers: { authorization: `Bearer ${API_KEY}` },
      })
      expect(res.status).toBe(200)
      return res.json()
    })
    expect(byHttp.ids).toEqual(ids)
    const whole = await cs[0]!.request({ type: 'presence', room: r })
    expect(whole).toMatchObject({ count: 7 })
    expect(whole.users).toHaveLength(7)
    expect(whole.next).toBeUndefined()
    for (const c of cs) c.close()
  })

  test('a bad limit or cursor is bad_request (frame) or 400 (HTTP)', async () => {
    const c = await user(bare, 'pz')
    for (const bad of [{ limit: 0 }, { limit: 1001 }, { cursor: 'x' }])
      expect(await c.request({ type: 'presence', room: 'any', ...bad })).toMatchObject({ type: 'error', code: 'bad_request' })
    for (const q of ['limit=0', 'limit=1001', 'cursor=x']) {
      const res = await fetch(`${bare.url}/api/rooms/any/presence?${q}`, { headers: { authorization: `Bearer ${API_KEY}` } })
      expect(res.status).toBe(400)
      expect((await res.json()).error).toBe('bad_request')
    }
  })
})

describe('DEFAULT_ROOM= (empty)', () => {
  test('nothing is joined on connect; a chat without room is bad_request, with a room it is delivered', async () => {
    const c = await user(bare, 'nd')
    expect(c.welcome.rooms).toEqual([])
    expect(await c.request({ type: 'chat', body: 'where?' })).toMatchObject({ type: 'error', code: 'bad_request' })
    const r = room()
    await c.request({ type: 'join', room: r })
    expect(await c.request({ type: 'chat', room: r, body: 'here' })).toMatchObject({ type: 'ack' })
    const res = await fetch(`${bare.url}/api/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ body: 'no room' }),
    })
    expect(res.status).toBe(400)
    expect((await res.json()).error).toBe('bad_request')
  })

  test('config: empty is no room, unset is general, a bad name or a bad presence setting names the variable', () => {
    expect(loadConfig({ DEFAULT_ROOM: '' }).DEFAULT_ROOM).toBe('')
    expect(loadConfig({}).DEFAULT_ROOM).toBe('general')
    expect(loadConfig({}).PRESENCE_EVENTS_MAX).toBe(100)
    expect(loadConfig({}).PRESENCE_BATCH_MS).toBe(2000)
    expect(() => loadConfig({ DEFAULT_ROOM: 'no spaces' })).toThrow(/DEFAULT_ROOM/)
    expect(() => loadConfig({ PRESENCE_EVENTS_MAX: 'many' })).toThrow(/PRESENCE_EVENTS_MAX/)
    expect(() => loadConfig({ PRESENCE_BATCH_MS: '5' })).toThrow(/PRESENCE_BATCH_MS/)
  })
})
