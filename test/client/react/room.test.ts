/**
 * @chat-server/react's room controller (what useRoom reads) on a real ChatClient driven by a
 * fake socket: the newest page merged with what came live meanwhile, older pages, presence,
 * who is typing (and when they stop), one typing frame per 2 s, reactions that toggle, a direct
 * room's own dm shown from its ack, a sequence restart that starts over. No server, no browser.
 */
import { afterEach, describe, expect, test } from 'bun:test'
import { ChatClient } from '../../../client/src/index'
import { roomOf } from '../../../client/react/src/room'
import type { RoomController } from '../../../client/react/src/room'
import { FakeSocket } from '../../helpers/fake-socket'
import { until } from '../../helpers/server'

const me = { id: 'me', name: 'Me' }
const bob = { id: 'bob', name: 'Bob' }
const chat = (seq: number, body: string, from = bob, room = 'team') => ({
  type: 'chat',
  id: `m${seq}`,
  room,
  seq,
  from,
  body,
  ts: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString(),
})

const clients: ChatClient[] = []
const releases: (() => void)[] = []
afterEach(() => {
  for (const r of releases.splice(0)) r()
  for (const c of clients.splice(0)) c.close()
})

async function connected(rooms: string[] = []) {
  const client = new ChatClient({
    url: 'ws://fake/ws',
    WebSocket: FakeSocket,
    pingIntervalMs: 0,
    requestTimeoutMs: 5000,
    reconnect: { initialMs: 1, maxMs: 5 },
  })
  clients.push(client)
  await until(() => FakeSocket.last?.url.startsWith('ws://fake/ws') && client.state === 'connecting', 'socket made')
  const ws = FakeSocket.last
  ws.open({ user: me, rooms })
  return { client, ws }
}

/** The last frame of this type the client sent (after `from`), once it is sent. */
async function sent(ws: FakeSocket, type: string, from = 0): Promise<Record<string, any>> {
  let f: Record<string, any> | undefined
  await until(() => !!(f = ws.sent.slice(from).findLast((x) => x.type === type)), `a ${type} frame`)
  return f!
}

/** A room shown (retained) on a fresh client, joined, its first page read with `live` frames arriving meanwhile. */
async function shown(page: Record<string, unknown>[], live: Record<string, unknown>[] = [], more = false) {
  const { client, ws } = await connected()
  const room = roomOf(client, 'team')
  releases.push(room.retain())
  const join = await sent(ws, 'join')
  ws.push({ type: 'joined', room: 'team', seq: page.length, epoch: 'e1', recovered: false, id: join.id })
  const history = await sent(ws, 'history')
  for (const f of live) ws.push(f)
  ws.push({ type: 'history', room: 'team', messages: page, more, id: history.id })
  await until(() => room.meta.get().status === 'ready', `ready (${room.meta.get().status})`)
  return { client, ws, room }
}
const bodies = (room: RoomController) => room.timeline.rows.get().map((r) => r.body)

