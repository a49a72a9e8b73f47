import type { ErrorCode, RoomEvent } from '../protocol/server-frames'

export type { MessageState, Pin, Pins, PollState, RoomSettings, ThreadSummary } from '../core/room-log'
import type { LinkPreview, MessageState, Pin, Pins, PollState, RoomSettings } from '../core/room-log'
import { pollClosed, pollStateOf, reactionMap, threadAfter } from '../core/room-log'
export { pollStateOf }

/** The reactions of a message nobody reacted to: one object for all of them, not one per message. */
export const NO_REACTIONS: Record<string, string[]> = Object.freeze(reactionMap())

/** Where `project` reads message states and adds new ones (MessageStates). */
export interface MessageStore {
  get(id: string): MessageState | undefined
  /** The state of a message just made (its id is new: nothing to look up first). */
  add(id: string, state: MessageState): unknown
}

/**
 * A room's message states for the memory engine: the newest `generation` messages at least and
 * twice that at most, in two maps. When the young map is full the old one is dropped whole: a
 * map never deletes a key, so it never walks past deleted slots (per-key deletes of the oldest
 * cost a chat message dearly: docs/performance.md).
 */
export class MessageStates implements MessageStore {
  private young = new Map<string, MessageState>()
  private old = new Map<string, MessageState>()
  constructor(private readonly generation: number) {}
  get(id: string) {
    return this.young.get(id) ?? this.old.get(id)
  }
  has(id: string) {
    return this.young.has(id) || this.old.has(id)
  }
  set(id: string, state: MessageState) {
    if (this.old.has(id)) this.old.set(id, state)
    else if (this.young.has(id)) this.young.set(id, state)
    else this.add(id, state)
    return this
  }
  add(id: string, state: MessageState) {
    if (this.young.size >= this.generation) {
      this.old = this.young
      this.young = new Map()
    }
    this.young.set(id, state)
    return this
  }
  get size() {
    return this.young.size + this.old.size
  }
}

/** The actor of changes made through the API without a user. */
export const SERVER_ID = 'server'

export interface Caps {
  /** Distinct reactions per message. */
  perMessage: number
  /** Reactions of one user on one message. */
  perUser: number
  /** Pinned messages per room (PINS_MAX_PER_ROOM); 50 when not given. */
  pinsPerRoom?: number
}

export const DEFAULT_PINS_PER_ROOM = 50

/** The order a room's pins are listed in, on every engine: by when they were pinned, then by the message's seq. */
export const byPinTime = (a: Pin, b: Pin) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : a.seq - b.seq)

/** Thrown by `append` when the event is not allowed by the message's state: nothing was appended. */
export class Refused extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Seconds until the same event would be accepted (`slow_mode`). */
    readonly retryAfter?: number,
  ) {
    super(message)
  }
}

/** Accepted (`tallies`: a poll's after a vote or its close, for the event's frame), or refused. */
export type Verdict =
  | { ok: true; noop?: boolean; tallies?: number[] }
  | { ok: false; code: ErrorCode; message: string; retryAfter?: number }

const refuse = (code: ErrorCode, message: string, retryAfter?: number): Verdict => ({ ok: false, code, message, retryAfter })

/**
 * What the sequencer keeps of a room beside its messages (v4): its settings, and when slow mode
 * is on, each member's last chat (ms), so that the wait holds whichever node a chat comes through.
 */
export interface RoomRules {
  settings: RoomSettings
  lastChat: Map<string, number>
}

/** What is wrong with a vote's options for `p`, or undefined: indexes of its options, distinct, one unless multiple. */
function badOptions(p: PollState, options: unknown): string | undefined {
  if (!Array.isArray(options)) return 'options: must be an array of option indexes'
  if (options.length > 1 && !p.multiple) return 'options: this poll takes one option (it is not multiple)'
  const seen = new Set<number>()
  for (const o of options) {
    if (!Number.isInteger(o) || (o as number) < 0 || (o as number) >= p.options)
      return `options: ${JSON.stringify(o)} is not an option (0..${p.options - 1})`
    if (seen.has(o as number)) return `options: ${o} is given twice`
    seen.add(o as number)
  }
  return undefined
}

