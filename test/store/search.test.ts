import { afterAll, beforeAll, describe, expect, test as bunTest } from 'bun:test'
import { testNodes } from '../helpers/nodes'
import { needService } from '../helpers/services'
import { freshDatabase } from '../helpers/postgres'
import type { TestClient } from '../helpers/client'
import type { RunningServer } from '../helpers/server'
import { postgresStore } from '../../src/store/postgres'
import type { PostgresStore } from '../../src/store/postgres'
import { memoryMembers } from '../../src/members/memory'
import { createSearch } from '../../src/hub/search'
import { chatTail } from '../../src/protocol/server-frames'

/** Search in PostgreSQL: the user's rooms only, deleted never, edited as they stand, paged newest first. */

const API_KEY = 'search-test-key-0123456789abcdef'
const { uid, node, api, as } = testNodes(API_KEY)

type Result = { id: string; room: string; body?: string; edited_at?: string; from: { id: string } }

async function member(c: TestClient, room: string) {
  expect(await c.request({ type: 'join', room, member: true })).toMatchObject({ type: 'joined', room })
}

describe('without PostgreSQL', () => {
  let s: RunningServer
  bunTest(
    'start',
    async () => {
      s = await node()
    },
    30_000,
  )
  bunTest('search answers unavailable, naming POSTGRES_DSN (frame and API)', async () => {
    const a = await as(s, uid('a'))
    const r = await a.request({ type: 'search', q: 'hello' })
    expect(r).toMatchObject({ type: 'error', code: 'unavailable' })
    expect(r.message).toMatch(/search needs PostgreSQL \(POSTGRES_DSN\)/)
    const http = await api(s, 'GET', `/search?user=${a.welcome.user.id}&q=hello`)
    expect(http.status).toBe(503)
    expect(await http.json()).toMatchObject({ error: 'unavailable', reason: expect.stringMatching(/POSTGRES_DSN/) })
    a.close()
  })
})

