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

/** How a chat or dm frame's author begins (`from` comes before any content of the frame). */
const FROM = '"from":{"id":'

/** The text that marks a frame as sent by `user` (chat and dm frames carry `from` first). */
export const fromNeedle = (user: string) => `${FROM}${JSON.stringify(user)},`

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

/**
 * What every reader with one marker shares while the room's seq stays: the messages after the
 * marker, by author, and the last message. A storm of connects into one room asks for the same
 * few markers thousands of times (each connect's welcome counts its unread): one walk of the log
 * answers them all (19 000 summaries of ~500 unread, markers spread over 50 values: 1.2 s walked
 * each time, ~20 ms shared; docs/performance.md).
 */
export interface ReadTally {
  /** Messages with seq > read walked, and how many of them each author sent (key: the author's id as JSON). */
  total: number
  byAuthor: Map<string, number>
  /** The lowest seq > read walked (pos.seq + 1 when none). */
  counted: number
  /** The walk stopped at TALLY_MAX messages, before reaching the marker. */
  cut: boolean
  last?: string
}

/** A tally walks at most this many messages after the marker (a reader with more of its own falls back to summarize). */
const TALLY_MAX = 2 * UNREAD_CAP

/** The author of a chat or dm frame as the JSON text of its id (the first `from`: the frame's own). */
function authorOf(frame: string): string | undefined {
  const at = frame.indexOf(FROM)
  if (at < 0) return undefined
  const start = at + FROM.length
  let end = start + 1
  while (end < frame.length) {
    const ch = frame.charCodeAt(end)
    if (ch === 92 /* \ */) end += 2
    else if (ch === 34 /* " */) break
    else end++
  }
  return frame.slice(start, end + 1)
}

export function tally(pos: Position, read: number, entries: Iterable<[number, string]>, isMessage: (f: string) => boolean): ReadTally {
  const byAuthor = new Map<string, number>()
  let total = 0
  let counted = pos.seq + 1
  let last: string | undefined
  let cut = false
  for (const [seq, frame] of entries) {
    const message = isMessage(frame)
    if (message && last === undefined) last = frame
    if (seq > read && !cut) {
      if (message) {
        total++
        const a = authorOf(frame)
        if (a !== undefined) byAuthor.set(a, (byAuthor.get(a) ?? 0) + 1)
        if (total >= TALLY_MAX) cut = true
      }
      counted = seq
    }
    if ((seq <= read + 1 || cut) && last !== undefined) break
  }
  return { total, byAuthor, counted, cut, last }
}

/** summarize's answer from a tally, or undefined when the tally cannot give it (the reader sent many of the walked messages). */
export function fromTally(pos: Position, read: number, user: string, t: ReadTally): Summary | undefined {
  const unread = t.total - (t.byAuthor.get(JSON.stringify(user)) ?? 0)
  if (t.cut && unread < UNREAD_CAP) return undefined
  const capped = Math.min(unread, UNREAD_CAP)
  const complete = read >= pos.seq || t.counted <= read + 1 || capped >= UNREAD_CAP
  return { ...pos, unread: capped, complete, counted: t.counted, last: t.last }
}

/** A room's tallies by marker, for one seq of one epoch and one oldest entry (a new event, or more of the past, starts them over). */
export interface Tallies {
  seq: number
  epoch: string
  oldest: number
  byRead: Map<number, ReadTally>
}

/** At most this many markers' tallies are kept per room and seq. */
const TALLIES_MAX = 64

/**
 * summarize, answered from the room's tally for `read` (made by one walk of `entries` when
 * there is none for this seq); `cache` is the room's holder of it, `oldest` the seq of the
 * oldest entry `entries` gives.
 */
export function summarizeShared(
  cache: { tallies?: Tallies },
  pos: Position,
  oldest: number,
  read: number,
  user: string,
  entries: () => Iterable<[number, string]>,
  isMessage: (f: string) => boolean,
): Summary {
  let t = cache.tallies
  if (!t || t.seq !== pos.seq || t.epoch !== pos.epoch || t.oldest !== oldest)
    cache.tallies = t = { seq: pos.seq, epoch: pos.epoch, oldest, byRead: new Map() }
  let one = t.byRead.get(read)
  if (!one) {
    one = tally(pos, read, entries(), isMessage)
    if (t.byRead.size >= TALLIES_MAX) t.byRead.clear()
    t.byRead.set(read, one)
  }
  return fromTally(pos, read, user, one) ?? summarize(pos, read, user, entries(), isMessage)
}