const sameVote = (a: number[], b: number[]) => a.length === b.length && a.every((o, i) => o === b[i])

/** A vote or a close of `m`'s poll, checked and applied (see project). */
function pollChange(m: MessageState, e: RoomEvent, x: Record<string, unknown>, moderator: boolean): Verdict {
  const id = x.msg as string
  const p = m.poll
  if (!p) return refuse('bad_request', `msg: ${id} is not a poll`)
  if (e.type === 'poll_closed') {
    if (p.closed) return refuse('closed', `poll: ${id} is already closed`)
    if (m.author !== e.from.id && !moderator) return refuse('forbidden', `msg: only its author or a moderator of ${e.room} may close ${id}`)
    p.closed = true
    return { ok: true, tallies: [...p.tallies] }
  }
  if (pollClosed(p, Date.now())) return refuse('closed', `poll: ${id} is closed`)
  // The frame names the voter unless the poll is anonymous: a draft that says otherwise would leak it.
  if ((x.anonymous === true) !== p.anonymous) return refuse('bad_request', `vote: anonymous must be the poll's (${p.anonymous})`)
  const bad = badOptions(p, x.options)
  if (bad) return refuse('bad_request', bad)
  const next = x.options as number[]
  const prev = p.votes[e.from.id] ?? []
  if (sameVote(prev, next)) return { ok: true, noop: true }
  for (const o of prev) p.tallies[o]!--
  for (const o of next) p.tallies[o]!++
  if (next.length) p.votes[e.from.id] = [...next]
  else delete p.votes[e.from.id]
  return { ok: true, tallies: [...p.tallies] }
}
const OK: Verdict = Object.freeze({ ok: true })
const NO_EXTRA = Object.freeze({})

/**
 * Who may not write in a room, as the sequencer sees it: `mute:<user>` -> until (ms),
 * `ban:<user>` -> 1. Kept by the moderation events themselves, so that once a mute or ban is
 * acknowledged no later event of that user is accepted, whichever node it comes through
 * (a connection's own check may not have seen the event yet).
 */
export type Sanctions = Map<string, number>

/** The refusal of a muted user's chat (the hub's own check says the same). */
export const mutedMessage = (room: string, until: number | string) =>
  `room: muted in ${room} until ${typeof until === 'number' ? new Date(until).toISOString() : until}`

/**
 * Checks `e` (with seq `seq`) against `msgs` and `standing` and, when allowed and not a no-op,
 * applies it. `moderator`: the actor may delete other users' messages in this room.
 */