const pgTest = await needService('PostgreSQL', 5432)
describe('with PostgreSQL', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>
  let s: RunningServer
  let a: TestClient
  let b: TestClient
  const room1 = uid('s1')
  const room2 = uid('s2')
  const room3 = uid('s3')
  const ids: Record<string, string> = {}
  beforeAll(async () => {
    if (pgTest === bunTest) db = await freshDatabase('search')
  })
  afterAll(async () => {
    a?.close()
    b?.close()
    await s?.stop('SIGKILL')
    await db?.drop()
  })

  const find = async (c: TestClient, q: string, more: Record<string, unknown> = {}) => {
    const r = await c.request({ type: 'search', q, ...more })
    expect(r).toMatchObject({ type: 'search' })
    return r as unknown as { results: Result[]; cursor?: string }
  }
  const bodies = async (c: TestClient, q: string, more: Record<string, unknown> = {}) => (await find(c, q, more)).results.map((r) => r.body)

  pgTest(
    'start, and messages in three rooms',
    async () => {
      s = await node({ POSTGRES_DSN: db.dsn })
      a = await as(s, uid('a'))
      b = await as(s, uid('b'))
      await member(a, room1)
      await member(a, room2)
      await member(b, room3)
      const say = async (c: TestClient, room: string, key: string, body: string) =>
        (ids[key] = (await c.request({ type: 'chat', room, body })).msg as string)
      await say(a, room1, 'hello', 'Hello world, how are you')
      await say(a, room1, 'url', 'docs at https://example.com/docs/page?id=42 now')
      await say(a, room1, 'file', 'attached foo.png here')
      await say(a, room1, 'ru', 'Привет мир, как дела')
      await say(a, room1, 'ja', '東京タワーに行きました')
      await say(a, room2, 'partial', 'an unbelievable result')
      await say(a, room1, 'secret', 'secretword to be deleted')
      await say(a, room1, 'edit', 'oldword before the edit')
      await say(b, room3, 'other', 'hello from a room a is not in')
      expect(await a.request({ type: 'delete', room: room1, msg: ids.secret! })).toMatchObject({ type: 'ack' })
      expect(await a.request({ type: 'edit', room: room1, msg: ids.edit!, body: 'newword after the edit' })).toMatchObject({ type: 'ack' })
    },
    30_000,
  )

  pgTest('words, partial words, URLs, file names, Cyrillic and Japanese', async () => {
    expect(await bodies(a, 'hello')).toEqual(['Hello world, how are you'])
    expect(await bodies(a, 'WORLD')).toEqual(['Hello world, how are you'])
    // two words in any order
    expect(await bodies(a, 'you hello')).toEqual(['Hello world, how are you'])
    // a prefix (tsquery) and a part inside a word (trigrams)
    expect(await bodies(a, 'unbeli')).toEqual(['an unbelievable result'])
    expect(await bodies(a, 'believ')).toEqual(['an unbelievable result'])
    expect(await bodies(a, 'example.com/docs')).toEqual(['docs at https://example.com/docs/page?id=42 now'])
    expect(await bodies(a, 'https://example.com/docs/page?id=42')).toEqual(['docs at https://example.com/docs/page?id=42 now'])
    expect(await bodies(a, 'foo.png')).toEqual(['attached foo.png here'])
    expect(await bodies(a, '.png')).toEqual(['attached foo.png here'])
    expect(await bodies(a, 'мир')).toEqual(['Привет мир, как дела'])
    expect(await bodies(a, 'привет')).toEqual(['Привет мир, как дела'])
    // a Japanese word inside a run of characters (one lexeme for `simple`): found by trigrams, even with two characters
    expect(await bodies(a, 'タワー')).toEqual(['東京タワーに行きました'])
    expect(await bodies(a, '東京')).toEqual(['東京タワーに行きました'])
    // wildcards are literal
    expect(await bodies(a, '%')).toEqual([])
    expect(await bodies(a, 'h_llo')).toEqual([])
    // each result is the message frame
    const [hit] = (await find(a, 'hello')).results
    expect(hit).toMatchObject({
      type: 'chat',
      id: ids.hello,
      room: room1,
      from: { id: a.welcome.user.id },
      seq: expect.any(Number),
      ts: expect.any(String),
    })
  })

  pgTest("a query the word parser drops whole (an emoji, `:)`) matches where it appears as it is, in the user's rooms only", async () => {
    const room = uid('em')
    await member(a, room)
    for (const body of ['we shipped it 🎉', 'nice :)', 'no party here', '🎉🎉 double', 'learning C++ today', '#release tomorrow'])
      expect(await a.request({ type: 'chat', room, body })).toMatchObject({ type: 'ack' })
    expect(await bodies(a, '🎉', { room })).toEqual(['🎉🎉 double', 'we shipped it 🎉'])
    expect(await bodies(a, '🎉')).toEqual(['🎉🎉 double', 'we shipped it 🎉'])
    expect(await bodies(a, ':)', { room })).toEqual(['nice :)'])
    expect(await bodies(a, '👍')).toEqual([])
    expect(await bodies(a, 'C++', { room })).toEqual(['learning C++ today'])
    expect(await bodies(a, '#release', { room })).toEqual(['#release tomorrow'])
    // Not a member of the room: not found.
    expect(await bodies(b, '🎉')).toEqual([])
  })

  pgTest("only the user's rooms: another room's message is never found; room filter needs membership", async () => {
    expect(await bodies(b, 'hello')).toEqual(['hello from a room a is not in'])
    expect((await bodies(a, 'hello')).includes('hello from a room a is not in')).toBe(false)
    expect(await bodies(b, 'unbelievable')).toEqual([])
    const r = await b.request({ type: 'search', q: 'hello', room: room1 })
    expect(r).toMatchObject({ type: 'error', code: 'forbidden' })
    expect(await bodies(a, 'hello', { room: room2 })).toEqual([])
    expect(await bodies(a, 'unbelievable', { room: room2 })).toEqual(['an unbelievable result'])
    // a membership that ends takes its room out of the user's searches
    expect(await a.request({ type: 'leave', room: room2, member: true })).toMatchObject({ type: 'left' })
    expect(await bodies(a, 'unbelievable')).toEqual([])
    await member(a, room2)
    expect(await bodies(a, 'unbelievable')).toEqual(['an unbelievable result'])
  })

  pgTest('deleted messages never match; edited ones match as they stand', async () => {
    expect(await bodies(a, 'secretword')).toEqual([])
    expect(await bodies(a, 'ecretwor')).toEqual([])
    expect(await bodies(a, 'oldword')).toEqual([])
    const r = (await find(a, 'newword')).results
    expect(r).toHaveLength(1)
    expect(r[0]).toMatchObject({ id: ids.edit, body: 'newword after the edit', edited_at: expect.any(String) })
    // reactions too, with `me` for the one searching
    expect(await a.request({ type: 'react', room: room1, msg: ids.edit!, reaction: 'ok' })).toMatchObject({ type: 'ack' })
    expect((await find(a, 'newword')).results[0]).toMatchObject({ reactions: [{ reaction: 'ok', count: 1, me: true }] })
  })

  pgTest('newest first, paged by an opaque cursor; from and before', async () => {
    const room = uid('pg')
    await member(a, room)
    await member(b, room)
    const sent: string[] = []
    for (let i = 0; i < 5; i++) sent.push((await (i === 2 ? b : a).request({ type: 'chat', room, body: `zebra item ${i}` })).msg as string)
    const seen: string[] = []
    let cursor: string | undefined
    const sizes: number[] = []
    do {
      const p = await find(a, 'zebra', { room, limit: 2, ...(cursor ? { cursor } : {}) })
      sizes.push(p.results.length)
      seen.push(...p.results.map((r) => r.id))
      cursor = p.cursor
    } while (cursor)
    expect(sizes).toEqual([2, 2, 1])
    expect(seen).toEqual([...sent].reverse())
    expect((await find(a, 'zebra', { room, from: b.welcome.user.id })).results.map((r) => r.id)).toEqual([sent[2]!])
    // before a message id: older than it; before a time: older than it
    expect((await find(a, 'zebra', { room, before: sent[2] })).results.map((r) => r.id)).toEqual([sent[1]!, sent[0]!])
    expect((await find(a, 'zebra', { room, before: '2000-01-01T00:00:00Z' })).results).toEqual([])
    expect((await find(a, 'zebra', { room, before: new Date(Date.now() + 60_000).toISOString() })).results).toHaveLength(5)
  })

  pgTest('bad input: bad_request naming the field', async () => {
    const bad = async (frame: Record<string, unknown>, field: RegExp) => {
      const r = await a.request({ type: 'search', ...frame })
      expect(r).toMatchObject({ type: 'error', code: 'bad_request' })
      expect(r.message).toMatch(field)
    }
    await bad({ q: '' }, /^q: /)
    await bad({ q: '   ' }, /^q: must not be blank/)
    await bad({}, /^q: is required/)
    await bad({ q: 'x'.repeat(201) }, /^q: must be at most 200/)
    await bad({ q: 'x', cursor: 'garbage' }, /^cursor: /)
    await bad({ q: 'x', limit: 0 }, /^limit: /)
    await bad({ q: 'x', before: 'no-such-message' }, /^before: no message/)
    await bad({ q: 'x', before: '2024-13-45' }, /^before: /)
    await bad({ q: 'x', room: 'bad room!' }, /^room: /)
  })

  pgTest('GET /api/search: the same answer as JSON, with the API key', async () => {
    const user = a.welcome.user.id
    const r = await api(s, 'GET', `/search?user=${user}&q=${encodeURIComponent('foo.png')}`)
    expect(r.status).toBe(200)
    const body = (await r.json()) as { type: string; results: Result[]; cursor?: string }
    expect(body).toMatchObject({ type: 'search', results: [{ id: ids.file, body: 'attached foo.png here' }] })
    expect(body.cursor).toBeUndefined()
    const paged = (await (await api(s, 'GET', `/search?user=${user}&q=zebra&limit=2`)).json()) as { results: Result[]; cursor: string }
    expect(paged.results).toHaveLength(2)
    const next = (await (await api(s, 'GET', `/search?user=${user}&q=zebra&limit=2&cursor=${paged.cursor}`)).json()) as {
      results: Result[]
    }
    expect(next.results.map((x) => x.id).some((id) => paged.results.some((p) => p.id === id))).toBe(false)
    expect((await api(s, 'GET', `/search?user=${b.welcome.user.id}&q=foo.png`).then((x) => x.json())) as unknown).toMatchObject({
      results: [],
    })
    const noQ = await api(s, 'GET', `/search?user=${user}`)
    expect(noQ.status).toBe(400)
    expect(JSON.stringify(await noQ.json())).toMatch(/q/)
    const badCursor = await api(s, 'GET', `/search?user=${user}&q=x&cursor=nope`)
    expect(badCursor.status).toBe(400)
    expect(await badCursor.json()).toMatchObject({ error: 'bad_request', reason: expect.stringMatching(/^cursor: /) })
    expect((await fetch(`${s.url}/api/search?user=${user}&q=x`)).status).toBe(401)
  })

  pgTest('memberships outside PostgreSQL (memory or Redis members engine): the room list is passed to the query', async () => {
    let store: PostgresStore | undefined
    try {
      store = await postgresStore({ dsn: db.dsn, nodeId: 'search-test' })
      const members = memoryMembers()
      const mine = uid('mine')
      const theirs = uid('theirs')
      await members.add(mine, { id: 'u1', name: 'U1' }, 0, 100)
      const ts = new Date().toISOString()
      const from = { id: 'u2', name: 'U2' }
      const edited = uid('m')
      await store.save([
        { type: 'chat', id: uid('m'), room: mine, from, body: 'giraffe in my room', ts, seq: 1 },
        { type: 'chat', id: uid('m'), room: theirs, from, body: 'giraffe elsewhere', ts, seq: 1 },
        { type: 'chat', id: edited, room: mine, from, body: 'a zebra', ts, seq: 2 },
        { type: 'edit', id: uid('e'), room: mine, from, body: 'an okapi, edited', ts, seq: 3, extra: { msg: edited } },
        {
          type: 'react',
          id: uid('r'),
          room: mine,
          from: { id: 'u1', name: 'U1' },
          ts,
          seq: 4,
          extra: { msg: edited, reaction: 'wow', op: 'add' },
        },
      ])
      // No broker state (a node that restarted): the state read with the rows shows them as they stand.
      const search = createSearch({ store, members, broker: {} })
      const r = await search.search('u1', { q: 'giraffe' })
      expect(r.results.map((f) => JSON.parse(f).body)).toEqual(['giraffe in my room'])
      expect((await search.search('u1', { q: 'zebra' })).results).toEqual([])
      const [okapi] = (await search.search('u1', { q: 'okapi' })).results
      expect(JSON.parse(okapi!)).toMatchObject({
        id: edited,
        body: 'an okapi, edited',
        edited_at: expect.any(String),
        reactions: [{ reaction: 'wow', count: 1, me: true }],
      })
      expect((await search.search('nobody', { q: 'giraffe' })).results).toEqual([])
      // The frame that comes back is the stored event's frame
      expect(JSON.parse(r.results[0]!)).toMatchObject(
        JSON.parse(
          `{"type":"chat","seq":1${chatTail({ id: JSON.parse(r.results[0]!).id, room: mine, from, body: 'giraffe in my room', ts })}`,
        ),
      )
    } finally {
      await store?.close()
    }
  })
})

