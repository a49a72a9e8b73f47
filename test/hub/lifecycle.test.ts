import { afterAll, beforeAll, describe, expect, test as bunTest } from 'bun:test'
import { testNodes } from '../helpers/nodes'
import { needService, privateRedis } from '../helpers/services'
import { freshDatabase } from '../helpers/postgres'
import { onRedisAndCluster } from '../helpers/redis-suites'
import { identityFrom } from '../../src/auth/jwt'
import { higherRole, tokenRole } from '../../src/hub/moderation'
import type { Identity } from '../../src/hub/connection'
import type { TestClient } from '../helpers/client'
import { until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'

/** Edits, deletes, reactions and replies: events of the room's log, checked against the message's state. */

const API_KEY = 'lifecycle-test-key-0123456789'
const { tag, uid, node, api, as } = testNodes(API_KEY)

async function inRoom(c: TestClient, room: string) {
  expect(await c.request({ type: 'join', room })).toMatchObject({ type: 'joined', room })
}

const CAPS = { MAX_REACTIONS_PER_MESSAGE: '2', MAX_REACTIONS_PER_USER: '1' }

/** The behaviour every engine must show; `at(i)` is the node of the i-th participant. */
function lifecycleSuite(name: string, nodes: () => RunningServer[], test: typeof bunTest) {
  const at = (i: number) => nodes()[i % nodes().length]!
  describe(name, () => {
    test('edit, react and delete are events with their own seq, seen live, and history shows the current state', async () => {
      const room = uid('r')
      const a = await as(at(0), uid('a'))
      const b = await as(at(1), uid('b'))
      await inRoom(a, room)
      await inRoom(b, room)
      const sent = await a.request({ type: 'chat', room, body: 'hello' })
      expect(sent).toMatchObject({ type: 'ack', seq: 1 })
      const msg = sent.msg as string

      const edited = await a.request({ type: 'edit', room, msg, body: 'hello!', data: { k: 1 } })
      expect(edited).toMatchObject({ type: 'ack', msg, seq: 2 })
      expect(await b.next({ type: 'edit' })).toMatchObject({
        room,
        seq: 2,
        msg,
        body: 'hello!',
        data: { k: 1 },
        by: { id: a.welcome.user.id },
      })

      expect(await b.request({ type: 'react', room, msg, reaction: '👍' })).toMatchObject({ type: 'ack', msg, seq: 3 })
      expect(await a.next({ type: 'react' })).toMatchObject({
        room,
        seq: 3,
        msg,
        reaction: '👍',
        op: 'add',
        user: { id: b.welcome.user.id },
      })
      // Again: nothing new, ack without a seq.
      const again = await b.request({ type: 'react', room, msg, reaction: '👍' })
      expect(again.type).toBe('ack')
      expect(again.seq).toBeUndefined()
      expect(await a.request({ type: 'react', room, msg, reaction: '👍' })).toMatchObject({ type: 'ack', seq: 4 })

      const h = await b.request({ type: 'history', room })
      const frames = h.messages as Record<string, unknown>[]
      expect(frames.map((f) => f.type)).toEqual(['chat', 'edit', 'react', 'react'])
      expect(frames[0]).toMatchObject({
        body: 'hello!',
        data: { k: 1 },
        edited_at: edited && expect.any(String),
        reactions: [{ reaction: '👍', count: 2, me: true }],
      })

      // unread does not count edits and reactions
      const rest = await fetch(`${at(2).url}/api/rooms/${room}/messages`, { headers: { authorization: `Bearer ${API_KEY}` } })
      const body = (await rest.json()) as { messages: Record<string, unknown>[] }
      expect(body.messages[0]).toMatchObject({ body: 'hello!', reactions: [{ reaction: '👍', count: 2, me: false }] })

      expect(await b.request({ type: 'delete', room, msg })).toMatchObject({ type: 'error', code: 'forbidden' })
      expect(await a.request({ type: 'delete', room, msg })).toMatchObject({ type: 'ack', msg, seq: 5 })
      expect(await b.next({ type: 'delete' })).toMatchObject({ room, seq: 5, msg, by: { id: a.welcome.user.id } })
      const after = (await b.request({ type: 'history', room })).messages as Record<string, unknown>[]
      expect(after[0]).toMatchObject({ type: 'chat', deleted: true })
      expect(after[0]!.body).toBeUndefined()
      expect(after[0]!.data).toBeUndefined()
      expect(await a.request({ type: 'edit', room, msg, body: 'x' })).toMatchObject({ type: 'error', code: 'not_found' })
      expect(await b.request({ type: 'react', room, msg, reaction: '👍' })).toMatchObject({ type: 'error', code: 'not_found' })
      expect(await a.request({ type: 'delete', room, msg })).toMatchObject({ type: 'error', code: 'not_found' })
      // none of the refused changes took a seq
      expect(await a.request({ type: 'chat', room, body: 'next' })).toMatchObject({ type: 'ack', seq: 6 })
      expect(await b.request({ type: 'react', room, msg, reaction: '❤' })).toMatchObject({ type: 'error', code: 'not_found' })
      a.close()
      b.close()
    })

    test('validation: not_found, forbidden, limits, bad reactions, must be live in the room', async () => {
      const room = uid('v')
      const a = await as(at(0), uid('a'))
      const b = await as(at(1), uid('b'))
      await inRoom(a, room)
      const msg = (await a.request({ type: 'chat', room, body: 'm' })).msg as string
      expect(await b.request({ type: 'react', room, msg, reaction: 'x' })).toMatchObject({ type: 'error', code: 'forbidden' })
      await inRoom(b, room)
      expect(await a.request({ type: 'edit', room, msg: 'nope', body: 'x' })).toMatchObject({ type: 'error', code: 'not_found' })
      expect(await b.request({ type: 'edit', room, msg, body: 'x' })).toMatchObject({ type: 'error', code: 'forbidden' })
      expect(await b.request({ type: 'react', room, msg, reaction: '' })).toMatchObject({ type: 'error', code: 'bad_request' })
      expect(await b.request({ type: 'react', room, msg, reaction: 'x'.repeat(33) })).toMatchObject({ type: 'error', code: 'bad_request' })
      expect(await b.request({ type: 'react', room, msg, reaction: 'r1' })).toMatchObject({ type: 'ack' })
      // MAX_REACTIONS_PER_USER=1
      expect(await b.request({ type: 'react', room, msg, reaction: 'r2' })).toMatchObject({ type: 'error', code: 'limit' })
      expect(await a.request({ type: 'react', room, msg, reaction: 'r2' })).toMatchObject({ type: 'ack' })
      // MAX_REACTIONS_PER_MESSAGE=2
      const c = await as(at(2), uid('c'))
      await inRoom(c, room)
      expect(await c.request({ type: 'react', room, msg, reaction: 'r3' })).toMatchObject({ type: 'error', code: 'limit' })
      // removing one the user does not have: ack, no event
      const none = await c.request({ type: 'unreact', room, msg, reaction: 'r1' })
      expect(none.type).toBe('ack')
      expect(none.seq).toBeUndefined()
      const off = await b.request({ type: 'unreact', room, msg, reaction: 'r1' })
      expect(off).toMatchObject({ type: 'ack', msg })
      expect(typeof off.seq).toBe('number')
      expect(await c.request({ type: 'react', room, msg, reaction: 'r3' })).toMatchObject({ type: 'ack' })
      const h = (await c.request({ type: 'history', room })).messages as Record<string, unknown>[]
      expect(h[0]!.reactions).toEqual([
        { reaction: 'r2', count: 1, me: false },
        { reaction: 'r3', count: 1, me: true },
      ])
      a.close()
      b.close()
      c.close()
    })

    test('replies carry reply_to; history thread pages only the replies; recovery replays raw events', async () => {
      const room = uid('t')
      const a = await as(at(0), uid('a'))
      await inRoom(a, room)
      const parent = (await a.request({ type: 'chat', room, body: 'parent' })).msg as string
      expect(await a.request({ type: 'chat', room, body: 'orphan', reply_to: 'nope' })).toMatchObject({ type: 'error', code: 'not_found' })
      for (let i = 0; i < 3; i++) {
        await a.request({ type: 'chat', room, body: `reply ${i}`, reply_to: parent })
        await a.request({ type: 'chat', room, body: `other ${i}` })
      }
      const t = await a.request({ type: 'history', room, thread: parent, limit: 2 })
      expect((t.messages as Record<string, unknown>[]).map((m) => m.body)).toEqual(['reply 1', 'reply 2'])
      expect((t.messages as Record<string, unknown>[])[0]!.reply_to).toBe(parent)
      expect(t.more).toBe(true)
      const older = await a.request({ type: 'history', room, thread: parent, before: (t.messages as { seq: number }[])[0]!.seq })
      expect((older.messages as Record<string, unknown>[]).map((m) => m.body)).toEqual(['reply 0'])
      expect(older.more).toBe(false)

      const joined = a.frames.find((f) => f.type === 'joined' && f.room === room)!
      await a.request({ type: 'edit', room, msg: parent, body: 'parent (edited)' })
      const b = await as(at(1), a.welcome.user.id)
      const j = await b.request({ type: 'join', room, since: 1, epoch: joined.epoch })
      expect(j).toMatchObject({ type: 'joined', recovered: true })
      const replayed = b.frames.filter((f) => f.room === room && typeof f.seq === 'number' && f.type !== 'joined')
      expect(replayed.map((f) => f.type)).toEqual(['chat', 'chat', 'chat', 'chat', 'chat', 'chat', 'edit'])
      expect(replayed.at(-1)).toMatchObject({ type: 'edit', msg: parent, body: 'parent (edited)' })
      a.close()
      b.close()
    })

    test('racing changes from two nodes: one reaction event, one delete', async () => {
      const room = uid('race')
      const user = uid('a')
      const a1 = await as(at(0), user)
      const a2 = await as(at(1), user)
      await inRoom(a1, room)
      await inRoom(a2, room)
      const msg = (await a1.request({ type: 'chat', room, body: 'race' })).msg as string
      const reacts = await Promise.all([
        a1.request({ type: 'react', room, msg, reaction: 'go' }),
        a2.request({ type: 'react', room, msg, reaction: 'go' }),
      ])
      expect(reacts.map((r) => r.type)).toEqual(['ack', 'ack'])
      expect(reacts.filter((r) => typeof r.seq === 'number').length).toBe(1)
      const deletes = await Promise.all([a1.request({ type: 'delete', room, msg }), a2.request({ type: 'delete', room, msg })])
      expect(deletes.map((r) => (r.type === 'ack' ? 'ack' : r.code)).sort()).toEqual(['ack', 'not_found'])
      a1.close()
      a2.close()
    })

    test('roles and moderation: mute, delete by a moderator, ban, unban, kick', async () => {
      const room = uid('mod')
      const other = uid('other')
      const mod = await as(at(0), uid('mod'))
      const t1 = await as(at(1), uid('t'))
      const tId = t1.welcome.user.id
      const t2 = await as(at(2), tId)
      const modId = mod.welcome.user.id
      expect((await api(at(0), 'PUT', `/rooms/${room}/roles/${modId}`, { role: 'moderator' })).status).toBe(200)
      expect((await api(at(0), 'PUT', `/rooms/${other}/roles/${tId}`, { role: 'moderator' })).status).toBe(200)
      expect((await api(at(0), 'PUT', `/rooms/${room}/roles/${modId}`, { role: 'king' })).status).toBe(400)
      // the answer to a join names the user's role there
      expect(await mod.request({ type: 'join', room })).toMatchObject({ type: 'joined', room, role: 'moderator' })
      expect(await t1.request({ type: 'join', room })).toMatchObject({ type: 'joined', room, role: 'member' })
      await inRoom(t2, room)
      // a moderator of another room is not one here
      expect(await t1.request({ type: 'mute', room, user: modId, seconds: 60 })).toMatchObject({ type: 'error', code: 'forbidden' })
      expect(await mod.request({ type: 'mute', room, user: tId, seconds: 0 })).toMatchObject({ type: 'error', code: 'bad_request' })
      expect(await mod.request({ type: 'mute', room, user: tId, seconds: -5 })).toMatchObject({ type: 'error', code: 'bad_request' })
      expect(await mod.request({ type: 'mute', room, user: tId, seconds: 1e10 })).toMatchObject({ type: 'error', code: 'bad_request' })
      expect((await api(at(1), 'POST', `/rooms/${room}/mute`, { user: tId, seconds: -1 })).status).toBe(400)
      const m = (await t1.request({ type: 'chat', room, body: 'before the mute' })).msg as string
      const muted = await mod.request({ type: 'mute', room, user: tId, seconds: 60 })
      expect(muted).toMatchObject({ type: 'ack' })
      expect(await t2.next({ type: 'moderation' })).toMatchObject({
        room,
        seq: muted.seq,
        action: 'mute',
        user: { id: tId },
        by: { id: modId },
        until: expect.any(String),
      })
      const refused = await t1.request({ type: 'chat', room, body: 'muted?' })
      expect(refused).toMatchObject({ type: 'error', code: 'forbidden' })
      expect(refused.message).toMatch(/until \d{4}-/)
      expect(await t2.request({ type: 'chat', room, body: 'muted?' })).toMatchObject({ type: 'error', code: 'forbidden' })
      expect(await mod.request({ type: 'unmute', room, user: tId })).toMatchObject({ type: 'ack' })
      await t1.next({ type: 'moderation', action: 'unmute' })
      expect(await t1.request({ type: 'chat', room, body: 'free again' })).toMatchObject({ type: 'ack' })
      // a moderator deletes someone else's message
      expect(await mod.request({ type: 'delete', room, msg: m })).toMatchObject({ type: 'ack', msg: m })
      // a message with an id, acknowledged before the ban
      const kept = await t1.request({ type: 'chat', room, body: 'before the ban', id: 'retry-1' })
      expect(kept).toMatchObject({ type: 'ack', id: 'retry-1' })
      // ban: every connection leaves; no join, no membership until unbanned
      expect(await mod.request({ type: 'ban', room, user: tId, reason: 'spam' })).toMatchObject({ type: 'ack' })
      expect(await t1.next({ type: 'left', room })).toMatchObject({ reason: 'banned' })
      expect(await t2.next({ type: 'left', room })).toMatchObject({ reason: 'banned' })
      // the banned user's retry with the same id: refused (not the original ack)
      const from = t1.frames.length
      t1.send({ type: 'chat', room, body: 'before the ban', id: 'retry-1' })
      await until(() => t1.frames.slice(from).some((f) => f.id === 'retry-1'), 'the answer to the retry')
      expect(t1.frames.slice(from).find((f) => f.id === 'retry-1')).toMatchObject({ type: 'error', code: 'forbidden' })
      expect(await mod.next({ type: 'moderation', action: 'ban' })).toMatchObject({ reason: 'spam', user: { id: tId } })
      expect(await t1.request({ type: 'join', room })).toMatchObject({ type: 'error', code: 'forbidden' })
      expect((await api(at(1), 'PUT', `/rooms/${room}/members/${tId}`, {})).status).toBe(403)
      expect(await mod.request({ type: 'unban', room, user: tId })).toMatchObject({ type: 'ack' })
      await inRoom(t1, room)
      // banned from the default room: a new connection is not made a member of it again
      expect((await api(at(0), 'POST', '/rooms/general/ban', { user: tId })).status).toBe(200)
      await t1.next({ type: 'left', room: 'general', reason: 'banned' })
      const t3 = await as(at(0), tId)
      expect(t3.welcome.rooms).not.toContain('general')
      t3.close()
      expect((await api(at(0), 'POST', '/rooms/general/unban', { user: tId })).status).toBe(200)
      // kick: leaves now, may come back
      expect(await mod.request({ type: 'kick', room, user: tId })).toMatchObject({ type: 'ack' })
      expect(await t1.next({ type: 'left', room, reason: 'kicked' })).toBeTruthy()
      await inRoom(t1, room)
      mod.close()
      t1.close()
      t2.close()
    })

    test('once a mute or ban is acknowledged, no later chat of that user is accepted, on any node', async () => {
      const room = uid('race')
      const t = await as(at(2), uid('t'))
      const tId = t.welcome.user.id
      await inRoom(t, room)
      for (let i = 0; i < 10; i++) {
        expect((await api(at(0), 'POST', `/rooms/${room}/mute`, { user: tId, seconds: 60 })).status).toBe(200)
        // at once, before the moderation event may have reached the user's node
        const r = await t.request({ type: 'chat', room, body: `muted ${i}` })
        expect(r).toMatchObject({ type: 'error', code: 'forbidden' })
        expect(r.message).toMatch(/^room: muted in .* until \d{4}-/)
        expect((await api(at(0), 'POST', `/rooms/${room}/unmute`, { user: tId })).status).toBe(200)
        await t.next({ type: 'moderation', action: 'unmute' })
      }
      const h = (await t.request({ type: 'history', room })).messages as Record<string, unknown>[]
      expect(h.filter((f) => f.type === 'chat')).toHaveLength(0)
      t.close()
    })

    test('the conversation list shows its last message as it stands: edited, then deleted', async () => {
      const room = uid('conv')
      const a = await as(at(0), uid('a'))
      const b = await as(at(1), uid('b'))
      expect(await a.request({ type: 'join', room, member: true })).toMatchObject({ type: 'joined', member: true })
      expect(await b.request({ type: 'join', room, member: true })).toMatchObject({ type: 'joined', member: true })
      const msg = (await a.request({ type: 'chat', room, body: 'secret' })).msg as string
      const lastOf = async () =>
        ((await b.request({ type: 'rooms' })).rooms as Record<string, any>[]).find((c) => c.room === room)!.last as Record<string, unknown>
      expect(await lastOf()).toMatchObject({ id: msg, body: 'secret' })
      await a.request({ type: 'edit', room, msg, body: 'not so secret' })
      expect(await lastOf()).toMatchObject({ id: msg, body: 'not so secret', edited_at: expect.any(String) })
      await a.request({ type: 'delete', room, msg })
      const last = await lastOf()
      expect(last).toMatchObject({ id: msg, deleted: true })
      expect(last.body).toBeUndefined()
      const api1 = (await (await api(at(2), 'GET', `/users/${b.welcome.user.id}/rooms`)).json()) as { rooms: Record<string, any>[] }
      expect(api1.rooms.find((c) => c.room === room)!.last).toMatchObject({ id: msg, deleted: true })
      a.close()
      b.close()
    })

    test('API: edit and delete messages, reactions for a user, moderation, disconnect', async () => {
      const room = uid('api')
      const a = await as(at(0), uid('a'))
      const aId = a.welcome.user.id
      await inRoom(a, room)
      const msg = (await a.request({ type: 'chat', room, body: 'original' })).msg as string
      const asUser = await api(at(1), 'PATCH', `/rooms/${room}/messages/${msg}`, { body: 'by the author', user: aId })
      expect(asUser.status).toBe(200)
      expect(await a.next({ type: 'edit' })).toMatchObject({ body: 'by the author', by: { id: aId } })
      expect((await api(at(1), 'PATCH', `/rooms/${room}/messages/${msg}`, { body: 'not yours', user: uid('x') })).status).toBe(403)
      expect((await api(at(1), 'PATCH', `/rooms/${room}/messages/${msg}`, { body: 'by the server' })).status).toBe(200)
      expect((await api(at(1), 'PATCH', `/rooms/${room}/messages/nope`, { body: 'x' })).status).toBe(404)
      const r = await api(at(2), 'POST', `/rooms/${room}/messages/${msg}/reactions`, { user: aId, reaction: 'api' })
      expect(await r.json()).toMatchObject({ room, msg, seq: expect.any(Number) })
      const again = (await (
        await api(at(2), 'POST', `/rooms/${room}/messages/${msg}/reactions`, { user: aId, reaction: 'api' })
      ).json()) as { seq?: number }
      expect(again.seq).toBeUndefined()
      const h = (await a.request({ type: 'history', room })).messages as Record<string, unknown>[]
      expect(h[0]).toMatchObject({ body: 'by the server', reactions: [{ reaction: 'api', count: 1, me: true }] })
      expect((await api(at(2), 'DELETE', `/rooms/${room}/messages/${msg}/reactions`, { user: aId, reaction: 'api' })).status).toBe(200)
      expect((await api(at(2), 'DELETE', `/rooms/${room}/messages/${msg}`)).status).toBe(200)
      expect((await api(at(2), 'DELETE', `/rooms/${room}/messages/${msg}`)).status).toBe(404)
      expect((await api(at(0), 'POST', `/rooms/${room}/mute`, { user: aId })).status).toBe(400)
      const mute = await api(at(0), 'POST', `/rooms/${room}/mute`, { user: aId, seconds: 30 })
      expect(await mute.json()).toMatchObject({ action: 'mute', seq: expect.any(Number) })
      expect(await a.next({ type: 'moderation', action: 'mute' })).toMatchObject({ by: { id: 'server' } })
      expect(await a.request({ type: 'chat', room, body: 'x' })).toMatchObject({ type: 'error', code: 'forbidden' })
      expect((await api(at(0), 'POST', `/rooms/${room}/unmute`, { user: aId })).status).toBe(200)
      await a.next({ type: 'moderation', action: 'unmute' })
      expect((await api(at(1), 'POST', `/users/${aId}/disconnect`, { code: 4100, reason: 'bye' })).status).toBe(200)
      const closed = await a.closed
      expect(closed).toMatchObject({ code: 4100 })
    })

    test('edits and reactions are not unread', async () => {
      const room = uid('u')
      const a = await as(at(0), uid('a'))
      const bId = uid('b')
      const b = await as(at(1), bId)
      await inRoom(a, room)
      expect(await b.request({ type: 'join', room, member: true })).toMatchObject({ type: 'joined' })
      b.close()
      const msg = (await a.request({ type: 'chat', room, body: 'one' })).msg as string
      await a.request({ type: 'edit', room, msg, body: 'one!' })
      await a.request({ type: 'react', room, msg, reaction: 'ok' })
      const again = await as(at(2), bId)
      expect(await again.next({ type: 'joined', room })).toMatchObject({ unread: 1 })
      a.close()
      again.close()
    })
  })
}

let one: RunningServer
describe('one node', () => {
  bunTest('start', async () => {
    one = await node(CAPS)
  })
})
lifecycleSuite('message lifecycle on one node', () => [one], bunTest)

describe('without PostgreSQL', () => {
  bunTest('GET /api/audit answers 404 with the reason', async () => {
    const r = await api(one, 'GET', '/audit')
    expect(r.status).toBe(404)
    expect(((await r.json()) as { reason: string }).reason).toMatch(/PostgreSQL/)
  })
})

describe('roles from the token', () => {
  bunTest('the claim `roles` maps rooms and prefixes to roles; a bad one is refused', () => {
    const id = identityFrom({ sub: 'u', roles: { lobby: 'owner', 'team-*': 'moderator', 'team-x': 'member' } })
    expect('user' in id).toBe(true)
    const identity = id as Identity
    expect(tokenRole(identity, 'lobby')).toBe('owner')
    expect(tokenRole(identity, 'team-a')).toBe('moderator')
    expect(tokenRole(identity, 'team-x')).toBe('member')
    expect(tokenRole(identity, 'elsewhere')).toBeUndefined()
    expect(higherRole(identity, 'lobby', { role: 'moderator' })).toBe('owner')
    expect(higherRole(identity, 'team-x', { role: 'moderator' })).toBe('moderator')
    expect(higherRole(identity, 'elsewhere', {})).toBe('member')
    expect(higherRole(undefined, 'elsewhere', { role: 'owner' })).toBe('owner')
    expect(identityFrom({ sub: 'u', roles: { lobby: 'king' } })).toEqual({ reason: 'malformed' })
    expect(identityFrom({ sub: 'u', roles: ['lobby'] })).toEqual({ reason: 'malformed' })
  })
})

// ---- three nodes through Redis, and through a real Redis Cluster (message state keys in the room's slot, writes fenced) ----

await onRedisAndCluster({ what: 'message lifecycle', node, env: CAPS, prefix: `lifecycle-${tag}:`, suite: lifecycleSuite })

// ---- PostgreSQL: the state of messages survives restarts ----

const pgTest = await needService('PostgreSQL', 5432)
describe('with PostgreSQL', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>
  let pg: RunningServer[] = []
  beforeAll(async () => {
    if (pgTest === bunTest) db = await freshDatabase('life')
  })
  afterAll(async () => {
    await Promise.all(pg.map((s) => s.stop('SIGKILL')))
    await db?.drop()
  })

  pgTest('start a node on PostgreSQL', async () => {
    pg = [await node({ POSTGRES_DSN: db.dsn, ...CAPS })]
  })
  lifecycleSuite('message lifecycle with PostgreSQL', () => pg, pgTest)

  pgTest('GET /api/audit: moderation rows by room and user, newest first, paged', async () => {
    const s = pg[0]!
    const room = uid('aud')
    const target = uid('t')
    for (const action of ['mute', 'unmute', 'kick'])
      expect((await api(s, 'POST', `/rooms/${room}/${action}`, { user: target, seconds: 5, reason: 'r' })).status).toBe(200)
    type Page = {
      entries: { id: number; event: string; room: string; user: string; detail: { action: string; by: string } }[]
      more: boolean
      next?: number
    }
    let page: Page = { entries: [], more: false }
    await until(async () => {
      page = (await (await api(s, 'GET', `/audit?room=${room}&user=${target}&limit=2`)).json()) as Page
      return page.more
    }, 'the audit rows written')
    expect(page.entries.map((e) => e.detail.action)).toEqual(['kick', 'unmute'])
    expect(page.entries[0]).toMatchObject({ event: 'moderation', room, user: target, detail: { by: 'server' } })
    const rest = (await (await api(s, 'GET', `/audit?room=${room}&user=${target}&limit=2&before=${page.next}`)).json()) as Page
    expect(rest.entries.map((e) => e.detail.action)).toEqual(['mute'])
    expect(rest.more).toBe(false)
    expect((await api(s, 'GET', '/audit?limit=0')).status).toBe(400)
  })

  /** Two nodes with Redis; one node (x = y) with the memory engine. */
  async function restartShows(env: Record<string, string>, restartRedis?: () => Promise<void>) {
    const start = async () => {
      if (!restartRedis) {
        const one = await node(env)
        return [one, one] as const
      }
      return Promise.all([node(env), node(env)])
    }
    let [x, y] = await start()
    const room = uid('pgr')
    const a = await as(x, uid('a'))
    const b = await as(y, uid('b'))
    await inRoom(a, room)
    await inRoom(b, room)
    const m1 = (await a.request({ type: 'chat', room, body: 'one', data: { v: 1 } })).msg as string
    const m2 = (await a.request({ type: 'chat', room, body: 'two' })).msg as string
    const m3 = (await a.request({ type: 'chat', room, body: 'three' })).msg as string
    expect(await a.request({ type: 'edit', room, msg: m1, body: 'one (edited)', data: { v: 2 } })).toMatchObject({ type: 'ack' })
    expect(await a.request({ type: 'delete', room, msg: m2 })).toMatchObject({ type: 'ack' })
    expect(await b.request({ type: 'react', room, msg: m3, reaction: 'yes' })).toMatchObject({ type: 'ack' })
    expect(await a.request({ type: 'react', room, msg: m3, reaction: 'yes' })).toMatchObject({ type: 'ack' })
    expect(await a.request({ type: 'unreact', room, msg: m3, reaction: 'yes' })).toMatchObject({ type: 'ack' })
    const bId = b.welcome.user.id
    a.close()
    b.close()
    await until(
      async () => Number((await db.sql`select count(*) as n from messages where room = ${room}`)[0]!.n) === 8,
      'the events archived',
    )
    await Promise.all([...new Set([x, y])].map((s) => s.stop('SIGKILL')))
    if (restartRedis) await restartRedis()
    ;[x, y] = await start()
    const b2 = await as(x, bId)
    const h = (await b2.request({ type: 'history', room })).messages as Record<string, unknown>[]
    expect(h.map((f) => f.type)).toEqual(['chat', 'chat', 'chat', 'edit', 'delete', 'react', 'react', 'react'])
    expect(h[0]).toMatchObject({ id: m1, body: 'one (edited)', data: { v: 2 }, edited_at: expect.any(String) })
    expect(h[1]).toMatchObject({ id: m2, deleted: true })
    expect(h[1]!.body).toBeUndefined()
    expect(h[2]).toMatchObject({ id: m3, body: 'three', reactions: [{ reaction: 'yes', count: 1, me: true }] })
    // the state is checked after the restart too
    await inRoom(b2, room)
    expect(await b2.request({ type: 'react', room, msg: m2, reaction: 'x' })).toMatchObject({ type: 'error', code: 'not_found' })
    expect(await b2.request({ type: 'edit', room, msg: m1, body: 'not mine' })).toMatchObject({ type: 'error', code: 'forbidden' })
    const again = await b2.request({ type: 'react', room, msg: m3, reaction: 'yes' })
    expect(again.type).toBe('ack')
    expect(again.seq).toBeUndefined()
    expect(await b2.request({ type: 'chat', room, body: 'reply', reply_to: m1 })).toMatchObject({ type: 'ack' })
    b2.close()
    await Promise.all([...new Set([x, y])].map((s) => s.stop('SIGKILL')))
  }

  pgTest(
    'one node (memory engine) restarted: edits, deletes and reactions still shown in history and still checked',
    async () => {
      await restartShows({ POSTGRES_DSN: db.dsn })
    },
    60_000,
  )

  pgTest(
    'two nodes with Redis, all restarted and Redis emptied: the same',
    async () => {
      const redis = await privateRedis({ keepData: false })
      try {
        await restartShows({ POSTGRES_DSN: db.dsn, REDIS_URL: redis.url, REDIS_PREFIX: 'pglife:' }, async () => {
          await redis.kill()
          await redis.restart()
        })
      } finally {
        await redis.kill()
      }
    },
    60_000,
  )
})

