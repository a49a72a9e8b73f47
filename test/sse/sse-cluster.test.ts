import { afterAll, expect } from 'bun:test'
import { connect } from '../helpers/client'
import { onRedisAndCluster } from '../helpers/redis-suites'
import { startServer } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { openSse } from '../helpers/sse'

const prefix = `test-sse-${process.pid}-${Date.now()}:`
let n = 0
const uid = (what: string) => `${what}-${process.pid}-${++n}`
const started: RunningServer[] = []
afterAll(() => Promise.all(started.map((s) => s.stop('SIGKILL'))))

const MESSAGES = 1000
const PER_POST = 10

/** Waits (bounded) until `frames` hold `count` chats of the room, then returns their bodies in order. */
async function chats(frames: Record<string, any>[], room: string, count: number, ms = 60_000): Promise<string[]> {
  const deadline = Date.now() + ms
  let got: string[] = []
  while (Date.now() < deadline) {
    got = frames.filter((f) => f.type === 'chat' && f.room === room).map((f) => f.body)
    if (got.length >= count) break
    await Bun.sleep(20)
  }
  return got
}

await onRedisAndCluster({
  what: 'sse',
  prefix,
  env: { RATE_LIMIT_PER_SEC: '0' },
  node: async (env) => {
    const s = await startServer({ env, timeoutMs: 40_000 })
    started.push(s)
    return s
  },
  suite: (name, nodes, test) => {
    test(`${name}: stream on node 1, POSTs to nodes 2 and 3, 1 000 numbered messages each way: no loss, gap or duplicate`, async () => {
      const [a, b, c] = nodes() as [RunningServer, RunningServer, RunningServer]
      const room = uid('sse-across')
      const e = await openSse(a.url, { user: uid('sse-user') })
      // Its join goes through node 2: the answer comes down the stream of node 1.
      expect(await e.request({ type: 'join', room }, 20_000, b.url)).toMatchObject({ type: 'joined', room })
      const w = await connect(c.ws, { user: uid('ws-user') })
      expect((await w.request({ type: 'join', room })).type).toBe('joined')

      // SSE → /ws: numbered chats, ten per POST, the POSTs alternating between nodes 2 and 3.
      const out = Array.from({ length: MESSAGES }, (_, i) => `sse-${i}`)
      for (let i = 0; i < MESSAGES; i += PER_POST) {
        const batch = out.slice(i, i + PER_POST).map((body) => ({ type: 'chat', room, body }))
        const r = await e.post(batch, (i / PER_POST) % 2 === 0 ? b.url : c.url)
        expect(r.status).toBe(202)
      }
      expect(await chats(w.frames, room, MESSAGES)).toEqual(out)
      const seqs = w.frames.filter((f) => f.type === 'chat' && f.room === room).map((f) => f.seq)
      expect(seqs.every((s, i) => i === 0 || s === seqs[i - 1] + 1)).toBe(true)

      // /ws → SSE: numbered chats from node 3 reach the stream on node 1, in order, once each.
      const back = Array.from({ length: MESSAGES }, (_, i) => `ws-${i}`)
      for (const body of back) w.send({ type: 'chat', room, body })
      expect(await chats(e.frames, room, 2 * MESSAGES)).toEqual([...out, ...back])
      w.close()

      // A forged session naming node 1, on node 2: 404; the real one after its stream ended: 404.
      const forged = await fetch(`${b.url}/sse/${e.welcome.node}.AAAAAAAAAAAAAAAAAAAAAA`, { method: 'POST', body: '{"type":"ping"}' })
      expect(forged.status).toBe(404)
      expect(await forged.json()).toEqual({ error: 'not_found' })
      e.close()
      await e.ended
      let status = 0
      for (let i = 0; i < 50 && status !== 404; i++) {
        status = (await e.post({ type: 'ping' }, c.url)).status
        if (status !== 404) await Bun.sleep(100)
      }
      expect(status).toBe(404)
    }, 120_000)
  },
})
