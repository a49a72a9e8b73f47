import type { Sql } from 'postgres'
import { log } from '../log'

const PRUNE_EVERY_MS = 3_600_000

export interface RetentionOptions {
  /** Messages older than this many days are deleted; undefined: kept forever. */
  messageRetentionDays?: number
  auditRetentionDays?: number
}

/**
 * Deletes messages and audit rows past their retention: once at start (awaited), then every
 * hour. Nothing runs when neither is set. Returns its stop.
 */
export async function retention(sql: Sql, opts: RetentionOptions, failed: (err: unknown) => void): Promise<() => void> {
  async function prune() {
    try {
      if (opts.messageRetentionDays) {
        const r = await sql`delete from messages where created_at < now() - make_interval(days => ${opts.messageRetentionDays})`
        if (r.count) log.info('pruned messages', { count: r.count, days: opts.messageRetentionDays })
        // Votes go with their poll (an anonymous poll's voters are kept no longer than its message).
        if (r.count)
          await sql`delete from poll_votes v where not exists (select 1 from messages m where m.room = v.room and m.id = v.msg_id)`
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
  return () => {
    if (pruner) clearInterval(pruner)
  }
}
