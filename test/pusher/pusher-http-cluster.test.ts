import { afterAll, expect } from 'bun:test'
import { connect } from '../helpers/client'
import { APP, authEndpoint, pusherClient, pusherEnv, sdk } from '../helpers/pusher'
import { onRedisAndCluster } from '../helpers/redis-suites'
import { startServer } from '../helpers/server'
import type { RunningServer } from '../helpers/server'

/**
 * pusher-js's HTTP fallbacks without sticky sessions: a load balancer that sends each request
 * to the next node in turn. Every xhr_send and every poll that reaches a node other than the
 * session's goes through the holder's node topic (docs/pusher.md, "HTTP fallbacks").
 */

const prefix = `test-pusher-http-${process.pid}-${Date.now()}:`
const auth = authEndpoint()
let n = 0
const uid = (what: string) => `${what}-${process.pid}-${++n}`
const started: RunningServer[] = []
const proxies: { stop(force?: boolean): void }[] = []
afterAll(() => {
  for (const p of proxies) p.stop(true)
  return Promise.all(started.map((s) => s.stop('SIGKILL')))
})

/** A round-robin HTTP load balancer over `nodes` (no stickiness), and how many requests each got. */
function roundRobin(nodes: RunningServer[]) {
  let next = 0
  const hits = nodes.map(() => 0)
  const server = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    idleTimeout: 0,
    async fetch(req) {
      const i = next++ % nodes.length
      hits[i]!++
      const url = new URL(req.url)
      const body = req.method === 'POST' ? await req.arrayBuffer() : undefined
      return fetch(`${nodes[i]!.url}${url.pathname}${url.search}`, { method: req.method, headers: req.headers, body, signal: req.signal })
    },
  })
  proxies.push(server)
  return { port: server.port as number, hits, asServer: { port: server.port } as RunningServer }
}

/** SockJS lines of a poll's body: frames of `a[…]` (each parsed), `o`, `c[…]`. */
async function poll(url: string) {
  const res = await fetch(url, { method: 'POST' })
  const text = await res.text()
  const frames: any[] = []
  for (const line of text.split('\n')) if (line.startsWith('a')) for (const f of JSON.parse(line.slice(1))) frames.push(JSON.parse(f))
  return { status: res.status, open: text.startsWith('o\n'), frames, text }
}

await onRedisAndCluster({
  what: 'pusher HTTP fallbacks',
  prefix,
  // IDLE_TIMEOUT_S=6: a session whose client left unseen is let go within seconds (polls held 2 s, released after 3 s without one).
  env: { ...pusherEnv, RATE_LIMIT_PER_SEC: '0', IDLE_TIMEOUT_S: '6' },
  node: async (env) => {
    const s = await startServer({ env, timeoutMs: 40_000 })
    started.push(s)
    return s
  },
  suite: (name, nodes, test) => {
    for (const transport of ['xhr_polling', 'xhr_streaming'] as const)
      test(`${name}: pusher-js over ${transport} through a round-robin balancer: channels, presence, client events, a /ws user`, async () => {
        const [a, b, c] = nodes() as [RunningServer, RunningServer, RunningServer]
        const lb = roundRobin([a, b])
        const channel = uid('presence-rr')
        const ann = await pusherClient(lb.asServer, auth, { user: 'ann', name: 'Ann' }, transport)
        const onAnn = (await ann.subscribe(channel)) as any
        const bob = await pusherClient(lb.asServer, auth, { user: 'bob', name: 'Bob' }, transport)
        const added = ann.next(onAnn, 'pusher:member_added')
        const onBob = (await bob.subscribe(channel)) as any
        expect(onBob.members.count).toBe(2)
        expect(await added).toMatchObject({ id: 'bob' })
        // Several requests, both nodes reached: the sessions' requests crossed nodes.
        for (let i = 0; i < 4; i++) {
          const said = bob.next(onBob, 'client-hi')
          onAnn.trigger('client-hi', { i })
          expect(await said).toEqual({ i })
        }
        expect(lb.hits.every((h) => h > 2)).toBe(true)
        // The HTTP API of C and a /ws user on C reach them.
        const both = Promise.all([ann.next(onAnn, 'news'), bob.next(onBob, 'news')])
        await sdk(c).trigger(channel, 'news', { n: 1 })
        expect(await both).toEqual([{ n: 1 }, { n: 1 }])
        const chat = await connect(c.ws, { user: 'cy', name: 'Cy' })
        expect((await chat.request({ type: 'join', room: channel })).type).toBe('joined')
        const heard = ann.next(onAnn, 'chat')
        chat.send({ type: 'chat', room: channel, body: 'to the balancer' })
        expect(await heard).toMatchObject({ body: 'to the balancer', from: { id: 'cy' } })
        onBob.trigger('client-back', { to: 'cy' })
        expect(await chat.next((f) => f.type === 'pusher' && f.event === 'client-back')).toMatchObject({ data: { to: 'cy' } })
        // A /ws user of the room is a member of the presence channel too.
        const cyGone = ann.next(onAnn, 'pusher:member_removed')
        chat.close()
        expect((await cyGone).id).toBe('cy')
        const removed = ann.next(onAnn, 'pusher:member_removed', 15_000)
        bob.close()
        expect((await removed).id).toBe('bob')
        ann.close()
      }, 40_000)

    test(`${name}: a session of node A: xhr_send and polls through B reach it; unknown sessions are 404 on B`, async () => {
      const [a, b] = nodes() as [RunningServer, RunningServer]
      const path = `/pusher/app/${APP.key}/7/${crypto.randomUUID().slice(0, 8)}`
      const first = await poll(`${a.url}${path}/xhr`)
      expect(first.open).toBe(true)
      const channel = uid('cross')
      const sent = await fetch(`${b.url}${path}/xhr_send`, {
        method: 'POST',
        body: JSON.stringify([JSON.stringify({ event: 'pusher:subscribe', data: { channel } })]),
      })
      expect(sent.status).toBe(204)
      const viaB = await poll(`${b.url}${path}/xhr`)
      expect(viaB.status).toBe(200)
      expect(viaB.open).toBe(false)
      expect(viaB.frames).toContainEqual(expect.objectContaining({ event: 'pusher_internal:subscription_succeeded', channel }))
      // A poll held on B is answered by A's next frame.
      const held = poll(`${b.url}${path}/xhr`)
      await Bun.sleep(200)
      await sdk(a).trigger(channel, 'late', { x: 1 })
      expect((await held).frames).toContainEqual(expect.objectContaining({ event: 'late', channel }))
      const unknown = await fetch(`${b.url}/pusher/app/${APP.key}/7/nosuchid/xhr_send`, { method: 'POST', body: '[]' })
      expect(unknown.status).toBe(404)
      expect((await unknown.json()).error).toBe('not_found')
    }, 30_000)
  },
})
