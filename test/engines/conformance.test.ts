// The engine contract: every engine (memory, memory with PostgreSQL, Redis, a Redis Cluster)
// keeps the same promises of the sequenced room log. A rule written twice (TypeScript for
// memory, Lua for Redis) that says two things fails here. New rules are written here first.
import { afterAll, beforeAll, describe, expect } from 'bun:test'
import type { Accepted, EventDraft } from '../../src/broker/types'
import { UNREAD_CAP, roomTopic } from '../../src/broker/types'
import { Refused, SERVER_ID, current } from '../../src/broker/message-rules'
import { CHAT_HEAD, DM_HEAD, eventHead, eventSeq, eventTail } from '../../src/protocol/server-frames'
import type { EventType, RoomEvent, User } from '../../src/protocol/server-frames'
import { presenceEvents } from '../../src/hub/presence-events'
import { LIMITS, engines } from './engines'
import type { EngineUnderTest } from './engines'

const { factories, stop } = await engines()
afterAll(stop)

const alice: User = { id: 'alice', name: 'Alice' }
const bob: User = { id: 'bob', name: 'Bob' }
const mod: User = { id: 'mo', name: 'Mo' }
const server: User = { id: SERVER_ID, name: 'server' }

let rooms = 0
const newRoom = () => `conf-${process.pid}-${Date.now().toString(36)}-${rooms++}`

function event(type: EventType, room: string, from: User, fields: Partial<RoomEvent> = {}): RoomEvent {
  return { type, id: Bun.randomUUIDv7(), room, from, ts: new Date().toISOString(), ...fields }
}
const draftOf = (e: RoomEvent, moderator?: boolean): EventDraft => ({
  event: e,
  head: eventHead(e.type),
  tail: eventTail(e),
  ...(moderator ? { moderator } : {}),
})
const chat = (room: string, from: User, body = 'hi', reply_to?: string) =>
  draftOf(event('chat', room, from, { body, ...(reply_to ? { extra: { reply_to } } : {}) }))
const dm = (room: string, from: User, to: string, body = 'psst') => draftOf(event('dm', room, from, { body, extra: { to } }))
const edit = (room: string, by: User, msg: string, body = 'edited', moderator?: boolean) =>
  draftOf(event('edit', room, by, { extra: { msg }, body }), moderator)
const del = (room: string, by: User, msg: string, moderator?: boolean) => draftOf(event('delete', room, by, { extra: { msg } }), moderator)
const react = (room: string, by: User, msg: string, reaction: string, op: 'add' | 'remove' = 'add') =>
  draftOf(event('react', room, by, { extra: { msg, reaction, op } }))
const pin = (room: string, by: User, msg: string, type: 'pinned' | 'unpinned' = 'pinned', moderator = true) =>
  draftOf(event(type, room, by, { extra: { msg } }), moderator)
const LINK = { url: 'https://example.com/a', title: 'A & "B"', description: 'about A', site_name: 'Example' }
const preview = (room: string, msg: string, p: object = LINK, by: User = server) =>
  draftOf(event('preview', room, by, { extra: { msg, preview: p } }))
const moderation = (room: string, by: User, action: string, target: User, seconds?: number) =>
  draftOf(
    event('moderation', room, by, {
      extra: { action, user: target, ...(seconds ? { until: new Date(Date.now() + seconds * 1000).toISOString() } : {}) },
    }),
  )

/** A chat carrying a poll (its frame's `poll` as a new poll shows it: no votes, not closed, `mine` empty). */
const pollChat = (
  room: string,
  from: User,
  options: string[],
  opts: { multiple?: boolean; anonymous?: boolean; closes_at?: string } = {},
) =>
  draftOf(
    event('chat', room, from, {
      body: 'poll',
      extra: {
        poll: {
          question: 'which?',
          options: options.map((text) => ({ text, votes: 0 })),
          multiple: opts.multiple ?? false,
          anonymous: opts.anonymous ?? false,
          closed: false,
          mine: [],
          ...(opts.closes_at ? { closes_at: opts.closes_at } : {}),
        },
      },
    }),
  )
/** A vote: its tallies are the sequencer's to fill in (TALLIES_SLOT). */
const vote = (room: string, by: User, msg: string, options: number[], anonymous = false) =>
  draftOf(event('vote', room, by, { extra: { msg, options, tallies: null, ...(anonymous ? { anonymous: true } : {}) } }))
const closePoll = (room: string, by: User, msg: string, moderator?: boolean) =>
  draftOf(event('poll_closed', room, by, { extra: { msg, tallies: null } }), moderator)
const settings = (room: string, by: User, slow_mode_s: number, moderator = true) =>
  draftOf(event('settings', room, by, { extra: { slow_mode_s } }), moderator)
const chatAs = (room: string, from: User, moderator: boolean) => ({ ...chat(room, from, 'as moderator'), moderator })

/** The refusal of an append (Refused), or undefined when it was accepted. */
async function refusal(p: Promise<Accepted>): Promise<Refused | undefined> {
  try {
    await p
    return undefined
  } catch (err) {
    if (err instanceof Refused) return err
    throw err
  }
}

/** The refusal an append ends in (its code), or 'ok'. */
async function outcome(p: Promise<Accepted>): Promise<string> {
  try {
    await p
    return 'ok'
  } catch (err) {
    if (err instanceof Refused) return err.code
    throw err
  }
}

const seqs = (frames: string[]) => frames.map(eventSeq)

