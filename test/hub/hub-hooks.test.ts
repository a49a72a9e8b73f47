// The hub's hooks (src/hub/hub.ts onDeliver, onDrain): how another face (the Pusher one) gets
// the frames the hub delivers and drains with it, registered where the parts are wired, with no
// part's object patched. In-process, over real sockets, on the memory engine.
import { afterAll, describe, expect, test } from 'bun:test'
import { connect } from '../helpers/client'
import { createApp } from '../../src/app'
import { memoryBroker } from '../../src/broker/memory'
import { loadConfig } from '../../src/config'
import { isUserTopic, roomTopic, userTopic } from '../../src/core/topic'
import { memoryMembers } from '../../src/members/memory'
import { createMetrics } from '../../src/metrics'
import { configureLog } from '../../src/log'

function start() {
  configureLog('silent')
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent' })
  const broker = memoryBroker({ historyLimit: 10 })
  const { app, hub } = createApp({ config, broker, metrics: createMetrics(), nodeId: 'hooks-test', members: memoryMembers() })
  app.listen({ hostname: '127.0.0.1', port: 0 })
  return { app, hub, broker, ws: `ws://127.0.0.1:${app.server!.port}/ws` }
}

const running: { stop: () => void }[] = []
afterAll(() => {
  for (const r of running) r.stop()
})

describe('hub hooks', () => {
  test('a delivery hook gets every frame the hub delivers, the same text its sockets get', async () => {
    const s = start()
    running.push({ stop: () => s.app.server!.stop(true) })
    const seen: { topic: string; frame: string }[] = []
    s.hub.onDeliver({ deliver: (topic, frame) => void seen.push({ topic, frame }) })
    await s.broker.start(s.hub.deliver)
    const c = await connect(s.ws, { user: 'alice' })
    expect((await c.request({ type: 'join', room: 'hooked' })).type).toBe('joined')
    c.send({ type: 'chat', room: 'hooked', body: 'through the hook' })
    const chat = await c.next({ type: 'chat', body: 'through the hook' })
    const mine = seen.filter((h) => h.topic === roomTopic('hooked') && h.frame.includes('through the hook'))
    expect(mine).toHaveLength(1)
    // One encoded frame: the hook's text is the very frame the socket got.
    expect(JSON.parse(mine[0]!.frame)).toEqual(chat)
  })

  test("a hook owning topics gets that topic's frames alone: the hub's sockets never do", async () => {
    const s = start()
    running.push({ stop: () => s.app.server!.stop(true) })
    const owned: string[] = []
    const after: string[] = []
    // Owns the user topics here (the Pusher face owns its `pu:` ones): frames of bob's user topic must skip bob's /ws socket.
    s.hub.onDeliver({ owns: isUserTopic, deliver: (topic, frame) => void (isUserTopic(topic) ? owned : after).push(frame) })
    await s.broker.start(s.hub.deliver)
    const c = await connect(s.ws, { user: 'bob' })
    expect((await c.request({ type: 'join', room: 'owned' })).type).toBe('joined')
    await s.broker.relay(userTopic('bob'), '{"type":"notice","text":"for the hook only"}')
    // A later frame on the room: once bob has it, the earlier one would have arrived before it.
    await s.broker.relay(roomTopic('owned'), '{"type":"typing","room":"owned","marker":1}')
    await c.next({ type: 'typing', marker: 1 })
    expect(c.all('notice')).toEqual([])
    expect(owned).toEqual(['{"type":"notice","text":"for the hook only"}'])
    expect(after).toContain('{"type":"typing","room":"owned","marker":1}')
  })

  test('an idle hook is passed by (neither asked whether it owns a topic nor handed frames), and gets them again once it is not', async () => {
    const s = start()
    running.push({ stop: () => s.app.server!.stop(true) })
    const asked: string[] = []
    const got: string[] = []
    const hook = {
      idle: true,
      owns: (topic: string) => (asked.push(topic), isUserTopic(topic)),
      deliver: (_topic: string, frame: string) => void got.push(frame),
    }
    s.hub.onDeliver(hook)
    await s.broker.start(s.hub.deliver)
    const c = await connect(s.ws, { user: 'dave' })
    expect((await c.request({ type: 'join', room: 'idle' })).type).toBe('joined')
    // Idle: the user topic it would own goes to dave's socket, as if the hook were not there.
    await s.broker.relay(userTopic('dave'), '{"type":"notice","text":"idle hook"}')
    await c.next({ type: 'notice', text: 'idle hook' })
    c.send({ type: 'chat', room: 'idle', body: 'while idle' })
    await c.next({ type: 'chat', body: 'while idle' })
    expect(asked).toEqual([])
    expect(got).toEqual([])
    hook.idle = false
    c.send({ type: 'chat', room: 'idle', body: 'once busy' })
    await c.next({ type: 'chat', body: 'once busy' })
    expect(asked).toContain(roomTopic('idle'))
    expect(got.filter((f) => f.includes('once busy'))).toHaveLength(1)
  })

  test("drain hooks: begin before the hub's sockets are told, end's count added to the hub's", async () => {
    const s = start()
    running.push({ stop: () => s.app.server!.stop(true) })
    await s.broker.start(s.hub.deliver)
    const c = await connect(s.ws, { user: 'carol' })
    const calls: string[] = []
    s.hub.onDrain({
      begin: () => void calls.push(`begin draining=${s.hub.draining}`),
      end: async (graceMs) => (calls.push(`end ${graceMs}`), 2),
    })
    // The hub's own sockets all close (0 left); the hook says 2 of its own are still open.
    expect(await s.hub.drain(1000)).toBe(2)
    expect(calls).toEqual(['begin draining=false', 'end 1000'])
    expect((await c.closed).code).toBe(1001)
  })
})
