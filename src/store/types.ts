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
  /**
   * Messages matching a search, in the user's rooms only, deleted ones never, edited ones as
   * they stand. Thrown `SearchError` names a field the database found wrong (an unknown `before`).
   */
  search?(q: SearchQuery): Promise<SearchPage>
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

/** A search of messages (docs/search.md); the hub checks the input, the store runs it. */
export interface SearchQuery {
  user: string
  q: string
  /**
   * The rooms to search when memberships are not in this database (members engine memory or
   * Redis); undefined: the user's rows of `memberships`, joined in SQL.
   */
  rooms?: string[]
  room?: string
  /** A sender's user id. */
  from?: string
  /** Only messages older than this: an ISO time, or a message id (older than that message). */
  before?: { ts: string } | { msg: string }
  /** Where the previous page ended (its `cursor`). */
  cursor?: SearchCursor
  limit: number
}

/** The last result of a page: the keyset (created_at, room, seq) resumes after it. */
export interface SearchCursor {
  room: string
  seq: number
}

export interface SearchPage {
  /** Newest first: each message's room, its frame as it was sent and its stored state (the hub shows it as it stands). */
  results: { room: string; frame: string; state: MessageState }[]
  /** Present when there may be more. */
  cursor?: SearchCursor
}
