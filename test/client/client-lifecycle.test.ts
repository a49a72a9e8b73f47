/**
 * ChatClient and the message lifecycle (protocol v2): edit, delete, reactions, replies and
 * threads, roles and moderation, against a real server; then, with a fake socket, that the
 * change events count in the client's seq tracking like messages do.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { ChatClient, ChatError } from '../../client/src/index'
import type { ChatClientOptions, DeleteEvent, EditEvent, LeftFrame, ModerationEvent, ReactEvent } from '../../client/src/index'
import { startProxy } from '../helpers/proxy'
import type { Proxy } from '../helpers/proxy'
import { startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { FakeSocket } from '../helpers/fake-socket'

const API_KEY = 'client-lifecycle-key-0123456789'
const FAST = { reconnect: { initialMs: 50, maxMs: 300 }, requestTimeoutMs: 8000, pingIntervalMs: 0 } as const
const opened = (c: ChatClient, ms = 5000) => until(() => c.state === 'open', `client open (state ${c.state})`, ms)

/** Every typed change event a client emits, in order, as `type:seq`. */
function record(c: ChatClient) {
  const seen: string[] = []
  const frames = { edit: [] as EditEvent[], delete: [] as DeleteEvent[], react: [] as ReactEvent[], moderation: [] as ModerationEvent[] }
  c.on('chat', (m) => seen.push(`chat:${m.seq}`))
  for (const t of ['edit', 'delete', 'react', 'moderation'] as const)
    c.on(t, (e: { seq: number }) => {
      ;(frames[t] as unknown[]).push(e)
      seen.push(`${t}:${e.seq}`)
    })
  return { seen, ...frames }
}

