import { afterAll, expect } from 'bun:test'
import { connect } from '../helpers/client'
import { onRedisAndCluster } from '../helpers/redis-suites'
import { startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { authEndpoint, pusherClient, pusherEnv, sdk } from '../helpers/pusher'

const prefix = `test-pusher-${process.pid}-${Date.now()}:`
const auth = authEndpoint()
let n = 0
const uid = (what: string) => `${what}-${process.pid}-${++n}`
const started: RunningServer[] = []
afterAll(() => Promise.all(started.map((s) => s.stop('SIGKILL'))))

const { redisTest } = await onRedisAndCluster({
  what: 'pusher',
  prefix,
  env: { ...pusherEnv, RATE_LIMIT_PER_SEC: '0' },
  node: async (env) => {
    const s = await startServer({ env, timeoutMs: 40_000 })
    started.push(s)
    return s
  },
  suite: (name, nodes, test) => {
    test(`${name}: Pusher clients on two nodes in one presence channel see each other`, async () => {
      const [a, b, c] = nodes() as [RunningServer, RunningServer, RunningServer]
      const channel = uid('presence-across')
      const ann = await pusherClient(a, auth, { user: 'ann', name: 'Ann' })
      const onA = (await ann.subscribe(channel)) as any
      const added = ann.next(onA, 'pusher:member_added')
      const bob = await pusherClient(b, auth, { user: 'bob', name: 'Bob' })
      const onB = (await bob.subscribe(channel)) as any
      // Bob's list, read on B, holds Ann of node A; Ann hears Bob arrive on A.
      expect(onB.members.count).toBe(2)
      expect(onB.members.get('ann')).toMatchObject({ id: 'ann', info: { name: 'Ann' } })
      expect(await added).toMatchObject({ id: 'bob', info: { name: 'Bob' } })
      // A client event from B reaches A.
      const said = ann.next(onA, 'client-hello')
      onB.trigger('client-hello', { from: 'bob' })
      expect(await said).toEqual({ from: 'bob' })
      // The HTTP API of node C reaches both, and knows the channel cluster-wide.
      const both = Promise.all([ann.next(onA, 'news'), bob.next(onB, 'news')])
      await sdk(c).trigger(channel, 'news', { n: 1 })
      expect(await both).toEqual([{ n: 1 }, { n: 1 }])
      const info = await (await sdk(c).get({ path: `/channels/${channel}`, params: { info: 'user_count,subscription_count' } })).json()
      expect(info).toEqual({ occupied: true, user_count: 2, subscription_count: 2 })
      // A chat-server client on C in the same room hears B's client events, and A hears its chat.
      const cyCame = ann.next(onA, 'pusher:member_added')
      const chat = await connect(c.ws, { user: 'cy', name: 'Cy' })
      expect((await chat.request({ type: 'join', room: channel })).type).toBe('joined')
      expect(await cyCame).toMatchObject({ id: 'cy', info: { name: 'Cy' } })
      const heard = ann.next(onA, 'chat')
      chat.send({ type: 'chat', room: channel, body: 'from chat-server' })
      expect(await heard).toMatchObject({ body: 'from chat-server', from: { id: 'cy' } })
      onB.trigger('client-hello', { from: 'bob again' })
      expect(await chat.next((f) => f.type === 'pusher' && f.event === 'client-hello')).toMatchObject({
        data: { from: 'bob again' },
        user_id: 'bob',
      })
      // The chat-server client is a member of the presence channel too: its leave is a member_removed.
      const cyGone = ann.next(onA, 'pusher:member_removed')
      chat.close()
      expect((await cyGone).id).toBe('cy')
      // Bob leaves on B: Ann on A hears it.
      const removed = ann.next(onA, 'pusher:member_removed')
      bob.close()
      expect((await removed).id).toBe('bob')
      ann.close()
    }, 30_000)

    test(`${name}: terminate_connections on one node closes the user on another`, async () => {
      const [a, , c] = nodes() as [RunningServer, RunningServer, RunningServer]
      const user = uid('far')
      const p = await pusherClient(a, auth, { user })
      p.pusher.signin()
      await p.pusher.user.signinDonePromise
      await until(async () => {
        await sdk(c).terminateUserConnections(user)
        await Bun.sleep(100)
        return p.pusher.connection.state !== 'connected'
      }, 'the connection closed')
      expect(p.pusher.connection.state).not.toBe('connected')
    }, 30_000)
  },
})

// A node that dies leaves its Pusher subscriptions and presence members behind: the others take
// them out once its heartbeat lapses (20 s), with member_removed and channel_vacated.
redisTest(
  "a dead node's Pusher members and subscriptions are taken out by the others",
  async () => {
    const env = { ...pusherEnv, RATE_LIMIT_PER_SEC: '0', REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: `${prefix}dead:` }
    const hooked: any[] = []
    const receiver = Bun.serve({
      hostname: '127.0.0.1',
      port: 0,
      fetch: async (req) => (hooked.push(...JSON.parse(await req.text()).events), new Response('ok')),
    })
    try {
      const a = await startServer({ env, timeoutMs: 40_000 })
      started.push(a)
      const b = await startServer({ env: { ...env, PUSHER_WEBHOOK_URL: `http://127.0.0.1:${receiver.port}/h` }, timeoutMs: 40_000 })
      started.push(b)
      const channel = uid('presence-doomed')
      const onA = await pusherClient(a, auth, { user: 'doomed' })
      await onA.subscribe(channel)
      // Only A's client is in this one: its channel_vacated can only come from the reaper on B.
      const alone = uid('doomed-alone')
      await onA.subscribe(alone)
      const onB = await pusherClient(b, auth, { user: 'survivor' })
      const chB = (await onB.subscribe(channel)) as any
      expect(chB.members.count).toBe(2)
      const removed = onB.next(chB, 'pusher:member_removed', 60_000)
      await a.stop('SIGKILL')
      expect((await removed).id).toBe('doomed')
      await until(
        () => hooked.some((e) => e.name === 'channel_vacated' && e.channel === alone),
        "channel_vacated of the dead node's channel",
        60_000,
      )
      onB.close()
      await until(() => hooked.some((e) => e.name === 'channel_vacated' && e.channel === channel), 'channel_vacated', 60_000)
      const info = await (await sdk(b).get({ path: `/channels/${channel}`, params: { info: 'subscription_count' } })).json()
      expect(info).toEqual({ occupied: false, subscription_count: 0 })
    } finally {
      receiver.stop(true)
    }
  },
  120_000,
)
