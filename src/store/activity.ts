import type { Sql } from 'postgres'
import type { User } from '../protocol/server-frames'
import type { AuditEntry, AuditRow, SessionStart } from './types'

/** An audit entry with the id a retry collides on (migration 003). */
export type QueuedAudit = AuditEntry & { uid: string; at: string }

/** A session's start, with when it happened. */
export type SessionOpened = SessionStart & { at: string }

/** A session's end: its close code and when. */
export interface SessionEnd {
  code: number
  at: string
}

/**
 * Who was here: users (latest name wins), sessions (open, then closed) and the audit log,
 * written in batches by the writer (writer.ts), each statement safe to run again.
 */
export async function insertAudit(sql: Sql, nodeId: string, entries: QueuedAudit[]) {
  await sql`
    insert into audit (uid, at, event, user_id, conn, node, room, detail)
    select i, a, e, u, c, ${nodeId}, r, d::jsonb from unnest(
      ${entries.map((e) => e.uid)}::uuid[], ${entries.map((e) => e.at)}::timestamptz[],
      ${entries.map((e) => e.event)}::text[], ${entries.map((e) => e.user ?? null)}::text[], ${entries.map((e) => e.conn ?? null)}::text[],
      ${entries.map((e) => e.room ?? null)}::text[], ${entries.map((e) => (e.detail ? JSON.stringify(e.detail) : null))}::text[]) as t(i, a, e, u, c, r, d)
    on conflict (uid) do nothing`
}

export async function upsertUsers(sql: Sql, us: User[]) {
  await sql`
    insert into users (id, name) select i, n from unnest(${us.map((u) => u.id)}::text[], ${us.map((u) => u.name)}::text[]) as x(i, n)
    on conflict (id) do update set name = excluded.name, last_seen = now()`
}

export async function insertSessions(sql: Sql, ss: SessionOpened[]) {
  await sql`
    insert into sessions (conn, user_id, node, remote_addr, user_agent, connected_at)
    select c, u, n, r, a, t from unnest(
      ${ss.map((s) => s.conn)}::text[], ${ss.map((s) => s.user.id)}::text[], ${ss.map((s) => s.node)}::text[],
      ${ss.map((s) => s.remote)}::text[], ${ss.map((s) => s.userAgent.slice(0, 512))}::text[], ${ss.map((s) => s.at)}::timestamptz[]) as x(c, u, n, r, a, t)
    on conflict (conn) do nothing`
}

export async function endSessions(sql: Sql, es: ({ conn: string } & SessionEnd)[]) {
  await sql`
    update sessions s set disconnected_at = x.t, close_code = x.k
    from unnest(${es.map((e) => e.conn)}::text[], ${es.map((e) => e.code)}::int[], ${es.map((e) => e.at)}::timestamptz[]) as x(c, k, t)
    where s.conn = x.c`
}

/** Audit rows, newest first, with id < before (the admin API). */
export async function auditList(
  sql: Sql,
  q: { room?: string; user?: string; before?: number; limit: number },
): Promise<{ rows: AuditRow[]; more: boolean }> {
  const rows = await sql<
    {
      id: string
      at: Date
      event: string
      user_id: string | null
      conn: string | null
      node: string | null
      room: string | null
      detail: unknown
    }[]
  >`
    select id, at, event, user_id, conn, node, room, detail from audit
    where true ${q.room ? sql`and room = ${q.room}` : sql``} ${q.user ? sql`and user_id = ${q.user}` : sql``} ${q.before ? sql`and id < ${q.before}` : sql``}
    order by id desc limit ${q.limit + 1}`
  return {
    more: rows.length > q.limit,
    rows: rows.slice(0, q.limit).map((r) => ({
      id: Number(r.id),
      at: r.at.toISOString(),
      event: r.event,
      user: r.user_id ?? undefined,
      conn: r.conn ?? undefined,
      node: r.node ?? undefined,
      room: r.room ?? undefined,
      detail: r.detail ?? undefined,
    })),
  }
}
