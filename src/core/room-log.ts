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
}

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

/**
 * An empty reaction → users map with no prototype: a reaction is any string a user sends, and
 * `__proto__`, `constructor` or `toString` must be keys like any other, not Object's members.
 */
export function reactionMap(): Record<string, string[]> {
  return Object.create(null)
}