export function project(
  msgs: MessageStore,
  e: RoomEvent,
  seq: number,
  caps: Caps,
  moderator = false,
  standing?: Sanctions,
  pins?: Pins,
  rules?: RoomRules,
): Verdict {
  const x = (e.extra ?? NO_EXTRA) as Record<string, unknown>
  if (e.type === 'settings') {
    if (!moderator) return refuse('forbidden', `room: only a moderator or owner of ${e.room} may change its settings`)
    if (!rules) return refuse('unavailable', 'settings: this engine keeps no room settings')
    // Last chats stay: turned off and on again, the wait runs from a member's last chat in slow mode (as in append.lua).
    rules.settings = { slow_mode_s: x.slow_mode_s as number }
    return OK
  }
  if (standing && e.type === 'moderation') {
    const target = (x.user as { id: string }).id
    if (x.action === 'mute') standing.set(`mute:${target}`, Date.parse(x.until as string))
    else if (x.action === 'unmute') standing.delete(`mute:${target}`)
    else if (x.action === 'ban') standing.set(`ban:${target}`, 1)
    else if (x.action === 'unban') standing.delete(`ban:${target}`)
    return { ok: true }
  }
  if (standing?.size && e.from.id !== SERVER_ID) {
    if (standing.has(`ban:${e.from.id}`)) return refuse('forbidden', `room: banned from ${e.room}`)
    const until = e.type === 'chat' ? standing.get(`mute:${e.from.id}`) : undefined
    if (until !== undefined && until > Date.now()) return refuse('forbidden', mutedMessage(e.room, until))
  }
  if (e.type === 'chat' || e.type === 'dm') {
    const parent = x.reply_to as string | undefined
    if (parent !== undefined) {
      const p = msgs.get(parent)
      if (!p || p.deleted) return refuse('not_found', `reply_to: no message ${parent} in ${e.room}`)
      p.thread = threadAfter(p.thread, e.from, e.ts)
    }
    const slow = rules?.settings.slow_mode_s ?? 0
    if (slow > 0 && e.type === 'chat' && e.from.id !== SERVER_ID && !moderator) {
      const now = Date.now()
      const last = rules!.lastChat.get(e.from.id)
      if (last !== undefined && now - last < slow * 1000)
        return refuse(
          'slow_mode',
          `room: slow mode in ${e.room}: one message every ${slow} s`,
          Math.ceil((last + slow * 1000 - now) / 1000),
        )
      rules!.lastChat.set(e.from.id, now)
    }
    // Its body and data are the frame's until an edit: only an edit's are kept here.
    const state: MessageState = { seq, author: e.from.id, reactions: NO_REACTIONS }
    if (x.poll) state.poll = pollStateOf(x.poll as Parameters<typeof pollStateOf>[0])
    msgs.add(e.id, state)
    return OK
  }
  if (e.type === 'moderation') return { ok: true }
  const id = x.msg as string
  // Unpinning what is not pinned (never was, unpinned, or deleted since) changes nothing.
  if (e.type === 'unpinned') {
    if (!moderator) return refuse('forbidden', `room: only a moderator or owner of ${e.room} may unpin`)
    if (!pins?.has(id)) return { ok: true, noop: true }
    pins.delete(id)
    return { ok: true }
  }
  const m = msgs.get(id)
  if (!m || m.deleted) return refuse('not_found', `msg: no message ${id} in ${e.room}`)
  if (e.type === 'preview') {
    // Only the node that accepted the message fetches its link, and it appends as the server.
    if (e.from.id !== SERVER_ID) return refuse('forbidden', `preview: only the server attaches a link preview to ${id}`)
    m.preview = x.preview as LinkPreview
    return { ok: true }
  }
  if (e.type === 'vote' || e.type === 'poll_closed') return pollChange(m, e, x, moderator)
  if (e.type === 'pinned') {
    if (!moderator) return refuse('forbidden', `room: only a moderator or owner of ${e.room} may pin`)
    if (!pins) return refuse('unavailable', 'pin: this engine keeps no pins')
    if (pins.has(id)) return { ok: true, noop: true }
    const cap = caps.pinsPerRoom ?? DEFAULT_PINS_PER_ROOM
    if (pins.size >= cap) return refuse('limit', `msg: ${e.room} already has ${cap} pinned messages (PINS_MAX_PER_ROOM)`)
    pins.set(id, { msg: id, seq: m.seq, by: e.from, ts: e.ts })
    return { ok: true }
  }
  if (e.type === 'edit') {
    // The server (the API, trusted with moderator power) may edit any message.
    if (m.author !== e.from.id && !(moderator && e.from.id === SERVER_ID)) return refuse('forbidden', `msg: only its author may edit ${id}`)
    m.body = e.body
    m.data = e.data
    m.edited_at = e.ts
    return { ok: true }
  }
  if (e.type === 'delete') {
    if (m.author !== e.from.id && !moderator)
      return refuse('forbidden', `msg: only its author or a moderator of ${e.room} may delete ${id}`)
    m.deleted = true
    // A deleted message leaves the room's pins with it (the delete event says so: no unpinned follows).
    pins?.delete(id)
    m.body = undefined
    m.data = undefined
    m.reactions = NO_REACTIONS
    m.preview = undefined
    return { ok: true }
  }
  // react
  const reaction = x.reaction as string
  const users = m.reactions[reaction]
  const has = users?.includes(e.from.id) ?? false
  if (x.op === 'remove') {
    if (!has) return { ok: true, noop: true }
    const rest = users!.filter((u) => u !== e.from.id)
    if (rest.length) m.reactions[reaction] = rest
    else delete m.reactions[reaction]
    return { ok: true }
  }
  if (has) return { ok: true, noop: true }
  if (!users && Object.keys(m.reactions).length >= caps.perMessage)
    return refuse('limit', `reaction: ${id} already has ${caps.perMessage} different reactions`)
  let mine = 0
  for (const r in m.reactions) if (m.reactions[r]!.includes(e.from.id)) mine++
  if (mine >= caps.perUser) return refuse('limit', `reaction: at most ${caps.perUser} reactions per user on one message`)
  if (users) users.push(e.from.id)
  else {
    if (m.reactions === NO_REACTIONS) m.reactions = reactionMap()
    m.reactions[reaction] = [e.from.id]
  }
  return { ok: true }
}