for (const factory of factories) {
  const test = factory.test
  describe(`engine contract: ${factory.name}`, () => {
    let e: EngineUnderTest
    beforeAll(async () => {
      if (test === (await import('bun:test')).test.skip) return
      e = await factory.start()
    }, 60_000)
    afterAll(async () => e?.close())

    // ---- the sequence ----

    test('appends take consecutive seqs; since and page return them in order', async () => {
      const room = newRoom()
      const start = (await e.broker.position(room)).seq
      const got: number[] = []
      for (let i = 0; i < 5; i++) got.push((await e.broker.append(room, chat(room, alice, `m${i}`))).seq)
      expect(got).toEqual([1, 2, 3, 4, 5].map((n) => start + n))
      const replay = await e.broker.since(room, start)
      expect(replay.complete).toBe(true)
      expect(replay.seq).toBe(start + 5)
      expect(seqs(replay.frames)).toEqual(got)
      expect(replay.frames.map((f) => JSON.parse(f).body)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4'])
      const page = await e.broker.page(room, start + 4, 2)
      expect(seqs(page.frames)).toEqual([start + 2, start + 3])
      expect(page.more).toBe(true)
      expect((await e.broker.since(room, start + 5)).frames).toEqual([])
    })

    test('concurrent appends to one room take distinct consecutive seqs, delivered in seq order', async () => {
      const room = newRoom()
      await e.broker.watch(roomTopic(room))
      const start = (await e.broker.position(room)).seq
      const accepted = await Promise.all(
        Array.from({ length: 30 }, (_, i) => e.broker.append(room, chat(room, i % 2 ? alice : bob, `c${i}`))),
      )
      expect(accepted.map((a) => a.seq).sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => start + i + 1))
      await e.broker.caughtUp(room, start + 30)
      await waitFor(() => (e.delivered.get(roomTopic(room))?.length ?? 0) >= 30)
      expect(seqs(e.delivered.get(roomTopic(room))!)).toEqual(Array.from({ length: 30 }, (_, i) => start + i + 1))
      e.broker.unwatch(roomTopic(room))
    })

    test('appends sent at once, some refused or repeated: each has its own answer, and the accepted keep the order sent', async () => {
      const room = newRoom()
      const m = await e.broker.append(room, chat(room, alice, 'first'))
      await e.broker.append(room, moderation(room, mod, 'ban', bob))
      const start = (await e.broker.position(room)).seq
      // What a busy room's node may send together (Redis: in one call of the script).
      const sent = [
        e.broker.append(room, chat(room, alice, 'a1'), 'ka'),
        e.broker.append(room, chat(room, bob, 'banned')),
        e.broker.append(room, chat(room, alice, 'a1'), 'ka'),
        e.broker.append(room, chat(room, alice, 'reply', 'no-such-message')),
        e.broker.append(room, edit(room, alice, m.id)),
        e.broker.append(room, chat(room, alice, 'a2')),
      ]
      const outcomes = await Promise.all(sent.map(outcome))
      expect(outcomes).toEqual(['ok', 'forbidden', 'ok', 'not_found', 'ok', 'ok'])
      const [a1, , again, , edited, a2] = (await Promise.allSettled(sent)).map((x) => (x.status === 'fulfilled' ? x.value : undefined))
      expect(again).toMatchObject({ id: a1!.id, seq: a1!.seq, duplicate: true })
      expect([a1!.seq, edited!.seq, a2!.seq]).toEqual([start + 1, start + 2, start + 3])
      expect((await e.broker.position(room)).seq).toBe(start + 3)
    })

    test('readers during appends in flight see a whole log: position, since and summary agree', async () => {
      const room = newRoom()
      const base = (await e.broker.position(room)).seq
      const appends = Array.from({ length: 20 }, (_, i) => e.broker.append(room, chat(room, alice, `f${i}`)))
      for (let i = 0; i < 10; i++) {
        const [pos, replay, sum] = await Promise.all([
          e.broker.position(room),
          e.broker.since(room, base),
          e.broker.summary(room, base, 'bob'),
        ])
        // Everything up to a reader's seq is there to read.
        expect(seqs(replay.frames)).toEqual(Array.from({ length: replay.seq - base }, (_, j) => base + j + 1))
        expect(sum.unread).toBe(sum.seq - base)
        expect(pos.seq).toBeGreaterThanOrEqual(base)
        await Bun.sleep(1)
      }
      await Promise.all(appends)
      expect((await e.broker.summary(room, base, 'bob')).unread).toBe(20)
    })

    // ---- retries ----

    test('a retry with the same key answers the original ack and appends nothing', async () => {
      const room = newRoom()
      const first = await e.broker.append(room, chat(room, alice, 'once'), 'k1')
      const again = await e.broker.append(room, chat(room, alice, 'once'), 'k1')
      expect(first.duplicate).toBe(false)
      expect(again).toMatchObject({ id: first.id, seq: first.seq, duplicate: true })
      expect((await e.broker.position(room)).seq).toBe(first.seq)
    })

    test('many copies of one retry at once: one message, every copy answers its ack', async () => {
      const room = newRoom()
      const before = (await e.broker.position(room)).seq
      const copies = await Promise.all(Array.from({ length: 25 }, () => e.broker.append(room, chat(room, alice, 'burst'), 'same-key')))
      expect(copies.filter((a) => !a.duplicate)).toHaveLength(1)
      expect(new Set(copies.map((a) => a.id)).size).toBe(1)
      expect(new Set(copies.map((a) => a.seq)).size).toBe(1)
      const replay = await e.broker.since(room, before)
      expect(replay.frames).toHaveLength(1)
    })

    test('copies of a retry to a room not open yet, back to back: one message', async () => {
      for (let round = 0; round < 5; round++) {
        const room = newRoom()
        const a = e.broker.append(room, dm(room, alice, 'bob'), `dm-${round}`)
        const b = e.broker.append(room, dm(room, alice, 'bob'), `dm-${round}`)
        const [x, y] = await Promise.all([a, b])
        expect(x.id).toBe(y.id)
        expect([x.duplicate, y.duplicate].sort()).toEqual([false, true])
        expect((await e.broker.since(room, 0)).frames.filter((f) => f.startsWith(DM_HEAD))).toHaveLength(1)
      }
    })

    test('a retry key belongs to its room: the same key in another room is a new message', async () => {
      const [r1, r2] = [newRoom(), newRoom()]
      const a = await e.broker.append(r1, chat(r1, alice), 'shared')
      const b = await e.broker.append(r2, chat(r2, alice), 'shared')
      expect(b.duplicate).toBe(false)
      expect(b.id).not.toBe(a.id)
    })

    test("a retry key answers while its message is among the room's recent ones: after other messages, and for a server-sent message", async () => {
      const room = newRoom()
      const first = await e.broker.append(room, chat(room, alice, 'early'), 'late-retry')
      const api = await e.broker.append(room, chat(room, server, 'from the API'), 'api-key')
      for (let i = 0; i < LIMITS.historyLimit - 2; i++) await e.broker.append(room, chat(room, bob, `later ${i}`), `bob-${i}`)
      const again = await e.broker.append(room, chat(room, alice, 'early'), 'late-retry')
      expect(again).toMatchObject({ id: first.id, seq: first.seq, duplicate: true })
      expect(await e.broker.append(room, chat(room, server, 'from the API'), 'api-key')).toMatchObject({
        id: api.id,
        seq: api.seq,
        duplicate: true,
      })
      // A key is one author's only by its text: another key of the same author is a new message.
      expect((await e.broker.append(room, chat(room, alice, 'early'), 'late-retry-2')).duplicate).toBe(false)
    })

    test('a refused append leaves its key free: the retry is checked again', async () => {
      const room = newRoom()
      expect(await outcome(e.broker.append(room, chat(room, alice, 'x', 'no-such-message'), 'retry-after-refusal'))).toBe('not_found')
      const ok = await e.broker.append(room, chat(room, alice, 'x'), 'retry-after-refusal')
      expect(ok.duplicate).toBe(false)
    })

    // ---- the rules of a change ----

    test('edit: the author only; unknown and deleted messages are not_found', async () => {
      const room = newRoom()
      const m = await e.broker.append(room, chat(room, alice, 'first'))
      expect(await outcome(e.broker.append(room, edit(room, alice, m.id, 'second')))).toBe('ok')
      expect(await outcome(e.broker.append(room, edit(room, bob, m.id, 'hijack')))).toBe('forbidden')
      expect(await outcome(e.broker.append(room, edit(room, mod, m.id, 'mod edit', true)))).toBe('forbidden')
      expect(await outcome(e.broker.append(room, edit(room, server, m.id, 'api edit', true)))).toBe('ok')
      expect(await outcome(e.broker.append(room, edit(room, alice, 'nope')))).toBe('not_found')
      const state = (await e.broker.messages!(room, [m.id])).get(m.id)!
      expect(state).toMatchObject({ seq: m.seq, author: 'alice', body: 'api edit' })
      expect(state.edited_at).toBeString()
      await e.broker.append(room, del(room, alice, m.id))
      expect(await outcome(e.broker.append(room, edit(room, alice, m.id)))).toBe('not_found')
    })

    test("an id naming one of the room's own records (a standing, a retry key) names no message: not_found, and no state", async () => {
      const room = newRoom()
      await e.broker.append(room, chat(room, alice, 'kept'), 'k')
      await e.broker.append(room, moderation(room, mod, 'ban', bob))
      await e.broker.append(room, moderation(room, mod, 'mute', alice, 60))
      for (const id of ['~ban:bob', '~mute:alice', '~d:k', `~d:${JSON.stringify(['k'])}`]) {
        expect(await outcome(e.broker.append(room, edit(room, alice, id)))).toBe('not_found')
        expect(await outcome(e.broker.append(room, react(room, mod, id, '👍')))).toBe('not_found')
        expect(await outcome(e.broker.append(room, pin(room, mod, id)))).toBe('not_found')
        expect(await outcome(e.broker.append(room, chat(room, mod, 'reply', id)))).toBe('not_found')
        expect((await e.broker.messages!(room, [id])).size).toBe(0)
      }
    })

    test('delete: the author or a moderator; twice is not_found; a deleted message keeps no body or reactions', async () => {
      const room = newRoom()
      const m1 = await e.broker.append(room, chat(room, alice, 'one'))
      const m2 = await e.broker.append(room, chat(room, alice, 'two'))
      await e.broker.append(room, react(room, bob, m1.id, '👍'))
      expect(await outcome(e.broker.append(room, del(room, bob, m1.id)))).toBe('forbidden')
      expect(await outcome(e.broker.append(room, del(room, mod, m1.id, true)))).toBe('ok')
      expect(await outcome(e.broker.append(room, del(room, alice, m2.id)))).toBe('ok')
      expect(await outcome(e.broker.append(room, del(room, alice, m2.id)))).toBe('not_found')
      const states = await e.broker.messages!(room, [m1.id, m2.id])
      expect(states.get(m1.id)).toMatchObject({ deleted: true, reactions: {} })
      expect(states.get(m1.id)!.body).toBeUndefined()
      expect(await outcome(e.broker.append(room, react(room, bob, m1.id, '🎉')))).toBe('not_found')
      expect(await outcome(e.broker.append(room, chat(room, bob, 'reply', m1.id)))).toBe('not_found')
    })

    test('reactions: a repeat and a removal of nothing change nothing; the caps answer limit', async () => {
      const room = newRoom()
      const m = await e.broker.append(room, chat(room, alice))
      const first = await e.broker.append(room, react(room, bob, m.id, 'a'))
      const repeat = await e.broker.append(room, react(room, bob, m.id, 'a'))
      expect(repeat).toMatchObject({ noop: true, seq: first.seq })
      expect((await e.broker.append(room, react(room, bob, m.id, 'zz', 'remove'))).noop).toBe(true)
      expect(await outcome(e.broker.append(room, react(room, bob, m.id, 'b')))).toBe('ok')
      // LIMITS.perUser (2) reactions of one user on one message.
      expect(await outcome(e.broker.append(room, react(room, bob, m.id, 'c')))).toBe('limit')
      expect(await outcome(e.broker.append(room, react(room, alice, m.id, 'c')))).toBe('ok')
      // LIMITS.perMessage (3) different reactions on one message; an existing one may still be added to.
      expect(await outcome(e.broker.append(room, react(room, mod, m.id, 'd')))).toBe('limit')
      expect(await outcome(e.broker.append(room, react(room, mod, m.id, 'a')))).toBe('ok')
      expect(await outcome(e.broker.append(room, react(room, bob, m.id, 'a', 'remove')))).toBe('ok')
      const r = (await e.broker.messages!(room, [m.id])).get(m.id)!.reactions
      expect(Object.fromEntries(Object.entries(r).map(([k, v]) => [k, [...v].sort()]))).toEqual({ a: ['mo'], b: ['bob'], c: ['alice'] })
    })

    test('reactions named like Object members (__proto__, constructor, toString) are reactions like any other', async () => {
      const room = newRoom()
      const m = await e.broker.append(room, chat(room, alice))
      // A reaction is a user's string: a map keyed by it must not find the object prototype's members.
      expect(await outcome(e.broker.append(room, react(room, bob, m.id, '__proto__')))).toBe('ok')
      expect(await outcome(e.broker.append(room, react(room, alice, m.id, 'constructor')))).toBe('ok')
      expect(await outcome(e.broker.append(room, react(room, alice, m.id, 'toString')))).toBe('ok')
      expect((await e.broker.append(room, react(room, bob, m.id, 'toString', 'remove'))).noop).toBe(true)
      const r = (await e.broker.messages!(room, [m.id])).get(m.id)!.reactions
      expect(
        Object.entries(r)
          .map(([k, v]) => [k, [...v]])
          .sort(),
      ).toEqual([
        ['__proto__', ['bob']],
        ['constructor', ['alice']],
        ['toString', ['alice']],
      ])
      expect(await outcome(e.broker.append(room, react(room, bob, m.id, '__proto__', 'remove')))).toBe('ok')
      const after = (await e.broker.messages!(room, [m.id])).get(m.id)!.reactions
      expect(Object.keys(after).sort()).toEqual(['constructor', 'toString'])
    })

    test('replies: to a message of the room; an unknown parent is not_found', async () => {
      const room = newRoom()
      const m = await e.broker.append(room, chat(room, alice, 'parent'))
      expect(await outcome(e.broker.append(room, chat(room, bob, 'child', m.id)))).toBe('ok')
      expect(await outcome(e.broker.append(room, chat(room, bob, 'orphan', 'missing')))).toBe('not_found')
    })

    test("threads: each reply counts in its parent's thread: count, last_ts (the newest reply's), participants (≤ 5, distinct, most recent first)", async () => {
      const room = newRoom()
      const root = await e.broker.append(room, chat(room, alice, 'root'))
      const other = await e.broker.append(room, chat(room, alice, 'no replies'))
      expect((await e.broker.messages!(room, [root.id])).get(root.id)!.thread).toBeUndefined()
      const users: User[] = ['u1', 'u2', 'u3', 'u4', 'u5', 'u6'].map((id) => ({ id, name: id.toUpperCase() }))
      let last = ''
      for (const u of [bob, ...users, bob]) {
        const d = chat(room, u, `reply of ${u.id}`, root.id)
        last = d.event.ts
        await e.broker.append(room, d)
      }
      const states = await e.broker.messages!(room, [root.id, other.id])
      expect(states.get(root.id)!.thread).toEqual({
        count: 8,
        last_ts: last,
        participants: [bob, users[5]!, users[4]!, users[3]!, users[2]!].map(({ id, name }) => ({ id, name })),
      })
      expect(states.get(other.id)!.thread).toBeUndefined()
      // A change to the root (a reaction, an edit) keeps its thread.
      await e.broker.append(room, react(room, bob, root.id, '👍'))
      await e.broker.append(room, edit(room, alice, root.id, 'root, edited'))
      expect((await e.broker.messages!(room, [root.id])).get(root.id)!.thread!.count).toBe(8)
    })

    test('pins: moderators only; an unknown or deleted message is not_found; a repeat changes nothing; the cap answers limit', async () => {
      const room = newRoom()
      const ids: string[] = []
      for (let i = 0; i < 5; i++) ids.push((await e.broker.append(room, chat(room, alice, `p${i}`))).id)
      expect(await outcome(e.broker.append(room, pin(room, alice, ids[0]!, 'pinned', false)))).toBe('forbidden')
      const first = await e.broker.append(room, pin(room, mod, ids[0]!))
      expect(first.noop).toBeFalsy()
      expect((await e.broker.append(room, pin(room, mod, ids[0]!))).noop).toBe(true)
      expect((await e.broker.append(room, pin(room, mod, ids[1]!, 'unpinned'))).noop).toBe(true)
      expect(await outcome(e.broker.append(room, pin(room, mod, 'nope')))).toBe('not_found')
      await e.broker.append(room, del(room, alice, ids[4]!))
      expect(await outcome(e.broker.append(room, pin(room, mod, ids[4]!)))).toBe('not_found')
      await e.broker.append(room, pin(room, mod, ids[1]!))
      await e.broker.append(room, pin(room, mod, ids[2]!))
      // LIMITS.pinsPerRoom (3) pins a room.
      expect(await outcome(e.broker.append(room, pin(room, mod, ids[3]!)))).toBe('limit')
      expect((await e.broker.pins!(room)).map((p) => p.msg)).toEqual(ids.slice(0, 3))
      // Unpinned, and a deleted message leaves the pins in the same step.
      expect(await outcome(e.broker.append(room, pin(room, mod, ids[1]!, 'unpinned')))).toBe('ok')
      await e.broker.append(room, del(room, mod, ids[2]!, true))
      expect((await e.broker.pins!(room)).map((p) => p.msg)).toEqual(ids.slice(0, 1))
      expect(await outcome(e.broker.append(room, pin(room, mod, ids[3]!)))).toBe('ok')
      const log = (await e.broker.since(room, first.seq - 1)).frames.map((f) => JSON.parse(f).type)
      expect(log).toEqual(['pinned', 'delete', 'pinned', 'pinned', 'unpinned', 'delete', 'pinned'])
    })

    // ---- link previews (PROTOCOL-v4: a room event of the server's, one per message) ----

    test('preview: the server only, for a message of the room; unknown or deleted is not_found; the state carries it, a delete drops it', async () => {
      const room = newRoom()
      const m = await e.broker.append(room, chat(room, alice, 'see https://example.com/a'))
      expect(await outcome(e.broker.append(room, preview(room, 'nope')))).toBe('not_found')
      expect(await outcome(e.broker.append(room, preview(room, m.id, LINK, alice)))).toBe('forbidden')
      const p = await e.broker.append(room, preview(room, m.id))
      expect(p.seq).toBe(m.seq + 1)
      const state = (await e.broker.messages!(room, [m.id])).get(m.id)!
      expect(state.preview).toEqual(LINK)
      // history shows the message with its preview; recovery replays the event itself.
      const [chatFrame, previewFrame] = (await e.broker.since(room, m.seq - 1)).frames
      expect(JSON.parse(current(chatFrame!, state, 'bob')).preview).toEqual(LINK)
      expect(JSON.parse(previewFrame!)).toMatchObject({ type: 'preview', seq: p.seq, room, msg: m.id, preview: LINK })
      // Each message its own event: a second message with the same link gets its own.
      const m2 = await e.broker.append(room, chat(room, bob, 'again https://example.com/a'))
      expect(await outcome(e.broker.append(room, preview(room, m2.id)))).toBe('ok')
      await e.broker.append(room, del(room, alice, m.id))
      expect((await e.broker.messages!(room, [m.id])).get(m.id)!.preview).toBeUndefined()
      expect(await outcome(e.broker.append(room, preview(room, m.id)))).toBe('not_found')
      const log = (await e.broker.since(room, m.seq - 1)).frames.map((f) => JSON.parse(f).type)
      expect(log).toEqual(['chat', 'preview', 'chat', 'preview', 'delete'])
    })

    // ---- polls and slow mode (v4) ----

    test("polls: a vote replaces the user's vote, [] withdraws it; the tallies come with each vote; bad options are bad_request", async () => {
      const room = newRoom()
      const p = await e.broker.append(room, pollChat(room, alice, ['red', 'green', 'blue']))
      const v1 = await e.broker.append(room, vote(room, alice, p.id, [0]))
      await e.broker.append(room, vote(room, alice, p.id, [2]))
      await e.broker.append(room, vote(room, bob, p.id, [2]))
      expect((await e.broker.append(room, vote(room, bob, p.id, [2]))).noop).toBe(true)
      await e.broker.append(room, vote(room, mod, p.id, [1]))
      await e.broker.append(room, vote(room, mod, p.id, []))
      expect((await e.broker.append(room, vote(room, mod, p.id, []))).noop).toBe(true)
      expect(await outcome(e.broker.append(room, vote(room, bob, p.id, [0, 1])))).toBe('bad_request')
      expect(await outcome(e.broker.append(room, vote(room, bob, p.id, [3])))).toBe('bad_request')
      expect(await outcome(e.broker.append(room, vote(room, bob, p.id, [-1])))).toBe('bad_request')
      expect(await outcome(e.broker.append(room, vote(room, bob, 'no-such-poll', [0])))).toBe('not_found')
      const plain = await e.broker.append(room, chat(room, alice, 'no poll here'))
      expect(await outcome(e.broker.append(room, vote(room, bob, plain.id, [0])))).toBe('bad_request')
      const votes = (await e.broker.since(room, v1.seq - 1)).frames.filter((f) => f.startsWith(eventHead('vote'))).map((f) => JSON.parse(f))
      expect(votes.map((v) => [v.user.id, v.options, v.tallies])).toEqual([
        ['alice', [0], [1, 0, 0]],
        ['alice', [2], [0, 0, 1]],
        ['bob', [2], [0, 0, 2]],
        ['mo', [1], [0, 1, 2]],
        ['mo', [], [0, 0, 2]],
      ])
      const poll = (await e.broker.messages!(room, [p.id])).get(p.id)!.poll!
      expect(poll.tallies).toEqual([0, 0, 2])
      expect({ ...poll.votes }).toEqual({ alice: [2], bob: [2] })
      expect(poll.closed).toBeFalsy()
    })

    test('polls: multiple takes several options; an anonymous vote names no user; anonymity must match the poll', async () => {
      const room = newRoom()
      const p = await e.broker.append(room, pollChat(room, alice, ['a', 'b', 'c'], { multiple: true, anonymous: true }))
      const v = await e.broker.append(room, vote(room, bob, p.id, [0, 2], true))
      await e.broker.append(room, vote(room, alice, p.id, [2], true))
      expect(await outcome(e.broker.append(room, vote(room, bob, p.id, [1, 1], true)))).toBe('bad_request')
      expect(await outcome(e.broker.append(room, vote(room, mod, p.id, [1])))).toBe('bad_request')
      const frames = (await e.broker.since(room, v.seq - 1)).frames.map((f) => JSON.parse(f))
      expect(frames.map((f) => f.tallies)).toEqual([
        [1, 0, 1],
        [1, 0, 2],
      ])
      for (const f of frames) {
        expect(f.user).toBeUndefined()
        expect(JSON.stringify(f)).not.toContain('bob')
      }
      expect({ ...(await e.broker.messages!(room, [p.id])).get(p.id)!.poll!.votes }).toEqual({ bob: [0, 2], alice: [2] })
    })

    test('polls: closed by its author or a moderator, once; a closed poll refuses votes (closed); closes_at closes it too', async () => {
      const room = newRoom()
      const p = await e.broker.append(room, pollChat(room, alice, ['yes', 'no']))
      await e.broker.append(room, vote(room, bob, p.id, [1]))
      expect(await outcome(e.broker.append(room, closePoll(room, bob, p.id)))).toBe('forbidden')
      const closed = await e.broker.append(room, closePoll(room, alice, p.id))
      expect(JSON.parse((await e.broker.since(room, closed.seq - 1)).frames[0]!)).toMatchObject({
        type: 'poll_closed',
        msg: p.id,
        tallies: [0, 1],
      })
      expect(await outcome(e.broker.append(room, closePoll(room, mod, p.id, true)))).toBe('closed')
      expect(await outcome(e.broker.append(room, closePoll(room, server, p.id, true)))).toBe('closed')
      expect(await outcome(e.broker.append(room, vote(room, alice, p.id, [0])))).toBe('closed')
      expect((await e.broker.messages!(room, [p.id])).get(p.id)!.poll!.closed).toBe(true)
      // A moderator closes another's poll; a poll past its closes_at takes no vote even before its close event.
      const q = await e.broker.append(room, pollChat(room, alice, ['a', 'b']))
      expect(await outcome(e.broker.append(room, closePoll(room, mod, q.id, true)))).toBe('ok')
      const late = await e.broker.append(room, pollChat(room, alice, ['a', 'b'], { closes_at: new Date(Date.now() + 300).toISOString() }))
      expect(await outcome(e.broker.append(room, vote(room, bob, late.id, [0])))).toBe('ok')
      await Bun.sleep(400)
      expect(await outcome(e.broker.append(room, vote(room, bob, late.id, [1])))).toBe('closed')
      // The timers of several nodes race to close it: one close is appended, the others are refused.
      const closes = await Promise.all([1, 2, 3].map(() => outcome(e.broker.append(room, closePoll(room, server, late.id, true)))))
      expect(closes.sort()).toEqual(['closed', 'closed', 'ok'])
    })

    test('polls: many voters at once, each vote replaced concurrently: the last tallies are the votes held', async () => {
      const room = newRoom()
      const p = await e.broker.append(room, pollChat(room, alice, ['a', 'b', 'c']))
      const voters = Array.from({ length: 20 }, (_, i) => ({ id: `v${i}`, name: `V${i}` }))
      await Promise.all(
        voters.flatMap((u, i) => [
          e.broker.append(room, vote(room, u, p.id, [i % 3])),
          e.broker.append(room, vote(room, u, p.id, [(i + 1) % 3])),
        ]),
      )
      const poll = (await e.broker.messages!(room, [p.id])).get(p.id)!.poll!
      const held = [0, 0, 0]
      for (const v of Object.values(poll.votes)) for (const o of v) held[o]!++
      expect(poll.tallies).toEqual(held)
      expect(held.reduce((a, b) => a + b)).toBe(20)
      const last = (await e.broker.since(room, p.seq)).frames.map((f) => JSON.parse(f)).at(-1)
      expect(last.tallies).toEqual(held)
    })

    test('slow mode: set by a moderator (settings event); a member waits slow_mode_s between chats (slow_mode, retry_after); moderators and the server are exempt', async () => {
      const room = newRoom()
      expect(await outcome(e.broker.append(room, settings(room, alice, 1, false)))).toBe('forbidden')
      const set = await e.broker.append(room, settings(room, mod, 1))
      expect(JSON.parse((await e.broker.since(room, set.seq - 1)).frames[0]!)).toMatchObject({
        type: 'settings',
        slow_mode_s: 1,
        by: { id: 'mo' },
      })
      expect(await e.broker.settings!(room)).toEqual({ slow_mode_s: 1 })
      expect(await outcome(e.broker.append(room, chat(room, alice, 'first')))).toBe('ok')
      const r = await refusal(e.broker.append(room, chat(room, alice, 'too soon')))
      expect(r?.code).toBe('slow_mode')
      expect(r?.retryAfter).toBe(1)
      expect(await outcome(e.broker.append(room, chat(room, bob, 'another member')))).toBe('ok')
      expect(await outcome(e.broker.append(room, chatAs(room, mod, true)))).toBe('ok')
      expect(await outcome(e.broker.append(room, chatAs(room, mod, true)))).toBe('ok')
      expect(await outcome(e.broker.append(room, chat(room, server)))).toBe('ok')
      expect(await outcome(e.broker.append(room, chat(room, server)))).toBe('ok')
      // Changes are not chats: a reaction is not slowed.
      expect(await outcome(e.broker.append(room, react(room, alice, set.id, 'x')))).toBe('not_found')
      await Bun.sleep(1100)
      expect(await outcome(e.broker.append(room, chat(room, alice, 'later')))).toBe('ok')
      await e.broker.append(room, settings(room, mod, 0))
      expect(await outcome(e.broker.append(room, chat(room, alice, 'off')))).toBe('ok')
      expect(await outcome(e.broker.append(room, chat(room, alice, 'off again')))).toBe('ok')
      expect(await e.broker.settings!(room)).toEqual({ slow_mode_s: 0 })
    })

    if (factory.durable)
      test('polls and slow mode outlive the engine forgetting the room (the store keeps them)', async () => {
        const room = newRoom()
        const p = await e.broker.append(room, pollChat(room, alice, ['a', 'b'], { anonymous: true }))
        await e.broker.append(room, vote(room, bob, p.id, [1], true))
        await e.broker.append(room, settings(room, mod, 60))
        await e.forget(room)
        expect(await e.broker.settings!(room)).toEqual({ slow_mode_s: 60 })
        await e.broker.append(room, vote(room, alice, p.id, [1], true))
        expect((await e.broker.append(room, vote(room, bob, p.id, [1], true))).noop).toBe(true)
        const poll = (await e.broker.messages!(room, [p.id])).get(p.id)!.poll!
        expect(poll.tallies).toEqual([0, 2])
        await e.broker.append(room, closePoll(room, alice, p.id))
        await e.forget(room)
        expect(await outcome(e.broker.append(room, vote(room, bob, p.id, [0], true)))).toBe('closed')
      })

    // ---- moderation, enforced by the sequencer ----

    test("a mute refuses the user's chats until unmuted; other users and changes go on", async () => {
      const room = newRoom()
      const m = await e.broker.append(room, chat(room, alice, 'before'))
      await e.broker.append(room, moderation(room, mod, 'mute', alice, 600))
      expect(await outcome(e.broker.append(room, chat(room, alice, 'muted')))).toBe('forbidden')
      expect(await outcome(e.broker.append(room, chat(room, bob, 'free')))).toBe('ok')
      expect(await outcome(e.broker.append(room, react(room, alice, m.id, 'ok')))).toBe('ok')
      expect(await outcome(e.broker.append(room, chat(room, server, 'from the API')))).toBe('ok')
      await e.broker.append(room, moderation(room, mod, 'unmute', alice))
      expect(await outcome(e.broker.append(room, chat(room, alice, 'again')))).toBe('ok')
    })

    test('a ban refuses every event of the user until unbanned', async () => {
      const room = newRoom()
      const m = await e.broker.append(room, chat(room, alice))
      await e.broker.append(room, moderation(room, mod, 'ban', alice))
      expect(await outcome(e.broker.append(room, chat(room, alice)))).toBe('forbidden')
      expect(await outcome(e.broker.append(room, edit(room, alice, m.id)))).toBe('forbidden')
      expect(await outcome(e.broker.append(room, react(room, alice, m.id, 'x')))).toBe('forbidden')
      expect(await outcome(e.broker.append(room, del(room, alice, m.id)))).toBe('forbidden')
      await e.broker.append(room, moderation(room, mod, 'unban', alice))
      expect(await outcome(e.broker.append(room, chat(room, alice)))).toBe('ok')
    })

    test('a mute that has run out no longer refuses', async () => {
      const room = newRoom()
      const ev = event('moderation', room, mod, { extra: { action: 'mute', user: alice, until: new Date(Date.now() + 300).toISOString() } })
      await e.broker.append(room, draftOf(ev))
      expect(await outcome(e.broker.append(room, chat(room, alice)))).toBe('forbidden')
      await Bun.sleep(400)
      expect(await outcome(e.broker.append(room, chat(room, alice)))).toBe('ok')
    })

    // ---- concurrency ----

    test("a change racing the message's delete: never applied after it", async () => {
      for (let round = 0; round < 8; round++) {
        const room = newRoom()
        const m = await e.broker.append(room, chat(room, alice))
        const [d, x, r] = await Promise.all([
          outcome(e.broker.append(room, del(room, alice, m.id))),
          outcome(e.broker.append(room, edit(room, alice, m.id, 'late'))),
          outcome(e.broker.append(room, react(room, bob, m.id, 'r'))),
        ])
        expect(d).toBe('ok')
        expect(['ok', 'not_found']).toContain(x)
        expect(['ok', 'not_found']).toContain(r)
        const log = (await e.broker.since(room, m.seq)).frames.map((f) => JSON.parse(f).type as string)
        // Whatever the order, nothing follows the delete.
        expect(log.at(-1)).toBe('delete')
        expect(log.length).toBe(1 + (x === 'ok' ? 1 : 0) + (r === 'ok' ? 1 : 0))
        const state = (await e.broker.messages!(room, [m.id])).get(m.id)!
        expect(state.deleted).toBe(true)
        expect(state.reactions).toEqual({})
      }
    })

    test('two moderators at once: both deletes of one message, one wins; mute and unmute, the later seq holds', async () => {
      for (let round = 0; round < 6; round++) {
        const room = newRoom()
        const m = await e.broker.append(room, chat(room, alice))
        const both = await Promise.all([
          outcome(e.broker.append(room, del(room, mod, m.id, true))),
          outcome(e.broker.append(room, del(room, bob, m.id, true))),
        ])
        expect(both.sort()).toEqual(['not_found', 'ok'])
        const [mute, unmute] = await Promise.all([
          e.broker.append(room, moderation(room, mod, 'mute', alice, 600)),
          e.broker.append(room, moderation(room, bob, 'unmute', alice)),
        ])
        const muted = mute.seq > unmute.seq
        expect(await outcome(e.broker.append(room, chat(room, alice)))).toBe(muted ? 'forbidden' : 'ok')
      }
    })

    // ---- summaries and unread ----

    test("summary: unread after the marker not counting the reader's own; last is the newest message", async () => {
      const room = newRoom()
      const base = (await e.broker.position(room)).seq
      const m1 = await e.broker.append(room, chat(room, alice, 'a1'))
      await e.broker.append(room, chat(room, bob, 'b1'))
      await e.broker.append(room, react(room, bob, m1.id, 'x'))
      const m3 = await e.broker.append(room, chat(room, alice, 'a2'))
      await e.broker.append(room, edit(room, alice, m3.id))
      const forBob = await e.broker.summary(room, base, 'bob')
      expect(forBob).toMatchObject({ seq: base + 5, unread: 2, complete: true })
      expect(JSON.parse(forBob.last!).body).toBe('a2')
      expect((await e.broker.summary(room, base, 'alice')).unread).toBe(1)
      expect((await e.broker.summary(room, m1.seq, 'bob')).unread).toBe(1)
      expect((await e.broker.summary(room, base + 5, 'bob')).unread).toBe(0)
      const empty = await e.broker.summary(newRoom(), 0, 'bob')
      expect(empty).toMatchObject({ unread: 0, complete: true })
      expect(empty.last).toBeUndefined()
    })

    test('summary past the log: what it could not count is said (complete false)', async () => {
      const room = newRoom()
      const base = (await e.broker.position(room)).seq
      for (let i = 0; i < LIMITS.historyLimit * 3; i++) await e.broker.append(room, chat(room, alice, `n${i}`))
      const s = await e.broker.summary(room, base, 'bob')
      expect(s.seq).toBe(base + LIMITS.historyLimit * 3)
      expect(s.complete).toBe(false)
      expect(s.unread).toBeGreaterThanOrEqual(LIMITS.historyLimit)
      expect(s.unread).toBeLessThan(UNREAD_CAP)
      // Counted down to `counted`: everything from there to the end is in the count.
      expect(s.unread).toBe(s.seq - s.counted + 1)
    })

    // ---- retention and a reset ----

    test('the log keeps at least the newest HISTORY_LIMIT events; older ones are said to be gone', async () => {
      const room = newRoom()
      const base = (await e.broker.position(room)).seq
      const n = LIMITS.historyLimit * 3
      for (let i = 0; i < n; i++) await e.broker.append(room, chat(room, alice, `h${i}`))
      const replay = await e.broker.since(room, base)
      expect(replay.complete).toBe(false)
      expect(replay.frames.length).toBeGreaterThanOrEqual(LIMITS.historyLimit)
      expect(seqs(replay.frames).at(-1)).toBe(base + n)
      const s = seqs(replay.frames)
      expect(s).toEqual(s.map((_, i) => s[0]! + i))
      const recent = await e.broker.since(room, base + n - 10)
      expect(recent.complete).toBe(true)
      expect(recent.frames).toHaveLength(10)
      const page = await e.broker.page(room, undefined, 10)
      expect(seqs(page.frames)).toEqual(Array.from({ length: 10 }, (_, i) => base + n - 9 + i))
    })

    if (!factory.durable)
      test('a room the engine lost starts a new epoch: a reader of the old one learns it cannot resume', async () => {
        const room = newRoom()
        for (let i = 0; i < 3; i++) await e.broker.append(room, chat(room, alice))
        const old = await e.broker.position(room)
        await e.forget(room)
        const now = await e.broker.position(room)
        expect(now.epoch).not.toBe(old.epoch)
        const next = await e.broker.append(room, chat(room, alice, 'fresh'))
        expect(next.seq).toBe(now.seq + 1)
        const replay = await e.broker.since(room, now.seq)
        expect(replay.epoch).toBe(now.epoch)
        expect(seqs(replay.frames)).toEqual([now.seq + 1])
      })
    else
      test('a room the engine forgot goes on from the store: same epoch, the next seq', async () => {
        const room = newRoom()
        for (let i = 0; i < 3; i++) await e.broker.append(room, chat(room, alice))
        const old = await e.broker.position(room)
        await e.forget(room)
        expect(await e.broker.position(room)).toEqual(old)
        expect((await e.broker.append(room, chat(room, alice, 'after'))).seq).toBe(old.seq + 1)
      })

    // ---- presence: counted and paged cluster-wide (issue 34) ----

    test('presence: count is the users present (not their connections); a page of each limit covers every user once', async () => {
      const room = newRoom()
      expect(await e.broker.presence.count(room)).toBe(0)
      expect(await e.broker.presence.page(room)).toEqual({ users: [] })
      const users = Array.from({ length: 7 }, (_, i) => ({ id: `u${i}`, name: `User ${i}` }))
      for (const u of users) expect(await e.broker.presence.add(room, u, `c-${u.id}`)).toBe(true)
      expect(await e.broker.presence.add(room, users[0]!, 'c-second')).toBe(false) // a second connection: no new user
      expect(await e.broker.presence.count(room)).toBe(7)
      for (const limit of [1, 3, 7, 1000]) {
        const seen: string[] = []
        let cursor: string | undefined
        for (let i = 0; i < 20; i++) {
          const p = await e.broker.presence.page(room, cursor, limit)
          expect(p.users.length).toBeLessThanOrEqual(limit)
          seen.push(...p.users.map((u) => `${u.id}:${u.name}`))
          if (!(cursor = p.next)) break
        }
        expect(seen.sort()).toEqual(users.map((u) => `${u.id}:${u.name}`).sort())
      }
      expect(await e.broker.presence.remove(room, users[0]!.id, 'c-second')).toBe(false)
      expect(await e.broker.presence.remove(room, users[0]!.id, `c-${users[0]!.id}`)).toBe(true)
      expect(await e.broker.presence.count(room)).toBe(6)
      for (const u of users.slice(1)) await e.broker.presence.remove(room, u.id, `c-${u.id}`)
      expect(await e.broker.presence.count(room)).toBe(0)
      expect((await e.broker.presence.page(room, undefined, 5)).users).toEqual([])
    })

    // The hub's presence events over this engine's presence and relay (hub/presence-events.ts):
    // windows long enough never to end by themselves; `flush` ends them, so the cases are exact.
    async function presenceOf(room: string, max: number) {
      const topic = roomTopic(room)
      await e.broker.watch(topic)
      const events = presenceEvents({ broker: e.broker, max, windowMs: 600_000, onError: (_, err) => console.error(err) })
      const frames = () => (e.delivered.get(topic) ?? []).map((f) => JSON.parse(f))
      const change = async (event: 'join' | 'leave', u: User) => {
        const edge =
          event === 'join' ? await e.broker.presence.add(room, u, `c-${u.id}`) : await e.broker.presence.remove(room, u.id, `c-${u.id}`)
        if (edge) events.announce(room, event, u)
      }
      /** Sends what is held, then waits for the relayed frames (this engine's delivery is asynchronous). */
      const settle = async (expected: number) => {
        await events.flush()
        await waitFor(() => frames().length >= expected)
        return frames()
      }
      return { change, settle, frames, done: () => e.broker.unwatch(topic) }
    }
    const person = (i: number): User => ({ id: `p${i}`, name: `P ${i}` })

    test('presence events: each its own event up to PRESENCE_EVENTS_MAX; above it one batch per window with the count; back at the limit, single events again', async () => {
      const room = newRoom()
      const p = await presenceOf(room, 3)
      for (let i = 0; i < 3; i++) await p.change('join', person(i))
      let got = await p.settle(3) // at most 3 present whenever the count is read: events
      expect(got.map((f) => [f.event, f.user?.id])).toEqual([
        ['join', 'p0'],
        ['join', 'p1'],
        ['join', 'p2'],
      ])
      await p.change('join', person(3))
      await p.change('join', person(4))
      got = await p.settle(4)
      expect(got.slice(3)).toEqual([{ type: 'presence', room, event: 'batch', joined: [person(3), person(4)], left: [], count: 5 }])
      // Two leaves in a window that ends with 3 present: a small room never sees a batch.
      await p.change('leave', person(4))
      await p.change('leave', person(3))
      got = await p.settle(6)
      expect(got.slice(4).map((f) => [f.event, f.user?.id])).toEqual([
        ['leave', 'p4'],
        ['leave', 'p3'],
      ])
      expect(got).toHaveLength(6)
      p.done()
    })

    test("presence windows are the engine's: two nodes' changes in a big room make one batch per window", async () => {
      const room = newRoom()
      const p = await presenceOf(room, 1)
      // A second node's announcer on the same engine (with Redis: another process, the same keys).
      const other = presenceEvents({ broker: e.broker, max: 1, windowMs: 600_000, onError: (_, err) => console.error(err) })
      await p.change('join', person(0))
      await p.change('join', person(1)) // 2 present: held in a window
      expect((await p.settle(2)).map((f) => f.event)).toEqual(['join', 'batch'])
      // Changes through both nodes: whichever opened the window ends it, with the other's changes in it.
      await p.change('join', person(2))
      for (const i of [3, 4]) {
        expect(await e.broker.presence.add(room, person(i), `c-p${i}`)).toBe(true)
        other.announce(room, 'join', person(i))
      }
      await other.flush() // its changes held; it opened no window, so it ends none
      expect(p.frames()).toHaveLength(2)
      await p.settle(3)
      await waitFor(() => p.frames().length > 3, 300) // a second batch would be a window per node
      const got = p.frames()
      expect(got).toHaveLength(3)
      expect(got[2]).toEqual({ type: 'presence', room, event: 'batch', joined: [person(2), person(3), person(4)], left: [], count: 5 })
      // A draining node ends the window at once, whoever opened it: nothing is left for the other.
      await p.change('leave', person(2))
      await other.drain()
      for (const i of [3, 4]) {
        expect(await e.broker.presence.remove(room, person(i).id, `c-p${i}`)).toBe(true)
        other.announce(room, 'leave', person(i))
      }
      await p.settle(0)
      const left = () =>
        p
          .frames()
          .slice(3)
          .flatMap((f) => (f.event === 'batch' ? f.left : []))
          .map((u: User) => u.id)
      await waitFor(() => left().length >= 3)
      expect(left().sort()).toEqual(['p2', 'p3', 'p4'])
      expect(
        p
          .frames()
          .slice(3)
          .every((f) => f.event === 'batch'),
      ).toBe(true)
      for (const i of [0, 1]) await e.broker.presence.remove(room, person(i).id, `c-p${i}`)
      p.done()
    })

    test('presence batch: a user who joined and left in one window is in neither list; past 100 a list is truncated', async () => {
      const room = newRoom()
      const p = await presenceOf(room, 2)
      // The count is read when the change's turn comes: each event out before the next change.
      for (let i = 0; i < 2; i++) {
        await p.change('join', person(i))
        await waitFor(() => p.frames().length > i)
      }
      await p.change('join', person(2))
      expect((await p.settle(3)).map((f) => f.event)).toEqual(['join', 'join', 'batch'])
      for (let i = 3; i < 153; i++) await p.change('join', person(i))
      await p.change('join', person(999))
      await p.change('leave', person(999))
      await p.change('leave', person(0))
      const got = await p.settle(4)
      expect(got).toHaveLength(4)
      const batch = got[3]
      expect(batch.event).toBe('batch')
      expect(batch.count).toBe(152)
      expect(batch.truncated).toBe(true)
      expect(batch.joined).toHaveLength(100)
      expect(batch.left).toEqual([person(0)])
      const named = [...batch.joined, ...batch.left].map((u: User) => u.id)
      expect(named).not.toContain('p999')
      expect(new Set(named).size).toBe(named.length)
      for (let i = 1; i < 153; i++) await e.broker.presence.remove(room, person(i).id, `c-p${i}`)
      p.done()
    })

    test('a chat and a dm frame both count as messages; other events do not', async () => {
      const room = newRoom()
      const base = (await e.broker.position(room)).seq
      await e.broker.append(room, dm(room, alice, 'bob'))
      await e.broker.append(room, moderation(room, mod, 'mute', mod, 1))
      const s = await e.broker.summary(room, base, 'bob')
      expect(s.unread).toBe(1)
      expect(s.last!.startsWith(DM_HEAD)).toBe(true)
      expect(s.last!.startsWith(CHAT_HEAD)).toBe(false)
    })
  })
}

async function waitFor(cond: () => boolean, ms = 5000) {
  const until = Date.now() + ms
  while (!cond() && Date.now() < until) await Bun.sleep(10)
}
