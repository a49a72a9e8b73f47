import postgres from 'postgres'
import type { Sql } from 'postgres'
import { freshEpoch } from '../core/room-log'
import type { Origin, Page } from '../core/room-log'
import { log } from '../log'
import type { MessageState } from '../core/room-log'
import { migrate } from './migrate'
import { createSearch } from './search'
import type { AuditEntry, SessionStart, StoredEvent, Store } from './types'
import type { User } from '../protocol/server-frames'

export interface PostgresStoreOptions {
  dsn: string
  nodeId: string
  messageRetentionDays?: number
  auditRetentionDays?: number
  /** Messages that may wait for the database before new ones are refused. */
  maxBacklog?: number
  onError?: (err: unknown) => void
}

interface Pending {
  m: StoredEvent
  done: () => void
}

/** An audit entry with the id a retry collides on (migration 003). */
type QueuedAudit = AuditEntry & { uid: string; at: string }

/** A session's rows to write: its start and, once it ended, its end (times as they happened). */
interface SessionRow {
  start?: SessionStart & { at: string }
  end?: { code: number; at: string }
}

const BATCH_ROWS = 500
const BATCH_DELAY_MS = 2
const PRUNE_EVERY_MS = 3_600_000
const WRITE_TIMEOUT_MS = 5_000

const isDataError = (err: unknown) => /^2[23]/.test(String((err as { code?: unknown })?.code ?? ''))
const describeRow = (row: unknown) => {
  const r = row as Partial<StoredEvent> & { event?: string }
  return r.seq !== undefined ? { room: r.room, seq: r.seq, id: r.id } : { event: r.event }
}

async function withTimeout<T>(ms: number, work: () => Promise<T>): Promise<T> {
  let timer: Timer | undefined
  try {
    return await Promise.race([
      work(),
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms))),
    ])
  } finally {
    clearTimeout(timer)
  }
}

import { frameOf } from './rows'
import type { Row } from './rows'

/** The event types that are messages (counted as unread, shown as a conversation's last). */
const MESSAGE_TYPES = ['chat', 'dm']
/** The event types that change a message's state (applied to it and to reactions by the writer). */
const CHANGE_TYPES = new Set(['edit', 'delete', 'react', 'pinned', 'unpinned'])

export type PostgresStore = Store & { sql: Sql }

/**
 * PostgreSQL through postgres.js: migrations at start, messages written in batches (one
 * multi-row insert per few ms, `ON CONFLICT DO NOTHING`), a write loop that outlasts an
 * outage, and pages read by seq.
 */
