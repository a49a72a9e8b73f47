import type { RoomEvent, User } from '../protocol/server-frames'
import type { MessageState, Pin } from './lifecycle'
import { freshEpoch } from '../core/room-log'
import type { Origin, Page, Position } from '../core/room-log'
export { freshEpoch }
export type { Origin, Page, Position }

/**
 * Hands an encoded frame to this node's subscribers of `topic`. `except` names a connection
 * (by id, cluster-wide) that must not receive it: the sender of a DM or a typing event.
 */
export type Deliver = (topic: string, frame: string, except?: string) => void

/**
 * A room event before its seq is known: the event, and its encoded frame around the seq
 * (`head` + seq + `tail`, see eventHead/eventTail).
 */
export interface EventDraft {
  event: RoomEvent
  head: string
  tail: string
  /** The actor moderates the room (may delete others' messages); checked with the message state. */
  moderator?: boolean
}

export interface Accepted {
  id: string
  seq: number
  /** True when `dedupe` matched an earlier send: nothing new was published. */
  duplicate: boolean
  /** True when the event changed nothing (a reaction the user already has): nothing was appended, `seq` is the room's. */
  noop?: boolean
}

export interface Replay extends Position {
  /**
   * Encoded event frames with seq in (since, seq], in order: all of them when `complete`,
   * else the newest part the log still holds (a store may hold the rest).
   */
  frames: string[]
  /** False when the log no longer reaches back to `since`. */
  complete: boolean
}

/** Thrown by `append` when the message cannot be kept right now (nothing was published). */
export class Unavailable extends Error {}

/**
 * Sequencing, the recent log and cross-node fan-out of every room. `memory` serves one
 * node; `redis` makes many nodes one. The hub does not know which one runs.
 */
export interface Broker {
  readonly kind: 'memory' | 'redis'
  /** `reset` is told when a room's sequence restarted under this node (its members must resync). */
  start(deliver: Deliver, reset?: (room: string, pos: Position) => void): Promise<void>
  /**
   * Assigns the room's next seq, appends the event to its log and delivers it to every node,
   * as one step. `except` names a connection that must not receive it (the sender of a dm).
   * `dedupe` is a retry key, scoped to the room: a copy with the same key, before or while the
   * first is appended, answers the first's ack (`duplicate`) and appends nothing.
   */
  append(room: string, draft: EventDraft, dedupe?: string, except?: string): Promise<Accepted>
  /**
   * `append` done before returning, when the engine can (memory, no store, the room's log
   * open); undefined, with nothing done, when it cannot: then `append`. The hot path of a chat
   * message needs no promise this way.
   */
  appendNow?(room: string, draft: EventDraft, dedupe?: string, except?: string): Accepted | undefined
  /** Delivers a frame that is not sequenced (DM, typing, presence event) to every node. */
  relay(topic: string, frame: string, except?: string): Promise<void>
  /** This node wants (or no longer wants) the topic's traffic. Counted: N watches need N unwatches. */
  watch(topic: string): Promise<void>
  unwatch(topic: string): void
  position(room: string): Promise<Position>
  /**
   * Resolves once this node has handed over every frame of the room up to `seq` (frames in
   * flight between Redis and this node), so that a join's replay and live stream meet exactly.
   */
  caughtUp(room: string, seq: number): Promise<void>
  since(room: string, seq: number): Promise<Replay>
  /** Up to `limit` frames with seq < before (or the newest), oldest first. */
  page(room: string, before: number | undefined, limit: number): Promise<Page>
  /**
   * Where a room stands for a reader whose marker is `read`: its position, the messages after
   * the marker not sent by `user` (counted up to UNREAD_CAP), and its last message. Derived
   * from the log, never kept per member.
   */
  summary(room: string, read: number, user: string): Promise<Summary>
  /**
   * The current state of the named messages (see lifecycle.ts), for history; absent when the
   * engine does not keep message state (edits, deletes and reactions are then refused).
   */
  messages?(room: string, ids: string[]): Promise<Map<string, MessageState>>
  /** The room's pinned messages, oldest pin first (the engine's own state, checked by its append). */
  pins?(room: string): Promise<Pin[]>
  presence: Presence
  /** Undefined when healthy, else what is wrong (for /readyz). */
  problem(): string | undefined
  close(): Promise<void>
}

/** Unread counts are exact up to this; at it, the client shows "999+". */
export const UNREAD_CAP = 1000

export interface Summary extends Position {
  /** Messages after the reader's marker not sent by the reader, up to UNREAD_CAP. */
  unread: number
  /**
   * False when the log no longer reaches back to the marker: messages with seq in
   * (read, counted) were not counted (a store may count them).
   */
  complete: boolean
  counted: number
  /** The newest message (chat or dm frame) the log holds. */
  last?: string
}

/** The text that marks a frame as sent by `user` (chat and dm frames carry `from` first). */
export const fromNeedle = (user: string) => `"from":{"id":${JSON.stringify(user)},`

/**
 * A summary from a log read newest first (`entries` of [seq, frame], contiguous by seq).
 * Stops as soon as the count is complete and the last message is found.
 */
export function summarize(pos: Position, read: number, user: string, entries: Iterable<[number, string]>, isMessage: (f: string) => boolean): Summary {
  const needle = fromNeedle(user)
  let unread = 0
  let counted = pos.seq + 1
  let last: string | undefined
  for (const [seq, frame] of entries) {
    const message = isMessage(frame)
    if (message && last === undefined) last = frame
    if (seq > read && unread < UNREAD_CAP) {
      if (message && !frame.includes(needle)) unread++
      counted = seq
    }
    if ((seq <= read + 1 || unread >= UNREAD_CAP) && last !== undefined) break
  }
  const complete = read >= pos.seq || counted <= read + 1 || unread >= UNREAD_CAP
  return { ...pos, unread, complete, counted, last }
}

/** Who is in which room, cluster-wide. Counted by connection, reported by user. */
/** Who is in a room. The hub calls `add` once when a connection goes live in a room and `remove` once when it leaves. */
export interface Presence {
  /** True when this is the user's first connection in the room (a `join` event is due). */
  add(room: string, user: User, conn: string): Promise<boolean>
  /** True when this was the user's last connection in the room (a `leave` event is due). */
  remove(room: string, userId: string, conn: string): Promise<boolean>
  list(room: string): Promise<User[]>
}

/** Topic names: one Bun topic (and one Redis channel) per room and per user. */
export const roomTopic = (room: string) => `r:${room}`
export const userTopic = (userId: string) => `u:${userId}`

export const DEDUPE_WINDOW_MS = 120_000

/**
 * Where a room's sequence starts when the broker has no state for it: the store's last
 * seq and epoch when persistence is on, else a fresh epoch from 0.
 */
export type RoomOrigin = (room: string) => Promise<Origin>

export const freshOrigin: RoomOrigin = async () => ({ seq: 0, epoch: freshEpoch() })
