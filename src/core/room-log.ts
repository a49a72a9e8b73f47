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
  /** The link preview of its first URL (a `preview` event of the server's); dropped with a delete. */
  preview?: LinkPreview
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