describe('without pg_trgm (a role that may not create extensions)', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>> | undefined
  const role = `chat_notrgm_${process.pid}`
  afterAll(async () => {
    await db?.drop()
    const admin = (await import('postgres')).default('postgres://postgres@127.0.0.1:5432/test', { max: 1, onnotice: () => {} })
    await admin.unsafe(`drop role if exists ${role}`)
    await admin.end({ timeout: 1 })
  })
  pgTest(
    'the migration succeeds, the server logs why, and substrings are still found (unindexed)',
    async () => {
      db = await freshDatabase('notrgm')
      // Not the database's owner and no CREATE on it: CREATE EXTENSION (even a trusted one) is refused.
      await db.sql.unsafe(`create role ${role} login`)
      await db.sql.unsafe(`grant usage, create on schema public to ${role}`)
      const s = await node({ POSTGRES_DSN: `postgres://${role}@127.0.0.1:5432/${db.name}` })
      const [ext] = await db.sql<{ n: number }[]>`select count(*)::int as n from pg_extension where extname = 'pg_trgm'`
      expect(ext!.n).toBe(0)
      const [idx] = await db.sql<{ n: number }[]>`select count(*)::int as n from pg_indexes where indexname = 'messages_search_trgm'`
      expect(idx!.n).toBe(0)
      expect(s.logs.some((l) => String(l.msg).includes('pg_trgm is not available'))).toBe(true)
      const room = uid('nt')
      const user = uid('u')
      expect((await api(s, 'PUT', `/rooms/${room}/members/${user}`, { name: 'U' })).status).toBeLessThan(300)
      expect((await api(s, 'POST', '/publish', { room, body: 'an unbelievable thing at https://example.org/x.png' })).status).toBe(200)
      const r = (await (await api(s, 'GET', `/search?user=${user}&q=believ`)).json()) as { results: Result[] }
      expect(r.results.map((x) => x.body)).toEqual(['an unbelievable thing at https://example.org/x.png'])
      const url = (await (await api(s, 'GET', `/search?user=${user}&q=${encodeURIComponent('example.org/x.png')}`)).json()) as {
        results: Result[]
      }
      expect(url.results).toHaveLength(1)
      await s.stop('SIGKILL')
    },
    30_000,
  )
})
