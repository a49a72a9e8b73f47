/**
 * The pure part of @chat-server/react's useRoom: a room's messages in seq order, each once, with
 * edits, deletes, reactions, reply quotes and (v4) link previews applied; rows a change does not
 * touch keep their object (what lets React.memo rows skip them); live events that come while the
 * newest page is read are applied after it, once. No server, no browser.
 */
import { describe, expect, test } from 'bun:test'
import type { ChatMessage, DeleteEvent, EditEvent, ReactEvent, User } from '../../../client/src/index'
import { Timeline } from '../../../client/react/src/timeline'
import type { PreviewEvent } from '../../../client/react/src/timeline'

const alice: User = { id: 'alice', name: 'Alice' }
const bob: User = { id: 'bob', name: 'Bob' }
const ROOM = 'team'
const ts = (seq: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString()

const chat = (seq: number, body: string, from = alice, extra: Partial<ChatMessage> = {}): ChatMessage => ({
  type: 'chat',
  id: `m${seq}`,
  room: ROOM,
  seq,
  from,
  body,
  ts: ts(seq),
  ...extra,
})
const edit = (seq: number, msg: string, body: string): EditEvent => ({
  type: 'edit',
  id: `e${seq}`,
  room: ROOM,
  seq,
  msg,
  by: alice,
  body,
  ts: ts(seq),
})
const del = (seq: number, msg: string): DeleteEvent => ({ type: 'delete', id: `d${seq}`, room: ROOM, seq, msg, by: alice, ts: ts(seq) })
const react = (seq: number, msg: string, user: User, reaction: string, op: 'add' | 'remove' = 'add'): ReactEvent => ({
  type: 'react',
  id: `r${seq}`,
  room: ROOM,
  seq,
  msg,
  user,
  reaction,
  op,
  ts: ts(seq),
})

/** A timeline as Bob sees it, already past its first (empty) page. */
function live(me = 'bob') {
  const t = new Timeline(() => me)
  t.loaded({ messages: [], events: [] })
  return t
}
const bodies = (t: Timeline) => t.rows.get().map((r) => r.body)

describe('Timeline (useRoom messages)', () => {
  test('messages are kept in seq order, each once, whatever order they arrive in', () => {
    const t = live()
    t.message(chat(2, 'two'))
    t.message(chat(4, 'four'))
    t.older({ messages: [chat(1, 'one'), chat(3, 'three')] })
    t.message(chat(4, 'four again')) // the same message (id m4): once
    t.message(chat(5, 'five'))
    expect(t.rows.get().map((r) => r.seq)).toEqual([1, 2, 3, 4, 5])
    expect(bodies(t)).toEqual(['one', 'two', 'three', 'four', 'five'])
    expect(t.rows.get().map((r) => r.mine)).toEqual([false, false, false, false, false])
    expect(live('alice').rows.get()).toEqual([])
  })

  test('an edit, a delete and reactions make a new row for that message only; the others keep their object', () => {
    const t = live()
    for (const [seq, body] of [
      [1, 'one'],
      [2, 'helo'],
      [3, 'three'],
    ] as const)
      t.message(chat(seq, body))
    const before = t.rows.get()
    t.change(edit(4, 'm2', 'hello'))
    const edited = t.rows.get()
    expect(edited).not.toBe(before) // a new list: something changed
    expect(edited[0]).toBe(before[0]!)
    expect(edited[2]).toBe(before[2]!)
    expect(edited[1]).not.toBe(before[1]!)
    expect(edited[1]).toMatchObject({ body: 'hello', edited_at: ts(4), deleted: false })
    expect(before[1]!.body).toBe('helo') // rows are never mutated

    t.change(react(5, 'm1', bob, '👍'))
    t.change(react(6, 'm1', alice, '👍'))
    t.change(react(7, 'm1', alice, '🎉'))
    t.change(react(8, 'm1', alice, '🎉', 'remove'))
    const reacted = t.rows.get()
    expect(reacted[0]!.reactions).toEqual([{ reaction: '👍', count: 2, me: true }])
    expect(reacted[1]).toBe(edited[1]!)
    expect(reacted[2]).toBe(before[2]!)

    t.change(del(9, 'm1'))
    const deleted = t.rows.get()
    expect(deleted[0]).toMatchObject({ id: 'm1', body: '', deleted: true, reactions: [] })
    expect(deleted[1]).toBe(edited[1]!)
    expect(bodies(t)).toEqual(['', 'hello', 'three'])

    // A change to a message that is not loaded, or a second delete, changes nothing: the same list.
    const same = t.rows.get()
    t.change(edit(10, 'gone', 'x'))
    t.change(del(11, 'm1'))
    t.change(react(12, 'm1', bob, '👍'))
    expect(t.rows.get()).toBe(same)
  })

  test('a reply quotes its message as it stands now: an edit or delete of the message shows in the reply', () => {
    const t = live()
    t.message(chat(1, 'lunch?'))
    t.message(chat(2, 'unrelated'))
    t.message(chat(3, 'yes!', bob, { reply_to: 'm1' }))
    const [, unrelated, reply] = t.rows.get()
    expect(reply!.replyTo).toEqual({ id: 'm1', from: alice, body: 'lunch?', deleted: false })
    t.change(edit(4, 'm1', 'lunch at noon?'))
    expect(t.rows.get()[2]!.replyTo).toMatchObject({ body: 'lunch at noon?' })
    expect(t.rows.get()[2]).not.toBe(reply!)
    expect(t.rows.get()[1]).toBe(unrelated!)
    t.change(del(5, 'm1'))
    expect(t.rows.get()[2]!.replyTo).toEqual({ id: 'm1', from: alice, body: '', deleted: true })
    expect(t.rows.get()[2]!.body).toBe('yes!')
    // A new message, or a reaction on another one, leaves the reply's row as it is.
    const q = t.rows.get()[2]
    t.change(react(6, 'm2', alice, '👍'))
    t.message(chat(7, 'more'))
    expect(t.rows.get()[2]).toBe(q!)
    expect(t.rows.get()[1]!.reactions).toHaveLength(1)
  })

  test('a reply loaded before its message (the message comes with an older page) quotes it once it is there', () => {
    const t = live()
    t.message(chat(10, 'agreed', bob, { reply_to: 'm2' }))
    expect(t.rows.get()[0]!.replyTo).toBeUndefined()
    expect(t.rows.get()[0]!.reply_to).toBe('m2')
    t.older({ messages: [chat(2, 'ship it friday?', alice, { edited_at: ts(5) })] })
    expect(t.rows.get().map((r) => r.seq)).toEqual([2, 10])
    expect(t.rows.get()[0]!.edited_at).toBe(ts(5))
    expect(t.rows.get()[1]!.replyTo).toEqual({ id: 'm2', from: alice, body: 'ship it friday?', deleted: false })
  })

  test('link previews (v4): from the live event, from history, and an early one kept for its message', () => {
    const t = live()
    t.message(chat(1, 'see https://example.com'))
    const p: PreviewEvent = { type: 'preview', room: ROOM, seq: 2, msg: 'm1', preview: { url: 'https://example.com/', title: 'Example' } }
    t.change(p)
    expect(t.rows.get()[0]!.preview).toEqual({ url: 'https://example.com/', title: 'Example' })
    const withPreview = t.rows.get()
    t.change(p) // a replayed raw frame: nothing changes
    expect(t.rows.get()).toBe(withPreview)
    t.change({ ...p, seq: 4, msg: 'm3', preview: { url: 'https://b.example/', title: 'B' } })
    t.message(chat(3, 'and https://b.example'))
    expect(t.rows.get()[1]!.preview?.title).toBe('B')
    t.older({ messages: [{ ...chat(0, 'old https://c.example'), preview: { url: 'https://c.example/', title: 'C' } } as ChatMessage] })
    expect(t.rows.get()[0]!.preview?.title).toBe('C')
  })

  test('live events during the newest page: those the page shows are not applied twice, the newer ones are', () => {
    const t = new Timeline(() => 'bob')
    t.hold()
    // Live while the page is read: m2 and its first reaction are in the page; the rest are newer.
    t.message(chat(2, 'two'))
    t.change(react(3, 'm2', alice, '👍'))
    t.change(react(5, 'm2', bob, '👍'))
    t.message(chat(6, 'six'))
    t.change(edit(7, 'm1', 'one (edited)'))
    expect(t.rows.get()).toEqual([]) // nothing shown until the page is in
    t.loaded({
      messages: [chat(1, 'one'), chat(2, 'two', alice, { reactions: [{ reaction: '👍', count: 2, me: false }] })],
      events: [chat(1, 'one'), chat(2, 'two'), react(3, 'm2', alice, '👍'), react(4, 'm2', alice, '👍')],
    })
    expect(bodies(t)).toEqual(['one (edited)', 'two', 'six'])
    expect(t.rows.get()[1]!.reactions).toEqual([{ reaction: '👍', count: 3, me: true }])
    expect(t.holding).toBe(false)
  })

  test('edits and deletes that come while an older page is read are applied to its messages after it', () => {
    const t = live()
    t.message(chat(10, 'ten'))
    t.readingOlder()
    // Live while the older page is read: the page was read before these (or after: applying again changes nothing).
    t.change(edit(11, 'm2', 'two, edited'))
    t.change(del(12, 'm3'))
    t.change(edit(13, 'm4', 'four, edited'))
    t.older({ messages: [chat(2, 'two'), chat(3, 'three'), chat(4, 'four, edited', alice, { edited_at: ts(13) })] })
    expect(bodies(t)).toEqual(['two, edited', '', 'four, edited', 'ten'])
    expect(t.rows.get()[1]!.deleted).toBe(true)
    // Once the page is in, changes to messages not loaded are dropped again (their page will show them).
    t.change(edit(14, 'm1', 'one, edited'))
    t.older({ messages: [chat(1, 'one')] })
    expect(bodies(t)[0]).toBe('one')
  })

  test('a history copy of a message shown live is its newer state; an identical copy keeps the row', () => {
    const t = live()
    t.message(chat(1, 'hi'))
    const row = t.rows.get()[0]
    t.older({ messages: [chat(1, 'hi')] })
    expect(t.rows.get()[0]).toBe(row!)
    t.older({ messages: [chat(1, 'hi!', alice, { edited_at: ts(2) })] })
    expect(t.rows.get()[0]).toMatchObject({ body: 'hi!', edited_at: ts(2) })
  })

  test('clear forgets everything (a new epoch, or a gap): the next page starts over', () => {
    const t = live()
    t.message(chat(1, 'old epoch'))
    t.clear()
    t.hold()
    t.message(chat(1, 'new epoch'))
    expect(t.rows.get()).toEqual([])
    t.loaded({ messages: [], events: [] })
    expect(bodies(t)).toEqual(['new epoch'])
  })
})