export async function postgresStore(opts: PostgresStoreOptions): Promise<PostgresStore> {
  const sql = postgres(opts.dsn, {
    max: 4,
    idle_timeout: 60,
    connect_timeout: 5,
    onnotice: () => {},
    connection: { application_name: `chat-server ${opts.nodeId}` },
  })
  const applied = await migrate(sql)
  const { search } = await createSearch(sql)
  const COLUMNS = () => sql`seq, type, id, user_id, user_name, body, data, data is null as no_data, extra, created_at`
  if (applied.length) log.info('migrations applied', { applied })

  const maxBacklog = opts.maxBacklog ?? 10_000
  let queue: Pending[] = []
  let audits: QueuedAudit[] = []
  /** Users and sessions wait, like messages, until PostgreSQL takes them (latest name wins). */
  const users = new Map<string, User>()
  const sessions = new Map<string, SessionRow>()
  let droppedSessions = 0
  let writing = false
  let scheduled: Timer | undefined
  let down: string | undefined
  let closed = false

  function failed(err: unknown) {
    opts.onError?.(err)
    const reason = (err as Error)?.message ?? String(err)
    if (!down) log.warn('postgres unavailable', { err: reason })
    down = reason
  }
  function succeeded() {
    if (down) log.info('postgres available again', { backlog: queue.length })
    down = undefined
  }

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
      while (pendingWork() && !(closed && down)) {
        const batch = queue.slice(0, BATCH_ROWS)
        const auditBatch = audits.slice(0, BATCH_ROWS)
        const userBatch = [...users.values()].slice(0, BATCH_ROWS)
        const sessionBatch = [...sessions].slice(0, BATCH_ROWS).map(([conn, r]) => [conn, { ...r }] as const)
        try {
          // postgres.js can wait forever on a connection that is accepted and then dropped
          // during its handshake: a write that takes this long counts as failed (and is retried;
          // ON CONFLICT makes a late duplicate harmless).
          await withTimeout(WRITE_TIMEOUT_MS, async () => {
            if (batch.length) await insertOrIsolate(batch.map((p) => p.m), insertMessages)
            if (auditBatch.length) await insertOrIsolate(auditBatch, insertAudit)
            if (userBatch.length) await insertOrIsolate(userBatch, upsertUsers)
            const starts = sessionBatch.flatMap(([, r]) => (r.start ? [r.start] : []))
            const ends = sessionBatch.flatMap(([conn, r]) => (r.end ? [{ conn, ...r.end }] : []))
            if (starts.length) await insertOrIsolate(starts, insertSessions)
            if (ends.length) await insertOrIsolate(ends, endSessions)
          })
          succeeded()
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
          failed(err)
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

  async function insertMessages(ms: StoredEvent[]) {
    if (!ms.some((m) => CHANGE_TYPES.has(m.type))) return insertEvents(sql, ms)
    // Changes are applied in seq order, in the transaction of their events.
    await sql.begin(async (tx) => {
      await insertEvents(tx as unknown as Sql, ms)
      for (const m of [...ms].sort((a, b) => a.seq - b.seq)) if (CHANGE_TYPES.has(m.type)) await applyChange(tx as unknown as Sql, m)
    })
  }

  /** The state change an edit, delete or reaction makes; guarded by seq, so applying it again changes nothing. */
  async function applyChange(tx: Sql, m: StoredEvent) {
    const x = (m.extra ?? {}) as Record<string, unknown>
    const msg = String(x.msg)
    if (m.type === 'edit')
      await tx`update messages set cur_body = ${m.body ?? null}, cur_data = (${m.data === undefined ? null : JSON.stringify(m.data)}::text)::jsonb, edited_at = ${m.ts}, state_seq = ${m.seq}
        where room = ${m.room} and id = ${msg} and state_seq < ${m.seq}`
    else if (m.type === 'delete') {
      await tx`update messages set cur_body = null, cur_data = null, deleted_at = ${m.ts}, state_seq = ${m.seq}
        where room = ${m.room} and id = ${msg} and state_seq < ${m.seq}`
      await tx`delete from reactions where room = ${m.room} and msg_id = ${msg}`
      // A deleted message is no longer pinned (the broker's rules say the same).
      await tx`update pins set present = false, seq = ${m.seq} where room = ${m.room} and msg_id = ${msg} and seq < ${m.seq}`
    } else if (m.type === 'pinned')
      await tx`insert into pins (room, msg_id, msg_seq, by_id, by_name, pinned_at, present, seq)
        values (${m.room}, ${msg}, coalesce((select seq from messages where room = ${m.room} and id = ${msg} and type in ${tx(MESSAGE_TYPES)} limit 1), 0), ${m.from.id}, ${m.from.name}, ${m.ts}, true, ${m.seq})
        on conflict (room, msg_id) do update set msg_seq = excluded.msg_seq, by_id = excluded.by_id, by_name = excluded.by_name, pinned_at = excluded.pinned_at, present = true, seq = excluded.seq
        where pins.seq < excluded.seq`
    else if (m.type === 'unpinned')
      await tx`update pins set present = false, seq = ${m.seq} where room = ${m.room} and msg_id = ${msg} and seq < ${m.seq}`
    else if (m.type === 'react')
      await tx`insert into reactions (room, msg_id, reaction, user_id, present, seq)
        values (${m.room}, ${msg}, ${String(x.reaction)}, ${m.from.id}, ${x.op !== 'remove'}, ${m.seq})
        on conflict (room, msg_id, reaction, user_id) do update set present = excluded.present, seq = excluded.seq where reactions.seq < excluded.seq`
  }

  async function insertEvents(sql: Sql, ms: StoredEvent[]) {
    await sql`
      insert into messages (room, seq, type, id, user_id, user_name, body, data, extra, created_at)
      select r, s, y, i, u, n, b, d::jsonb, e::json, t from unnest(
        ${ms.map((m) => m.room)}::text[], ${ms.map((m) => m.seq)}::bigint[], ${ms.map((m) => m.type)}::text[], ${ms.map((m) => m.id)}::text[],
        ${ms.map((m) => m.from.id)}::text[], ${ms.map((m) => m.from.name)}::text[], ${ms.map((m) => m.body ?? null)}::text[],
        ${ms.map((m) => (m.data === undefined ? null : JSON.stringify(m.data)))}::text[],
        ${ms.map((m) => (m.extra ? JSON.stringify(m.extra) : null))}::text[], ${ms.map((m) => m.ts)}::timestamptz[]
      ) as x(r, s, y, i, u, n, b, d, e, t)
      on conflict do nothing`
  }

  async function insertAudit(entries: QueuedAudit[]) {
    await sql`
      insert into audit (uid, at, event, user_id, conn, node, room, detail)
      select i, a, e, u, c, ${opts.nodeId}, r, d::jsonb from unnest(
        ${entries.map((e) => e.uid)}::uuid[], ${entries.map((e) => e.at)}::timestamptz[],
        ${entries.map((e) => e.event)}::text[], ${entries.map((e) => e.user ?? null)}::text[], ${entries.map((e) => e.conn ?? null)}::text[],
        ${entries.map((e) => e.room ?? null)}::text[], ${entries.map((e) => (e.detail ? JSON.stringify(e.detail) : null))}::text[]) as t(i, a, e, u, c, r, d)
      on conflict (uid) do nothing`
  }

  async function upsertUsers(us: User[]) {
    await sql`
      insert into users (id, name) select i, n from unnest(${us.map((u) => u.id)}::text[], ${us.map((u) => u.name)}::text[]) as x(i, n)
      on conflict (id) do update set name = excluded.name, last_seen = now()`
  }

  async function insertSessions(ss: (SessionStart & { at: string })[]) {
    await sql`
      insert into sessions (conn, user_id, node, remote_addr, user_agent, connected_at)
      select c, u, n, r, a, t from unnest(
        ${ss.map((s) => s.conn)}::text[], ${ss.map((s) => s.user.id)}::text[], ${ss.map((s) => s.node)}::text[],
        ${ss.map((s) => s.remote)}::text[], ${ss.map((s) => s.userAgent.slice(0, 512))}::text[], ${ss.map((s) => s.at)}::timestamptz[]) as x(c, u, n, r, a, t)
      on conflict (conn) do nothing`
  }

  async function endSessions(es: { conn: string; code: number; at: string }[]) {
    await sql`
      update sessions s set disconnected_at = x.t, close_code = x.k
      from unnest(${es.map((e) => e.conn)}::text[], ${es.map((e) => e.code)}::int[], ${es.map((e) => e.at)}::timestamptz[]) as x(c, k, t)
      where s.conn = x.c`
  }

  const pendingWork = () => queue.length > 0 || audits.length > 0 || users.size > 0 || sessions.size > 0

  async function prune() {
    try {
      if (opts.messageRetentionDays) {
        const r = await sql`delete from messages where created_at < now() - make_interval(days => ${opts.messageRetentionDays})`
        if (r.count) log.info('pruned messages', { count: r.count, days: opts.messageRetentionDays })
      }
      if (opts.auditRetentionDays) {
        const r = await sql`delete from audit where at < now() - make_interval(days => ${opts.auditRetentionDays})`
        if (r.count) log.info('pruned audit', { count: r.count, days: opts.auditRetentionDays })
      }
    } catch (err) {
      failed(err)
    }
  }
  const pruner = opts.messageRetentionDays || opts.auditRetentionDays ? setInterval(prune, PRUNE_EVERY_MS) : undefined
  pruner?.unref()
  if (pruner) await prune()

  // A ping tells readiness both ways: that the database went away while a write waits on a
  // dead connection, and that it came back while nothing is being written.
  let pinging = false
  const pinger = setInterval(() => {
    if (pinging) return
    pinging = true
    withTimeout(3000, () => sql`select 1`)
      .then(succeeded, failed)
      .finally(() => (pinging = false))
  }, 2000)
  pinger.unref()

  return {
    sql,
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
    async origin(room): Promise<Origin> {
      const created = await sql`insert into rooms (room, epoch) values (${room}, ${freshEpoch()}) on conflict (room) do nothing returning room`
      const [r] = await sql<{ epoch: string; seq: string }[]>`
        select epoch, coalesce((select max(seq) from messages where room = ${room}), 0) as seq from rooms where room = ${room}`
      const pins = created.length ? [] : await sql<{ msg_id: string; msg_seq: string; by_id: string; by_name: string; pinned_at: Date }[]>`
        select msg_id, msg_seq, by_id, by_name, pinned_at from pins where room = ${room} and present order by pinned_at, seq`
      return {
        epoch: r!.epoch,
        seq: Number(r!.seq),
        known: created.length === 0,
        pins: pins.map((p) => ({ msg: p.msg_id, seq: Number(p.msg_seq), by: { id: p.by_id, name: p.by_name }, ts: p.pinned_at.toISOString() })),
      }
    },
    async range(room, after, upTo) {
      if (upTo <= after) return []
      const rows = await sql<Row[]>`
        select ${COLUMNS()} from messages
        where room = ${room} and seq > ${after} and seq <= ${upTo} order by seq`
      return rows.map((r) => frameOf(room, r))
    },
    async page(room, before, limit): Promise<Page> {
      const rows = await sql<Row[]>`
        select ${COLUMNS()} from messages
        where room = ${room} ${before === undefined ? sql`` : sql`and seq < ${before}`}
        order by seq desc limit ${limit + 1}`
      const more = rows.length > limit
      return { frames: rows.slice(0, limit).reverse().map((r) => frameOf(room, r)), more }
    },
    async unread(room, after, below, user, cap) {
      if (below <= after + 1 || cap <= 0) return 0
      const [r] = await sql<{ n: string }[]>`
        select count(*) as n from (select 1 from messages where room = ${room} and seq > ${after} and seq < ${below}
          and type in ${sql(MESSAGE_TYPES)} and user_id <> ${user} limit ${cap}) x`
      return Number(r!.n)
    },
    async last(room, below) {
      const [r] = await sql<Row[]>`
        select ${COLUMNS()} from messages where room = ${room} and seq < ${below} and type in ${sql(MESSAGE_TYPES)}
        order by seq desc limit 1`
      return r ? frameOf(room, r) : undefined
    },
    async messages(room, ids) {
      const out = new Map<string, MessageState>()
      if (!ids.length) return out
      const rows = await sql<{ id: string; seq: string; user_id: string; body: string | null; data: unknown; cur_body: string | null; cur_data: unknown; edited_at: Date | null; deleted_at: Date | null }[]>`
        select id, seq, user_id, body, data, cur_body, cur_data, edited_at, deleted_at from messages
        where room = ${room} and id in ${sql(ids)} and type in ${sql(MESSAGE_TYPES)}`
      for (const r of rows) {
        const edited = r.edited_at !== null && r.deleted_at === null
        out.set(r.id, {
          seq: Number(r.seq),
          author: r.user_id,
          deleted: r.deleted_at !== null || undefined,
          edited_at: edited ? r.edited_at!.toISOString() : undefined,
          body: r.deleted_at ? undefined : edited ? (r.cur_body ?? undefined) : (r.body ?? undefined),
          data: r.deleted_at ? undefined : edited ? (r.cur_data ?? undefined) : (r.data ?? undefined),
          reactions: {},
        })
      }
      if (out.size) {
        const reactions = await sql<{ msg_id: string; reaction: string; user_id: string }[]>`
          select msg_id, reaction, user_id from reactions where room = ${room} and msg_id in ${sql([...out.keys()])} and present order by seq`
        for (const r of reactions) (out.get(r.msg_id)!.reactions[r.reaction] ??= []).push(r.user_id)
      }
      return out
    },
    search,
    async stored(room, from, to) {
      const rows = await sql<{ seq: string }[]>`select seq from messages where room = ${room} and seq between ${from} and ${to}`
      return new Set(rows.map((r) => Number(r.seq)))
    },
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
    async auditList(q) {
      const rows = await sql<{ id: string; at: Date; event: string; user_id: string | null; conn: string | null; node: string | null; room: string | null; detail: unknown }[]>`
        select id, at, event, user_id, conn, node, room, detail from audit
        where true ${q.room ? sql`and room = ${q.room}` : sql``} ${q.user ? sql`and user_id = ${q.user}` : sql``} ${q.before ? sql`and id < ${q.before}` : sql``}
        order by id desc limit ${q.limit + 1}`
      return {
        more: rows.length > q.limit,
        rows: rows.slice(0, q.limit).map((r) => ({ id: Number(r.id), at: r.at.toISOString(), event: r.event, user: r.user_id ?? undefined, conn: r.conn ?? undefined, node: r.node ?? undefined, room: r.room ?? undefined, detail: r.detail ?? undefined })),
      }
    },
    problem: () => (down ? `postgres: ${down}` : undefined),
    async close(ms = 3000) {
      clearInterval(pinger)
      if (pruner) clearInterval(pruner)
      const until = Date.now() + ms
      while ((pendingWork() || writing) && Date.now() < until) {
        schedule()
        await Bun.sleep(10)
      }
      closed = true
      if (queue.length) log.warn('messages not written at shutdown', { count: queue.length })
      await sql.end({ timeout: 2 })
    },
  }
}
