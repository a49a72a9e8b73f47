import type { Sql } from 'postgres'
import { log } from '../log'
import type { User } from '../protocol/server-frames'
import { endSessions, insertAudit, insertSessions, upsertUsers } from './activity'
import type { QueuedAudit, SessionEnd, SessionOpened } from './activity'
import type { Health } from './health'
import { withTimeout } from './health'
import { insertMessages } from './message-writes'
import type { StoredEvent, Store } from './types'

const BATCH_ROWS = 500
const BATCH_DELAY_MS = 2
const WRITE_TIMEOUT_MS = 5_000

interface Pending {
  m: StoredEvent
  done: () => void
}

/** A session's rows to write: its start and, once it ended, its end (times as they happened). */
interface SessionRow {
  start?: SessionOpened
  end?: SessionEnd
}

const isDataError = (err: unknown) => /^2[23]/.test(String((err as { code?: unknown })?.code ?? ''))
const describeRow = (row: unknown) => {
  const r = row as Partial<StoredEvent> & { event?: string }
  return r.seq !== undefined ? { room: r.room, seq: r.seq, id: r.id } : { event: r.event }
}

export interface WriterOptions {
  nodeId: string
  /** Messages (and, apart, audit entries and sessions) that may wait before new ones are refused or dropped. */
  maxBacklog: number
  onError?: (err: unknown) => void
}

/** The store's writes: queued, then written in batches (see writer). */
export interface Writer extends Pick<Store, 'save' | 'accepting' | 'userSeen' | 'sessionOpened' | 'sessionClosed' | 'audit'> {
  /** Messages not written yet. */
  readonly backlog: number
  /** Writes what is queued (bounded by `ms`), then stops: a failing write is not retried after. */
  close(ms: number): Promise<void>
}

/**
 * Messages, users, sessions and audit entries wait in memory until PostgreSQL takes them: one
 * multi-row statement of each kind per batch (every few ms, or at once past BATCH_ROWS), a
 * write loop that retries the same batch through an outage, and a row PostgreSQL refuses for
 * its content dropped alone.
 */
