import type { Origin, Page } from '../core/room-log'
import type { MessageState } from '../core/room-log'
import type { RoomEvent, User } from '../protocol/server-frames'

/** An event of a room's log as it is kept: everything its frame is made of. */
export type StoredEvent = RoomEvent & { seq: number }

export interface SessionStart {
  conn: string
  user: User
  node: string
  remote: string
  userAgent: string
}

export type AuditEvent =
  | 'connect'
  | 'disconnect'
  | 'auth_refused'
  | 'join'
  | 'leave'
  | 'api_publish'
  | 'forbidden'
  | 'rate_limited'
  | 'slow_consumer'
  | 'moderation'
  | 'role'

export interface AuditEntry {
  event: AuditEvent
  user?: string
  conn?: string
  room?: string
  detail?: Record<string, unknown>
}

/**
 * Durable storage (PostgreSQL): messages beyond the broker's window, users, sessions and
 * the audit log. Writes are batched; reads page by seq.
 */
export interface Store {
  /** Queues events for the next batch; resolves once they are committed. */
  save(events: StoredEvent[]): Promise<void>
  /** False while the write backlog is full: a new message would not be kept. */
  accepting(): boolean
  /** Where a room's sequence continues: its stored epoch and last seq (creating the room). */
  origin(room: string): Promise<Origin>
  /** Encoded event frames with seq in (after, upTo], in order. */
  range(room: string, after: number, upTo: number): Promise<string[]>
  page(room: string, before: number | undefined, limit: number): Promise<Page>
  /** Messages with seq in (after, below) not sent by `user`, counted up to `cap` (what the broker's log no longer holds). */
  unread(room: string, after: number, below: number, user: string, cap: number): Promise<number>
  /** The newest message (chat or dm frame) with seq below `below`. */
  last(room: string, below: number): Promise<string | undefined>
  /** The current state of the named messages of a room (edits, deletes, reactions applied). */
  messages(room: string, ids: string[]): Promise<Map<string, MessageState>>
  /** Which of the seqs in [from, to] are stored. */
  stored(room: string, from: number, to: number): Promise<Set<number>>
  userSeen(user: User): void
  sessionOpened(s: SessionStart): void
  sessionClosed(conn: string, code: number): void
  audit(entry: AuditEntry): void
  /** Audit rows, newest first, with id < before. */
  auditList(q: { room?: string; user?: string; before?: number; limit: number }): Promise<{ rows: AuditRow[]; more: boolean }>
  problem(): string | undefined
  /** Writes what is queued (bounded by `ms`) and closes the pool. */
  close(ms?: number): Promise<void>
}

export interface AuditRow {
  id: number
  at: string
  event: string
  user?: string
  conn?: string
  node?: string
  room?: string
  detail?: unknown
}
