import type { Position } from '../core/room-log'
import type { MessageState, Pin, RoomSettings } from './message-rules'

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
export function summarize(
  pos: Position,
  read: number,
  user: string,
  entries: Iterable<[number, string]>,
  isMessage: (f: string) => boolean,
): Summary {
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

/** The read model built on the log: where a room stands for a reader, and its messages as they stand. */
export interface ReadModel {
  /**
   * Where a room stands for a reader whose marker is `read`: its position, the messages after
   * the marker not sent by `user` (counted up to UNREAD_CAP), and its last message. Derived
   * from the log, never kept per member.
   */
  summary(room: string, read: number, user: string): Promise<Summary>
  /**
   * The current state of the named messages (see message-rules.ts), for history; absent when the
   * engine does not keep message state (edits, deletes and reactions are then refused).
   */
  messages?(room: string, ids: string[]): Promise<Map<string, MessageState>>
  /** The room's pinned messages, oldest pin first (the engine's own state, checked by its append). */
  pins?(room: string): Promise<Pin[]>
  /** The room's settings (v4: slow mode), as its `settings` events set them. */
  settings?(room: string): Promise<RoomSettings>
}
