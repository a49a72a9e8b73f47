import { afterAll, beforeAll, expect, test } from 'bun:test'
import { ChatClient, ChatError } from '../../client/src/index'
import type { ErrorFrame } from '../../client/src/index'
import { testNodes } from '../helpers/nodes'
import { until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'

/** The client's threads and scheduled messages (v4) against a real server. */

const { uid, node } = testNodes('client-threads-key-0123456789abcdef')
const FAST = { reconnect: { initialMs: 50, maxMs: 300 }, requestTimeoutMs: 8000, pingIntervalMs: 0 } as const

let s: RunningServer
const clients: ChatClient[] = []
const client = async (user: string) => {
  const c = new ChatClient({ ...FAST, url: s.ws, user, name: user })
  clients.push(c)
  await until(() => c.state === 'open', `client ${user} open`, 5000)
  return c
}
beforeAll(async () => {
  s = await node()
}, 30_000)
afterAll(async () => {
  for (const c of clients) c.close()
  await s?.stop('SIGKILL')
})

test('threads(): the roots with count and unread; readThread() moves the thread marker only; history carries thread', async () => {
  const room = uid('ct')
  const a = await client(uid('a'))
  const b = await client(uid('b'))
  await a.joinAsMember(room)
  await b.joinAsMember(room)
  const root = await a.send(room, 'root')
  await b.reply(room, root.msg!, 'one')
  const two = await b.reply(room, root.msg!, 'two')
  const t = await a.threads()
  expect(t.more).toBe(false)
  expect(t.threads.map((x) => [x.msg, x.count, x.unread])).toEqual([[root.msg!, 2, 2]])
  expect(t.threads[0]!.root.thread?.participants.map((p) => p.id)).toEqual([b.user!.id])
  await a.readThread(room, root.msg!, two.seq!)
  expect((await a.threads({ room })).threads[0]!.unread).toBe(0)
  const page = await a.history(room)
  expect(page.messages.find((m) => m.id === root.msg)!.thread?.count).toBe(2)
  await expect(a.threads({ before: 'not a time' })).rejects.toBeInstanceOf(ChatError)
})

test('send_at: the ack names the scheduled message; scheduled() lists it; unschedule() cancels; a refused one is an error event', async () => {
  const room = uid('cs')
  const a = await client(uid('a'))
  const b = await client(uid('b'))
  await a.joinAsMember(room)
  await b.joinAsMember(room)
  const at = new Date(Date.now() + 60_000)
  const ack = await a.send(room, 'later', undefined, { send_at: at })
  expect(ack.scheduled).toBeString()
  expect(ack.send_at).toBe(at.toISOString())
  expect(await a.scheduled()).toEqual([{ scheduled: ack.scheduled!, room, body: 'later', send_at: at.toISOString() }])
  await a.unschedule(ack.scheduled!)
  expect(await a.scheduled()).toEqual([])
  await expect(a.unschedule(ack.scheduled!)).rejects.toMatchObject({ code: 'not_found' })
  await expect(a.send(room, 'past', undefined, { send_at: new Date(Date.now() - 1000) })).rejects.toMatchObject({ code: 'bad_request' })

  // A scheduled dm to a user who blocks the sender by then: an `error` event naming it.
  const d = await a.dm(b.user!.id, 'soon', undefined, { send_at: new Date(Date.now() + 800) })
  await b.block(a.user!.id)
  const errors: ErrorFrame[] = []
  a.on('error', (e) => errors.push(e))
  await until(() => errors.some((e) => e.scheduled === d.scheduled), 'the refusal of the scheduled dm', 5000)
  expect(errors.find((e) => e.scheduled === d.scheduled)!.code).toBe('forbidden')
})