export function writer(sql: Sql, opts: WriterOptions, health: Health): Writer {
  const { maxBacklog } = opts
  let queue: Pending[] = []
  let audits: QueuedAudit[] = []
  /** Users and sessions wait, like messages, until PostgreSQL takes them (latest name wins). */
  const users = new Map<string, User>()
  const sessions = new Map<string, SessionRow>()
  let droppedSessions = 0
  let writing = false
  let scheduled: Timer | undefined
  let closed = false

  const pendingWork = () => queue.length > 0 || audits.length > 0 || users.size > 0 || sessions.size > 0

  function schedule() {
    if (writing || scheduled) return
    scheduled = setTimeout(() => void writeLoop(), queue.length >= BATCH_ROWS ? 0 : BATCH_DELAY_MS)
  }

  /** Writes batches until the queue is empty; on failure waits and retries the same batch. */
  async function writeLoop() {
    scheduled = undefined
    if (writing) return
    writing = true
    let backoff = 100
    try {
      while (pendingWork() && !(closed && health.down)) {
        const batch = queue.slice(0, BATCH_ROWS)
        const auditBatch = audits.slice(0, BATCH_ROWS)
        const userBatch = [...users.values()].slice(0, BATCH_ROWS)
        const sessionBatch = [...sessions].slice(0, BATCH_ROWS).map(([conn, r]) => [conn, { ...r }] as const)
        try {
          // postgres.js can wait forever on a connection that is accepted and then dropped
          // during its handshake: a write that takes this long counts as failed (and is retried;
          // ON CONFLICT makes a late duplicate harmless).
          await withTimeout(WRITE_TIMEOUT_MS, async () => {
            if (batch.length)
              await insertOrIsolate(
                batch.map((p) => p.m),
                (ms) => insertMessages(sql, ms),
              )
            if (auditBatch.length) await insertOrIsolate(auditBatch, (es) => insertAudit(sql, opts.nodeId, es))
            if (userBatch.length) await insertOrIsolate(userBatch, (us) => upsertUsers(sql, us))
            const starts = sessionBatch.flatMap(([, r]) => (r.start ? [r.start] : []))
            const ends = sessionBatch.flatMap(([conn, r]) => (r.end ? [{ conn, ...r.end }] : []))
            if (starts.length) await insertOrIsolate(starts, (ss) => insertSessions(sql, ss))
            if (ends.length) await insertOrIsolate(ends, (es) => endSessions(sql, es))
          })
          health.succeeded()
          backoff = 100
          queue = queue.slice(batch.length)
          audits = audits.slice(auditBatch.length)
          // Entries that changed while the batch was written stay for the next one.
          for (const u of userBatch) if (users.get(u.id) === u) users.delete(u.id)
          for (const [conn, r] of sessionBatch) {
            const now = sessions.get(conn)
            if (!now) continue
            if (r.start) now.start = undefined
            if (r.end && now.end === r.end) now.end = undefined // an end that came during the write stays
            if (!now.start && !now.end) sessions.delete(conn)
          }
          for (const p of batch) p.done()
        } catch (err) {
          health.failed(err)
          if (closed) break
          await Bun.sleep(backoff)
          backoff = Math.min(backoff * 2, 2000)
        }
      }
    } finally {
      writing = false
      if (pendingWork() && !closed) schedule()
    }
  }

  /**
   * A batch that PostgreSQL refuses for its content (SQLSTATE class 22/23: a value it cannot
   * store) is written row by row, and the rows it refuses are dropped with an error log, so
   * one bad row never stops every write behind it. Other errors (connection) are thrown.
   */
  async function insertOrIsolate<T>(rows: T[], insert: (rows: T[]) => Promise<void>) {
    try {
      await insert(rows)
    } catch (err) {
      if (!isDataError(err)) throw err
      for (const row of rows) {
        try {
          await insert([row])
        } catch (e) {
          if (!isDataError(e)) throw e
          opts.onError?.(e)
          log.error('row refused by PostgreSQL; dropped', { err: (e as Error).message, row: describeRow(row) })
        }
      }
    }
  }

  return {
    save(messages) {
      return new Promise<void>((resolve) => {
        let left = messages.length
        if (left === 0) return resolve()
        const done = () => --left === 0 && resolve()
        for (const m of messages) queue.push({ m, done })
        schedule()
      })
    },
    accepting: () => queue.length < maxBacklog,
    userSeen(user) {
      users.delete(user.id) // re-inserted: a Map keeps insertion order, so the batch order follows
      users.set(user.id, { id: user.id, name: user.name })
      schedule()
    },
    sessionOpened(s) {
      if (sessions.size >= maxBacklog) {
        // Bounded like the audit log: an outage long enough to fill it loses session rows, not chat.
        if (droppedSessions++ === 0) log.warn('session rows dropped: the store is not keeping up', { backlog: sessions.size })
        return
      }
      sessions.set(s.conn, { start: { ...s, at: new Date().toISOString() } })
      schedule()
    },
    sessionClosed(conn, code) {
      const at = new Date().toISOString()
      const r = sessions.get(conn)
      if (r) r.end = { code, at }
      else if (sessions.size < maxBacklog) sessions.set(conn, { end: { code, at } })
      schedule()
    },
    audit(entry) {
      if (audits.length >= maxBacklog) return // the audit log never holds chat back
      audits.push({ ...entry, uid: crypto.randomUUID(), at: new Date().toISOString() })
      schedule()
    },
    get backlog() {
      return queue.length
    },
    async close(ms) {
      const until = Date.now() + ms
      while ((pendingWork() || writing) && Date.now() < until) {
        schedule()
        await Bun.sleep(10)
      }
      closed = true
      if (queue.length) log.warn('messages not written at shutdown', { count: queue.length })
    },
  }
}
