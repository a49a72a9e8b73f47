// Link previews across nodes and restarts: one node (the one that accepted the chat) fetches per
// message, every node's members get the event, the nodes share the cache through Redis; with
// PostgreSQL the preview stays with the message in history after a restart, and recovery replays
// the event.
import { afterAll, beforeAll, describe, expect } from 'bun:test'
import type { Server } from 'bun'
import { testNodes } from '../helpers/nodes'
import { freshDatabase } from '../helpers/postgres'
import { dropRedisPrefix, needService } from '../helpers/services'
import type { Frame } from '../helpers/client'

const API_KEY = 'previews-test-key-0123456789abcdef'
const { tag, uid, node, as } = testNodes(API_KEY)
const redisTest = await needService('Redis', 6379)
const pgTest = await needService('PostgreSQL', 5432)

let pages: Server<unknown>
const hits = new Map<string, number>()
beforeAll(() => {
  pages = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    fetch(req) {
      const path = new URL(req.url).pathname
      hits.set(path, (hits.get(path) ?? 0) + 1)
      return new Response(`<title>Page ${path}</title>`, { headers: { 'content-type': 'text/html' } })
    },
  })
})
afterAll(() => pages?.stop(true))
const link = (path: string) => `http://127.0.0.1:${pages.port}${path}`
const ENV = { LINK_PREVIEWS: 'true', OUTBOUND_ALLOW: '127.0.0.1' }

describe('previews on two nodes with Redis', () => {
  const prefix = `pv-${tag}:`
  afterAll(() => dropRedisPrefix(prefix))

  redisTest('the accepting node alone fetches; both nodes get the event; the other node finds the link in the shared cache', async () => {
    const env = { ...ENV, REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: prefix }
    const [n1, n2] = await Promise.all([node(env), node(env)])
    const room = uid('room')
    const [a, b] = await Promise.all([as(n1, uid('a')), as(n2, uid('b'))])
    for (const c of [a, b]) expect(await c.request({ type: 'join', room })).toMatchObject({ type: 'joined' })
    const path = `/shared-${tag}`
    const first = await a.request({ type: 'chat', room, body: link(path) })
    const seen = await Promise.all([a, b].map((c) => c.next((f) => f.type === 'preview' && f.msg === first.msg, 8000)))
    expect(seen.map((f) => f.seq)).toEqual([seen[0]!.seq, seen[0]!.seq])
    expect(hits.get(path)).toBe(1)
    // Sent through the other node: its own event, from the cache the first node filled.
    const second = await b.request({ type: 'chat', room, body: `again ${link(path)}` })
    const again = await a.next((f) => f.type === 'preview' && f.msg === second.msg, 8000)
    expect(again.preview).toEqual({ url: link(path), title: `Page ${path}` })
    expect(hits.get(path)).toBe(1)
    a.close()
    b.close()
  })
})

describe('previews with PostgreSQL', () => {
  pgTest('history after a restart carries the preview; recovery replays the event', async () => {
    const db = await freshDatabase('previews')
    try {
      const env = { ...ENV, POSTGRES_DSN: db.dsn }
      const n1 = await node(env)
      const room = uid('room')
      const a = await as(n1, uid('a'))
      const joined = await a.request({ type: 'join', room })
      const path = `/kept-${tag}`
      const ack = await a.request({ type: 'chat', room, body: `kept ${link(path)}` })
      const ev = await a.next((f) => f.type === 'preview' && f.msg === ack.msg, 8000)
      a.close()
      await n1.stop()
      const n2 = await node(env)
      const b = await as(n2, uid('b'))
      const page = await b.request({ type: 'history', room, limit: 10 })
      expect(page.messages.find((f: Frame) => f.id === ack.msg).preview).toEqual({ url: link(path), title: `Page ${path}` })
      const back = await b.request({ type: 'join', room, since: joined.seq, epoch: joined.epoch })
      expect(back).toMatchObject({ type: 'joined', recovered: true })
      const replayed = await b.next((f) => f.type === 'preview' && f.msg === ack.msg)
      expect(replayed.seq).toBe(ev.seq)
      b.close()
      await n2.stop()
    } finally {
      await db.drop()
    }
  })
})