// ---- webhooks: every change is an event for the app's backend ----

describe('webhooks', () => {
  bunTest('message.edited, reaction.added/removed, message.deleted and moderation are sent, each with its frame', async () => {
    const { webhookReceiver } = await import('../helpers/webhook-receiver')
    const r = webhookReceiver()
    try {
      const s = await node({ WEBHOOK_URL: r.url, WEBHOOK_SECRET: 'w'.repeat(32), WEBHOOK_BATCH_MS: '10' })
      const room = uid('r')
      const a = await as(s, uid('a'))
      const b = await as(s, uid('b'))
      await inRoom(a, room)
      await inRoom(b, room)
      const msg = (await a.request({ type: 'chat', room, body: 'hi' })).msg as string
      const edited = await a.request({ type: 'edit', room, msg, body: 'hi!' })
      const added = await b.request({ type: 'react', room, msg, reaction: '🎉' })
      // a change that changes nothing is no event
      await b.request({ type: 'react', room, msg, reaction: '🎉' })
      const removed = await b.request({ type: 'unreact', room, msg, reaction: '🎉' })
      expect((await api(s, 'POST', `/rooms/${room}/mute`, { user: b.welcome.user.id, seconds: 30, reason: 'calm down' })).status).toBe(200)
      const deleted = await a.request({ type: 'delete', room, msg })
      const types = ['message.edited', 'reaction.added', 'reaction.removed', 'moderation', 'message.deleted']
      await until(() => types.every((t) => r.delivered().some((e) => e.type === t)), 'every lifecycle webhook', 10_000)
      const ev = r.delivered().filter((e) => e.room === room && types.includes(e.type))
      expect(ev.map((e) => e.type)).toEqual(types)
      const [e1, e2, e3, e4, e5] = ev
      expect(e1).toMatchObject({ user: { id: a.welcome.user.id }, msg, message: { type: 'edit', seq: edited.seq, msg, body: 'hi!' } })
      expect(e2).toMatchObject({
        user: { id: b.welcome.user.id },
        msg,
        reaction: '🎉',
        message: { type: 'react', seq: added.seq, op: 'add' },
      })
      expect(e3).toMatchObject({ msg, reaction: '🎉', message: { type: 'react', seq: removed.seq, op: 'remove' } })
      expect(e4).toMatchObject({
        action: 'mute',
        user: { id: b.welcome.user.id },
        by: { id: 'server' },
        reason: 'calm down',
        until: expect.any(String),
        message: { type: 'moderation', action: 'mute' },
      })
      expect(e5).toMatchObject({ msg, message: { type: 'delete', seq: deleted.seq, msg } })
      a.close()
      b.close()
    } finally {
      r.stop()
    }
  })
})