/**
 * A chat or dm frame as `history` shows it: the message's current state (edited body and data,
 * `edited_at`, `deleted: true` without body and data, `reactions` with `me` for `viewer`,
 * `preview` once a preview event gave one).
 * Other frames, and messages without state, are returned as they are.
 */
export function current(frame: string, state: MessageState | undefined, viewer: string): string {
  if (!state) return frame
  const reactions = Object.entries(state.reactions).map(([reaction, users]) => ({
    reaction,
    count: users.length,
    me: users.includes(viewer),
  }))
  const preview = state.deleted ? undefined : state.preview
  if (!state.deleted && !state.edited_at && reactions.length === 0 && !preview && !state.poll && !state.thread) return frame
  const f = JSON.parse(frame)
  if (state.poll && f.poll && !state.deleted) f.poll = pollAsShown(f.poll, state.poll, viewer)
  const out: Record<string, unknown> = {}
  for (const k in f) {
    // A deleted message's files are removed with it: it no longer lists them.
    if ((k === 'attachments' || k === 'poll') && state.deleted) continue
    if (k === 'body' || k === 'data') {
      // Deleted: neither; edited: the edit's (its data may be absent); else the frame's own.
      if (state.deleted || state.edited_at) continue
      out[k] = f[k]
      continue
    }
    if (k === 'ts' && state.edited_at && !state.deleted) {
      out.body = state.body
      if (state.data !== undefined) out.data = state.data
    }
    out[k] = f[k]
  }
  if (state.edited_at) out.edited_at = state.edited_at
  if (state.deleted) out.deleted = true
  if (reactions.length) out.reactions = reactions
  if (preview) out.preview = preview
  if (state.thread) out.thread = state.thread
  return JSON.stringify(out)
}

/** A poll as `viewer` sees it now: each option's votes, closed (also past closes_at), the viewer's own vote. */
export function pollAsShown(shown: { options: { text: string }[] }, p: PollState, viewer: string) {
  return {
    ...shown,
    options: shown.options.map((o, i) => ({ text: o.text, votes: p.tallies[i] ?? 0 })),
    closed: pollClosed(p, Date.now()),
    mine: p.votes[viewer] ?? [],
  }
}

/** The message id a chat/dm frame carries, cheaply (its `id` follows the seq). */
export function messageIdOf(frame: string): string | undefined {
  const i = frame.indexOf(',"id":"')
  if (i < 0) return undefined
  const end = frame.indexOf('"', i + 7)
  return end < 0 ? undefined : frame.slice(i + 7, end)
}

/** Reads message state a sequencer no longer holds (PostgreSQL), by room and ids. */
export type LoadMessages = (room: string, ids: string[]) => Promise<Map<string, MessageState>>

/** The message an event needs to exist (the one it changes, or the one it replies to). */
export function neededMessage(e: RoomEvent): string | undefined {
  const x = e.extra as Record<string, unknown> | undefined
  if (!x) return undefined
  if (
    e.type === 'edit' ||
    e.type === 'delete' ||
    e.type === 'react' ||
    e.type === 'pinned' ||
    e.type === 'preview' ||
    e.type === 'vote' ||
    e.type === 'poll_closed'
  )
    return x.msg as string
  if (e.type === 'chat' || e.type === 'dm') return x.reply_to as string | undefined
  return undefined
}
