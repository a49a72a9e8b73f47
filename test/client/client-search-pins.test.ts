import { afterAll, beforeAll, expect, test as bunTest } from 'bun:test'
import { ChatClient, ChatError } from '../../client/src/index'
import { testNodes } from '../helpers/nodes'
import { needService } from '../helpers/services'
import { freshDatabase } from '../helpers/postgres'
import { until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'

/** The client's search and pins (v3) against a real server: PostgreSQL for search, a moderator for pins. */

const API_KEY = 'client-search-key-0123456789abcdef'
const { uid, node, api } = testNodes(API_KEY)
const FAST = { reconnect: { initialMs: 50, maxMs: 300 }, requestTimeoutMs: 8000, pingIntervalMs: 0 } as const
const test = await needService('PostgreSQL', 5432)

let db: Awaited<ReturnType<typeof freshDatabase>>
let s: RunningServer
const clients: ChatClient[] = []
const client = async (user: string) => {
  const c = new ChatClient({ ...FAST, url: s.ws, user, name: user })
  clients.push(c)
  await until(() => c.state === 'open', `client ${user} open`, 5000)
  return c
}

beforeAll(async () => {
  if (test === bunTest) {
    db = await freshDatabase('clientsearch')
    s = await node({ POSTGRES_DSN: db.dsn })
  }
}, 30_000)
afterAll(async () => {
  for (const c of clients) c.close()
  await s?.stop('SIGKILL')
  await db?.drop()
})

test("search: the user's rooms only, newest first, paged with the cursor; a bad query rejects with bad_request", async () => {
  const room = uid('cs')
  const other = uid('cs-other')
  const ann = await client(uid('ann'))
  const bob = await client(uid('bob'))
  await ann.joinAsMember(room)
  await bob.joinAsMember(other)
  for (const body of ['lantern one', 'lantern two', 'lantern three']) await ann.send(room, body)
  await bob.send(other, 'lantern elsewhere')

  const first = await ann.search('lantern', { limit: 2 })
  expect(first.results.map((m) => m.body)).toEqual(['lantern three', 'lantern two'])
  expect(first.results.every((m) => m.room === room && m.type === 'chat')).toBe(true)
  expect(typeof first.cursor).toBe('string')
  const rest = await ann.search('lantern', { limit: 2, cursor: first.cursor })
  expect(rest.results.map((m) => m.body)).toEqual(['lantern one'])
  expect(rest.cursor).toBeUndefined()
  expect((await bob.search('lantern')).results.map((m) => m.body)).toEqual(['lantern elsewhere'])

  const blank = await ann.search('   ').catch((e) => e)
  expect(blank).toBeInstanceOf(ChatError)
  expect(blank.code).toBe('bad_request')
})

test('pins: a moderator pins and unpins, members list them; a member may not pin (forbidden)', async () => {
  const room = uid('cp')
  const mod = await client(uid('mod'))
  const ann = await client(uid('ann'))
  expect((await api(s, 'PUT', `/rooms/${room}/roles/${mod.user!.id}`, { role: 'moderator' })).status).toBe(200)
  await mod.joinAsMember(room)
  await ann.joinAsMember(room)
  const m = await ann.send(room, 'pin me')

  const refused = await ann.pin(room, m.msg!).catch((e) => e)
  expect(refused).toBeInstanceOf(ChatError)
  expect(refused.code).toBe('forbidden')

  const pinned = await mod.pin(room, m.msg!)
  expect(pinned.seq).toBe(m.seq! + 1)
  expect((await mod.pin(room, m.msg!)).seq).toBeUndefined() // pinned already: nothing new
  const list = await ann.pins(room)
  expect(list).toHaveLength(1)
  expect(list[0]).toMatchObject({ msg: m.msg, by: { id: mod.user!.id }, message: { body: 'pin me' } })

  expect((await mod.unpin(room, m.msg!)).seq).toBe(pinned.seq! + 1)
  expect(await ann.pins(room)).toEqual([])
  // The pinned/unpinned events are of the room's sequence: the client saw no gap.
  const later = await ann.send(room, 'after the pins')
  expect(later.seq).toBe(pinned.seq! + 2)
})
