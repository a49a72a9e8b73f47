import { afterAll, beforeAll, expect, test } from 'bun:test'
import { ChatClient, ChatError } from '../../client/src/index'
import type { PollClosedEvent, SettingsEvent, VoteEvent } from '../../client/src/index'
import { testNodes } from '../helpers/nodes'
import { until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'

/** The client's polls and slow mode (v4) against a real server. */

const API_KEY = 'client-polls-key-0123456789abcdef'
const { uid, node, api } = testNodes(API_KEY)
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
afterAll(() => {
  for (const c of clients) c.close()
})

test('sendPoll, vote, closePoll: the events come typed, in order; a vote on a closed poll rejects with closed', async () => {
  const room = uid('cp')
  const ann = await client(uid('ann'))
  const bob = await client(uid('bob'))
  await ann.joinAsMember(room)
  await bob.joinAsMember(room)
  const votes: VoteEvent[] = []
  const closes: PollClosedEvent[] = []
  ann.on('vote', (v) => votes.push(v))
  ann.on('poll_closed', (c) => closes.push(c))
  const { msg } = await ann.sendPoll(room, 'lunch', { question: 'Where?', options: ['here', 'there'] })
  await bob.vote(room, msg!, [1])
  await ann.vote(room, msg!, [1])
  await bob.vote(room, msg!, [0])
  await until(() => votes.length === 3, 'three votes', 5000)
  expect(votes.map((v) => v.tallies)).toEqual([
    [0, 1],
    [0, 2],
    [1, 1],
  ])
  expect(votes[0]!.user?.id).toBe(bob.user?.id)
  const page = await bob.history(room)
  const poll = page.messages.find((m) => m.type === 'chat' && m.id === msg)
  expect(poll && poll.type === 'chat' ? poll.poll : undefined).toMatchObject({ mine: [0], options: [{ votes: 1 }, { votes: 1 }] })
  await ann.closePoll(room, msg!)
  await until(() => closes.length === 1, 'poll_closed', 5000)
  expect(closes[0]!.tallies).toEqual([1, 1])
  const refused = await bob.vote(room, msg!, [1]).catch((e) => e)
  expect(refused).toBeInstanceOf(ChatError)
  expect(refused.code).toBe('closed')
})

test('setSettings: slow mode; a send too soon rejects with slow_mode and retryAfter', async () => {
  const room = uid('cs')
  const owner = await client(uid('own'))
  const m = await client(uid('mem'))
  expect((await api(s, 'PUT', `/rooms/${room}/roles/${owner.user!.id}`, { role: 'owner' })).status).toBe(200)
  await owner.joinAsMember(room)
  await m.joinAsMember(room)
  const seen: SettingsEvent[] = []
  m.on('settings', (e) => seen.push(e))
  await owner.setSettings(room, { slow_mode_s: 60 })
  await until(() => seen.length === 1, 'settings event', 5000)
  expect(seen[0]).toMatchObject({ slow_mode_s: 60, room })
  await m.send(room, 'one')
  const slowed = await m.send(room, 'two').catch((e) => e)
  expect(slowed).toBeInstanceOf(ChatError)
  expect(slowed.code).toBe('slow_mode')
  expect(slowed.retryAfter).toBeGreaterThan(50)
  await owner.send(room, 'owners are exempt')
  await owner.send(room, 'twice')
  const denied = await m.setSettings(room, { slow_mode_s: 0 }).catch((e) => e)
  expect(denied.code).toBe('forbidden')
})
