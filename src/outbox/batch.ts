import type { Sql, TransactionSql } from 'postgres'
import type { User } from '../core/identity'
import type { Publish, SendDirect } from '../hub/frames/messages'
import { dedupeKey } from '../hub/frames/messages'
import { LANE_SQL } from './schema'
import type { OutboxNames } from './schema'
import { permanent, toSend } from './row'
import type { OutboxRow, RowLimits, Send } from './row'

/** Rows looked at per window when choosing lanes; windows looked at before giving up (others hold them). */
const SCAN_ROWS = 1000
const SCAN_WINDOWS = 4
/** Lanes one node takes per batch (chosen at random among the free ones, so nodes share the work). */
const MAX_LANES = 64
/** Rows one batch delivers at most (its transaction stays short). */
const BATCH_ROWS = 500

/** How rows leave: the append path of /api/publish (a chat) and of a client's dm. */
export interface Deliver {
  publish: Publish
  sendDirect: SendDirect
  /** A sender's name when it is a known user (else its id is its name). */
  user?: (id: string) => Promise<User | undefined>
}

export interface BatchResult {
  delivered: number
  /** Of those, rows whose retry key had been delivered already (a node died after the append, before its commit). */
  duplicates: number
  failed: number
  /** A failure that may pass (Redis away, a timeout): its lane stopped there, to be retried. */
  passing?: unknown
  /** False when there was nothing this node could take (an empty table, or every lane held by other nodes). */
  took: boolean
}

/**
 * One batch, in one transaction: lanes (outbox/schema.ts) locked with transaction-level
 * advisory locks (`pg_try_advisory_xact_lock`: a lane another node holds is skipped, never
 * waited for), their first rows read in `id` order, each lane delivered one row after the other
 * (lanes side by side), then the delivered rows deleted and the undeliverable ones moved to
 * `_failed` before the commit. A node that dies in between leaves the rows where they were and
 * its locks go with its connection: the next node appends them again with the same retry keys,
 * which the room log answers as duplicates (nothing delivered twice while keys are kept).
 */
export async function runBatch(sql: Sql, n: OutboxNames, limits: RowLimits, deliver: Deliver): Promise<BatchResult> {
  return sql.begin(async (tx) => {
    const lanes = await lockLanes(tx, n)
    if (lanes.length === 0) return { delivered: 0, duplicates: 0, failed: 0, took: false }
    const rows = await tx.unsafe<(OutboxRow & { lane: string })[]>(
      `select id, room, to_user, body, data, from_user, idempotency_key, ${LANE_SQL} as lane from ${n.table}
       where ${LANE_SQL} = any($1::text[]) order by id limit ${BATCH_ROWS}`,
      [lanes],
    )
    const byLane = new Map<string, OutboxRow[]>()
    for (const r of rows) {
      const list = byLane.get(r.lane)
      if (list) list.push(r)
      else byLane.set(r.lane, [r])
    }
    const done: string[] = []
    const failed: { id: string; error: string }[] = []
    let duplicates = 0
    let passing: unknown
    await Promise.all(
      [...byLane.values()].map(async (list) => {
        for (const row of list) {
          try {
            if ((await send(toSend(row, limits), deliver)).duplicate) duplicates++
            done.push(row.id)
          } catch (err) {
            if (!permanent(err)) {
              // The lane stops here: its later rows wait for this one (order per room).
              passing ??= err
              return
            }
            failed.push({ id: row.id, error: (err as Error).message })
          }
        }
      }),
    )
    if (failed.length)
      await tx.unsafe(
        `insert into ${n.failed} (id, room, to_user, body, data, from_user, idempotency_key, created_at, error)
         select o.id, o.room, o.to_user, o.body, o.data, o.from_user, o.idempotency_key, o.created_at, f.error
         from ${n.table} o join unnest($1::bigint[], $2::text[]) as f(id, error) on o.id = f.id`,
        [failed.map((f) => f.id), failed.map((f) => f.error)],
      )
    const gone = [...done, ...failed.map((f) => f.id)]
    if (gone.length) await tx.unsafe(`delete from ${n.table} where id = any($1::bigint[])`, [gone])
    return { delivered: done.length, duplicates, failed: failed.length, passing, took: true }
  })
}

/**
 * The lanes of the oldest rows that no other node holds, locked until the transaction ends.
 * A window of lanes all held elsewhere sends the search on to the next one.
 */
async function lockLanes(tx: TransactionSql, n: OutboxNames): Promise<string[]> {
  let after = '0'
  const tried = new Set<string>()
  for (let w = 0; w < SCAN_WINDOWS; w++) {
    const seen = await tx.unsafe<{ id: string; lane: string }[]>(
      `select id, ${LANE_SQL} as lane from ${n.table} where id > $1 order by id limit ${SCAN_ROWS}`,
      [after],
    )
    if (seen.length === 0) return []
    const fresh = [...new Set(seen.map((s) => s.lane))].filter((l) => !tried.has(l))
    shuffle(fresh)
    // Half the free lanes at most, so that nodes woken together by one NOTIFY share them; and
    // only as many as one batch takes (a lane locked and left untouched would hold up other nodes).
    const take = Math.max(1, Math.min(MAX_LANES, Math.ceil(fresh.length / 2)))
    for (let at = 0; at < fresh.length; at += take) {
      const candidates = fresh.slice(at, at + take)
      for (const l of candidates) tried.add(l)
      const got = await tx.unsafe<{ lane: string }[]>(
        `select lane from unnest($1::text[]) as lane where pg_try_advisory_xact_lock(hashtext($2), hashtext(lane))`,
        [candidates, n.table],
      )
      if (got.length) return got.map((g) => g.lane)
    }
    if (seen.length < SCAN_ROWS) return []
    after = seen.at(-1)!.id
  }
  return []
}

async function send(s: Send, deliver: Deliver): Promise<{ duplicate: boolean }> {
  const from = s.from.system ? s.from : ((await deliver.user?.(s.from.id)) ?? s.from)
  if (s.kind === 'dm') return deliver.sendDirect(from, s.to, s.body, s.data, dedupeKey('outbox', s.key))
  return deliver.publish(s.room, from, s.body, s.data, dedupeKey('outbox', s.key))
}

function shuffle<T>(a: T[]) {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[a[i], a[j]] = [a[j]!, a[i]!]
  }
}