describe('RoomController (useRoom)', () => {
  test('the newest page, then what came live while it was read; older pages before it', async () => {
    const { ws, room } = await shown(
      [chat(3, 'three'), chat(4, 'four')],
      [chat(4, 'four'), chat(5, 'five'), { type: 'edit', id: 'e6', room: 'team', seq: 6, msg: 'm3', by: bob, body: 'three!', ts: 'x' }],
      true,
    )
    expect(bodies(room)).toEqual(['three!', 'four', 'five'])
    expect(room.meta.get()).toMatchObject({ status: 'ready', more: true })
    const rows = room.timeline.rows.get()

    const older = room.loadOlder()
    const ask = await sent(ws, 'history', 2)
    expect(ask).toMatchObject({ room: 'team', before: 3, limit: 50 })
    ws.push({ type: 'history', room: 'team', messages: [chat(1, 'one'), chat(2, 'two')], more: false, id: ask.id })
    expect(await older).toBe(false)
    expect(bodies(room)).toEqual(['one', 'two', 'three!', 'four', 'five'])
    expect(room.timeline.rows.get().slice(2)).toEqual([...rows])
    expect(room.timeline.rows.get()[2]).toBe(rows[0]!)
    expect(room.meta.get().more).toBe(false)
  })

  test('presence: the answer, then joins and leaves; typing: shown, ended by a message or after 3 s; never oneself', async () => {
    const { ws, room } = await shown([])
    const ask = await sent(ws, 'presence')
    ws.push({ type: 'presence', room: 'team', users: [me, { id: 'ann', name: 'Ann' }], count: 2, id: ask.id })
    await until(() => room.presence.get().length === 2, 'presence answer')
    ws.push({ type: 'presence', room: 'team', event: 'join', user: bob })
    ws.push({ type: 'presence', room: 'team', event: 'leave', user: { id: 'ann', name: 'Ann' } })
    ws.push({ type: 'presence', room: 'other', event: 'join', user: { id: 'zed', name: 'Zed' } })
    expect(room.presence.get().map((u) => u.id)).toEqual(['bob', 'me'])

    ws.push({ type: 'typing', room: 'team', user: me })
    expect(room.typing.get()).toEqual([])
    ws.push({ type: 'typing', room: 'team', user: bob })
    ws.push({ type: 'typing', room: 'other', user: { id: 'zed', name: 'Zed' } })
    expect(room.typing.get()).toEqual([bob])
    ws.push(chat(1, 'done typing'))
    expect(room.typing.get()).toEqual([])
    ws.push({ type: 'typing', room: 'team', user: bob })
    expect(room.typing.get()).toEqual([bob])
    await until(() => room.typing.get().length === 0, 'typing to end by itself', 5000)
  })

  test('sendTyping sends one frame per 2 s however often it is called', async () => {
    const { ws, room } = await shown([])
    for (let i = 0; i < 5; i++) room.sendTyping()
    expect(ws.sent.filter((f) => f.type === 'typing')).toEqual([{ type: 'typing', room: 'team' }])
  })

  test('react toggles: a reaction the user has is removed', async () => {
    const { ws, room } = await shown([{ ...chat(1, 'hi'), reactions: [{ reaction: '👍', count: 1, me: true }] }])
    void room.react('m1', '👍').catch(() => {})
    void room.react('m1', '🎉').catch(() => {})
    expect(ws.sent.filter((f) => f.type === 'react' || f.type === 'unreact').map((f) => [f.type, f.reaction])).toEqual([
      ['unreact', '👍'],
      ['react', '🎉'],
    ])
  })

  test("in a direct room send is a dm, and this connection's own dm shows from its ack", async () => {
    const { client, ws } = await connected()
    const dmRoom = `dm:${'a'.repeat(40)}`
    ws.push({ type: 'joined', room: dmRoom, seq: 0, epoch: 'e1', recovered: false, member: true, read: 0, unread: 0 })
    ws.push({ type: 'rooms', rooms: [{ room: dmRoom, kind: 'direct', with: bob, seq: 0, epoch: 'e1', read: 0, unread: 0 }], more: false })
    const room = roomOf(client, dmRoom)
    releases.push(room.retain())
    const join = await sent(ws, 'join')
    ws.push({ type: 'joined', room: dmRoom, seq: 0, epoch: 'e1', recovered: false, member: true, read: 0, unread: 0, id: join.id })
    const history = await sent(ws, 'history')
    ws.push({ type: 'history', room: dmRoom, messages: [], more: false, id: history.id })
    await until(() => room.meta.get().status === 'ready', 'ready')
    const sending = room.send('hi Bob')
    const dm = await sent(ws, 'dm')
    expect(dm).toMatchObject({ to: 'bob', body: 'hi Bob' })
    ws.push({ type: 'ack', id: dm.id, msg: 'x1', seq: 1, room: dmRoom })
    await sending
    expect(room.timeline.rows.get().map((r) => [r.id, r.body, r.mine])).toEqual([['x1', 'hi Bob', true]])
  })

  test("the room's sequence restarted on the server: the view starts over from the new epoch's newest page", async () => {
    const { client, ws, room } = await shown([chat(1, 'old one'), chat(2, 'old two')])
    ws.readyState = 3
    ws.onclose?.({ code: 1006, reason: '' })
    await until(() => FakeSocket.last !== ws, 'a new socket')
    const again = FakeSocket.last
    again.open({ user: me, rooms: [] })
    const rejoin = await sent(again, 'join')
    expect(rejoin).toMatchObject({ since: 2, epoch: 'e1' })
    again.push({ type: 'joined', room: 'team', seq: 1, epoch: 'e2', recovered: false, id: rejoin.id })
    const fresh = await sent(again, 'join', again.sent.indexOf(rejoin) + 1)
    again.push({ type: 'joined', room: 'team', seq: 1, epoch: 'e2', recovered: true, id: fresh.id })
    const history = await sent(again, 'history')
    again.push({ type: 'history', room: 'team', messages: [chat(1, 'new one')], more: false, id: history.id })
    await until(() => bodies(room).join() === 'new one', `the new epoch's page (${bodies(room)})`)
    expect(client.state).toBe('open')
  })
})
