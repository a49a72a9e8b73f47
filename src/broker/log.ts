import type { RoomEvent } from '../protocol/server-frames'
import type { Page, Position } from '../core/room-log'

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
   * Encoded event frames with seq in (from, seq], in order: all of them when `complete`,
   * else the newest part the log still holds (a store may hold the rest).
   */
  frames: string[]
  /** False when the log no longer reaches back to `since`. */
  complete: boolean
  /**
   * Where the frames start after: `since`, or the seq the epoch started from when `since` is
   * below it (no event of the epoch is at or below that seq). Absent: `since`.
   */
  from?: number
}

/** Thrown by `append` when the message cannot be kept right now (nothing was published). */
export class Unavailable extends Error {}

export const DEDUPE_WINDOW_MS = 120_000

/** The sequenced room log: every event of a room (chat, dm, changes, moderation), in order, from one append path. */
export interface RoomLog {
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
  position(room: string): Promise<Position>
  /**
   * Resolves once this node has handed over every frame of the room up to `seq` (frames in
   * flight between Redis and this node), so that a join's replay and live stream meet exactly.
   */
  caughtUp(room: string, seq: number): Promise<void>
  since(room: string, seq: number): Promise<Replay>
  /** Up to `limit` frames with seq < before (or the newest), oldest first. */
  page(room: string, before: number | undefined, limit: number): Promise<Page>
}