describe('message lifecycle against a real server', () => {
  let server: RunningServer
  let proxy: Proxy
  const clients: ChatClient[] = []
  const make = (o: Partial<ChatClientOptions>) => {
    const c = new ChatClient({ ...FAST, url: server.ws, ...o })
    clients.push(c)
    return c
  }
  const api = (method: string, path: string, body?: unknown) =>
    fetch(`${server.url}/api${path}`, {
      method,
      headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    })

  beforeAll(async () => {
    server = await startServer({ env: { RATE_LIMIT_PER_SEC: '0', API_KEY } })
    proxy = await startProxy(server.port)
  })
  afterAll(async () => {
    for (const c of clients) c.close()
    proxy?.close()
    await server?.stop()
  })

  test('edit, react, unreact, reply and delete: typed events in seq order on the other client; history and thread show the current state', async () => {
    const room = 'life-1'
    const alice = make({ user: 'l-alice', name: 'Alice' })
    const bob = make({ user: 'l-bob', name: 'Bob' })
    await Promise.all([opened(alice), opened(bob)])
    await alice.join(room)
    await bob.join(room)
    const bobSaw = record(bob)

    const hello = await alice.send(room, 'hello')
    const edited = await alice.edit(room, hello.msg!, 'hello!', { v: 2 })
    expect(edited.seq).toBe(hello.seq! + 1)
    expect(await bob.react(room, hello.msg!, '👍')).toMatchObject({ msg: hello.msg, seq: hello.seq! + 2 })
    expect((await bob.react(room, hello.msg!, '👍')).seq).toBeUndefined() // had it already: no event
    await alice.react(room, hello.msg!, '👍')
    await alice.react(room, hello.msg!, '🎉')
    await alice.unreact(room, hello.msg!, '🎉')
    const reply = await bob.reply(room, hello.msg!, 'hi Alice')
    const doomed = await alice.send(room, 'oops')
    await alice.delete(room, doomed.msg!)

    const s = hello.seq!
    await until(() => bobSaw.seen.length === 9, `bob saw 9 events (${bobSaw.seen})`)
    expect(bobSaw.seen).toEqual([
      `chat:${s}`,
      `edit:${s + 1}`,
      `react:${s + 2}`,
      `react:${s + 3}`,
      `react:${s + 4}`,
      `react:${s + 5}`,
      `chat:${s + 6}`,
      `chat:${s + 7}`,
      `delete:${s + 8}`,
    ])
    expect(bobSaw.edit[0]).toMatchObject({
      type: 'edit',
      room,
      msg: hello.msg,
      body: 'hello!',
      data: { v: 2 },
      by: { id: 'l-alice', name: 'Alice' },
    })
    expect(bobSaw.react.map((r) => [r.user.id, r.reaction, r.op])).toEqual([
      ['l-bob', '👍', 'add'],
      ['l-alice', '👍', 'add'],
      ['l-alice', '🎉', 'add'],
      ['l-alice', '🎉', 'remove'],
    ])
    expect(bobSaw.delete[0]).toMatchObject({ msg: doomed.msg, by: { id: 'l-alice' } })
    expect(bob.position(room).seq).toBe(s + 8) // the change events count: no hole

    const page = await bob.history(room)
    expect(page.events.map((e) => e.type)).toEqual(['chat', 'edit', 'react', 'react', 'react', 'react', 'chat', 'chat', 'delete'])
    expect(page.before).toBe(s)
    expect(page.messages.map((m) => m.id)).toEqual([hello.msg!, reply.msg!, doomed.msg!])
    const [first, second, third] = page.messages
    expect(first).toMatchObject({
      body: 'hello!',
      data: { v: 2 },
      edited_at: expect.any(String),
      reactions: [{ reaction: '👍', count: 2, me: true }],
    })
    expect(second).toMatchObject({ body: 'hi Alice', reply_to: hello.msg })
    expect(third).toMatchObject({ deleted: true, body: '' })
    expect(third!.data).toBeUndefined()

    const thread = await alice.thread(room, hello.msg!)
    expect(thread.messages.map((m) => m.body)).toEqual(['hi Alice'])
    expect(thread.more).toBe(false)

    // Errors are the server's codes.
    const notYours = await bob.edit(room, hello.msg!, 'mine now').catch((e) => e)
    expect(notYours).toBeInstanceOf(ChatError)
    expect(notYours.code).toBe('forbidden')
    expect((await alice.edit(room, doomed.msg!, 'back').catch((e) => e)).code).toBe('not_found')
    expect((await bob.react(room, 'no-such-message', 'x').catch((e) => e)).code).toBe('not_found')
  })

  test('changes made while a client was away are recovered in order, once, as typed events', async () => {
    const room = 'life-2'
    const alice = make({ user: 'r-alice', name: 'Alice' })
    const bob = make({ url: proxy.ws, user: 'r-bob', name: 'Bob' })
    await Promise.all([opened(alice), opened(bob)])
    await alice.join(room)
    await bob.join(room)
    const m = await alice.send(room, 'before')
    await until(() => bob.position(room).seq === m.seq, 'bob has the message')
    const bobSaw = record(bob)
    const gaps: unknown[] = []
    bob.on('gap', (g) => gaps.push(g))

    proxy.block()
    proxy.drop()
    await until(() => bob.state === 'reconnecting', 'bob offline')
    await alice.edit(room, m.msg!, 'after')
    await alice.react(room, m.msg!, 'ok')
    await alice.delete(room, m.msg!)
    proxy.unblock()
    await opened(bob, 8000)
    await until(() => bobSaw.seen.length === 3, `bob recovered 3 events (${bobSaw.seen})`)
    expect(bobSaw.seen).toEqual([`edit:${m.seq! + 1}`, `react:${m.seq! + 2}`, `delete:${m.seq! + 3}`])
    expect(bobSaw.edit[0]).toMatchObject({ msg: m.msg, body: 'after' })
    expect(gaps).toEqual([])
    expect(bob.position(room).seq).toBe(m.seq! + 3)
  })

  test('roles and moderation: the join names the role; mute, delete by a moderator, ban (left: banned), unban, kick (left: kicked)', async () => {
    const room = 'life-mod'
    expect((await api('PUT', `/rooms/${room}/roles/m-mod`, { role: 'moderator' })).status).toBe(200)
    const mod = make({ user: 'm-mod', name: 'Mo' })
    const tom = make({ user: 'm-tom', name: 'Tom' })
    await Promise.all([opened(mod), opened(tom)])
    expect(await mod.join(room)).toMatchObject({ role: 'moderator' })
    expect(await tom.join(room)).toMatchObject({ role: 'member' })
    expect(mod.role(room)).toBe('moderator')
    expect(tom.role(room)).toBe('member')
    expect(tom.role('general')).toBeUndefined() // joined by the server on connect: not named
    const tomSaw = record(tom)
    const left: LeftFrame[] = []
    tom.on('left', (l) => left.push(l))

    expect((await tom.mute(room, 'm-mod', 60).catch((e) => e)).code).toBe('forbidden')
    const muted = await mod.mute(room, 'm-tom', 60)
    expect(muted.seq).toEqual(expect.any(Number))
    await until(() => tomSaw.moderation.length === 1, 'tom sees the mute')
    expect(tomSaw.moderation[0]).toMatchObject({
      action: 'mute',
      user: { id: 'm-tom' },
      by: { id: 'm-mod', name: 'Mo' },
      until: expect.any(String),
      seq: muted.seq,
    })
    const refused = await tom.send(room, 'hello?').catch((e) => e)
    expect(refused.code).toBe('forbidden')
    expect(refused.message).toMatch(/muted .* until \d{4}-/)
    await mod.unmute(room, 'm-tom')
    const said = await tom.send(room, 'thanks')
    await mod.delete(room, said.msg!) // a moderator deletes someone else's message
    await until(() => tomSaw.delete.length === 1, 'tom sees the delete')
    expect(tomSaw.delete[0]).toMatchObject({ msg: said.msg, by: { id: 'm-mod' } })

    await mod.ban(room, 'm-tom', 'spam')
    await until(() => left.length === 1, 'tom is taken out')
    expect(left[0]).toMatchObject({ room, reason: 'banned' })
    expect(tom.rooms).not.toContain(room)
    expect((await tom.join(room).catch((e) => e)).code).toBe('forbidden')
    await mod.unban(room, 'm-tom')
    await tom.join(room)
    await mod.kick(room, 'm-tom', 'cool down')
    await until(() => left.length === 2, 'tom is kicked')
    expect(left[1]).toMatchObject({ room, reason: 'kicked' })
    expect(await tom.join(room)).toMatchObject({ room }) // may come back
    // Out of the room between the ban and the re-join: the unban is not Tom's to see.
    expect(tomSaw.moderation.map((m) => m.action)).toEqual(['mute', 'unmute', 'ban', 'kick'])
  })
})

