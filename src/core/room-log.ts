import type { User } from './identity'

/**
 * What a room's log is made of, for the two that hold it: the broker (the live, recent log) and
 * the store (its archive in PostgreSQL).
 */

export interface Position {
  seq: number
  epoch: string
}

export interface Page {
  frames: string[]
  more: boolean
}

/** Where a room's sequence starts; `known` when the store had the room before (it may have lost a tail of it). */
export interface Origin extends Position {
  known?: boolean
  /** The room's pinned messages as the store has them (a restarted engine starts from these). */
  pins?: Pin[]
  /** The room's settings as the store has them (a restarted engine starts from these). */
  settings?: RoomSettings
}

/** A room's settings, set by `settings` events of its log (v4). */
export interface RoomSettings {
  /** A member's chats are this many seconds apart at least (owners and moderators exempt); 0: off. */
  slow_mode_s: number
}

/**
 * A poll's state (a chat that carries `poll`), changed by `vote` and `poll_closed` events.
 * The question and option texts stay in the message's frame; the rules need only these.
 */
export interface PollState {
  /** How many options it has. */
  options: number
  multiple: boolean
  anonymous: boolean
  /** When it closes by itself, in ms since the epoch. */
  closes_at?: number
  closed?: boolean
  /** Votes per option, kept with each vote (never counted again from `votes`). */
  tallies: number[]
  /** user id → the options of that user's vote (no prototype: any user id is a key). */
  votes: Record<string, number[]>
}

/** A poll's state as a new poll starts (its frame's `poll`: options, multiple, anonymous, closes_at). */
export function pollStateOf(poll: { options: unknown[]; multiple?: boolean; anonymous?: boolean; closes_at?: string }): PollState {
  return {
    options: poll.options.length,
    multiple: poll.multiple === true,
    anonymous: poll.anonymous === true,
    ...(poll.closes_at ? { closes_at: Date.parse(poll.closes_at) } : {}),
    tallies: poll.options.map(() => 0),
    votes: Object.create(null),
  }
}

/** A poll past its `closes_at` is closed, whether or not its `poll_closed` event is appended yet. */
export const pollClosed = (p: PollState, now: number) => p.closed === true || (p.closes_at !== undefined && p.closes_at <= now)

/** A pinned message of a room: the message (id and seq), who pinned it and when. */
export interface Pin {
  msg: string
  /** The pinned message's own seq (where its frame is in the log). */
  seq: number
  by: User
  ts: string
}

/** A room's pins by message id, in the order they were pinned. */
export type Pins = Map<string, Pin>

/** A new epoch: a room's sequence that starts over gets one, so readers of the old one know. */
export const freshEpoch = () => Bun.randomUUIDv7().replaceAll('-', '').slice(-12)

/**
 * The current state of a room's messages, projected from its events (chat, dm, edit, delete,
 * react). The sequencer checks an event against it and applies it in the same step as the
 * append, so that a refused change leaves nothing behind and no two changes race.
 */
export interface MessageState {
  seq: number
  author: string
  deleted?: boolean
  edited_at?: string
  body?: string
  data?: unknown
  /** reaction → user ids; NO_REACTIONS (shared, frozen) until the first. Made by `reactionMap`. */
  reactions: Record<string, string[]>
  /** The link preview of its first URL (a `preview` event of the server's); dropped with a delete. */
  preview?: LinkPreview
  /** The message's poll, when it carries one. */
  poll?: PollState
  /** Its replies (`reply_to` this message), once it has one. */
  thread?: ThreadSummary
}

/** The most participants a thread summary names (the most recent repliers). */
export const THREAD_PARTICIPANTS = 5

/**
 * A message's thread as its replies made it: how many, the newest one's time, and the latest
 * distinct repliers, most recent first. Kept by the sequencer with the parent's state.
 */
export interface ThreadSummary {
  count: number
  last_ts: string
  participants: { id: string; name: string }[]
}

/** The summary after one more reply by `from` at `ts`. */
export function threadAfter(t: ThreadSummary | undefined, from: { id: string; name: string }, ts: string): ThreadSummary {
  const rest = (t?.participants ?? []).filter((p) => p.id !== from.id)
  return {
    count: (t?.count ?? 0) + 1,
    last_ts: ts,
    participants: [{ id: from.id, name: from.name }, ...rest].slice(0, THREAD_PARTICIPANTS),
  }
}

/** What a `preview` event attaches to a message: its first URL's page, as its meta tags say it. */
export interface LinkPreview {
  url: string
  title: string
  description?: string
  image?: string
  site_name?: string
}

/**
 * An empty reaction → users map with no prototype: a reaction is any string a user sends, and
 * `__proto__`, `constructor` or `toString` must be keys like any other, not Object's members.
 */
export function reactionMap(): Record<string, string[]> {
  return Object.create(null)
}