// ---- fake socket: the change events in the seq tracking ----

test('change events fill the room sequence: no gap between chat seqs; a re-join asks from the last event; duplicates dropped (fake socket)', async () => {
  const c = new ChatClient({
    url: 'ws://x/ws',
    WebSocket: FakeSocket,
    pingIntervalMs: 0,
    reconnect: { initialMs: 10, maxMs: 10, jitter: 0 },
  })
  const seen = record(c)
  await until(() => FakeSocket.last?.readyState === 0, 'socket')
  const ws = FakeSocket.last
  ws.open()
  ws.push({ type: 'joined', room: 'general', seq: 0, epoch: 'e', recovered: false })
  const by = { id: 'a', name: 'A' }
  ws.push({ type: 'chat', seq: 1, id: 'm1', room: 'general', from: by, body: 'x', ts: 't' })
  ws.push({ type: 'edit', seq: 2, id: 'e2', room: 'general', msg: 'm1', by, body: 'y', ts: 't' })
  ws.push({ type: 'react', seq: 3, id: 'e3', room: 'general', msg: 'm1', user: by, reaction: 'r', op: 'add', ts: 't' })
  ws.push({ type: 'react', seq: 3, id: 'e3', room: 'general', msg: 'm1', user: by, reaction: 'r', op: 'add', ts: 't' }) // duplicate
  ws.push({ type: 'moderation', seq: 4, id: 'e4', room: 'general', action: 'kick', user: { id: 'b', name: 'B' }, by, ts: 't' })
  ws.push({ type: 'delete', seq: 5, id: 'e5', room: 'general', msg: 'm1', by, ts: 't' })
  ws.push({ type: 'chat', seq: 6, id: 'm6', room: 'general', from: by, body: 'z', ts: 't' })
  expect(seen.seen).toEqual(['chat:1', 'edit:2', 'react:3', 'moderation:4', 'delete:5', 'chat:6'])
  expect(c.position('general').seq).toBe(6)
  // Reconnect: the re-join asks from the last event, not the last chat.
  ws.onclose?.({ code: 1006, reason: '' })
  await until(() => FakeSocket.last !== ws && FakeSocket.last.readyState === 0, 'new socket')
  FakeSocket.last.open()
  const join = FakeSocket.last.sent.find((f) => f.type === 'join')!
  expect(join).toMatchObject({ room: 'general', since: 6, epoch: 'e' })
  c.close()
})
