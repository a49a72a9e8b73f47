import postgres from 'postgres'
import type { Sql } from 'postgres'
import { log } from '../log'
import type { Metrics } from '../metrics'
import { runBatch } from './batch'
import type { BatchResult, Deliver } from './batch'
import type { RowLimits } from './row'
import { ensureOutbox, outboxNames } from './schema'

export type { Deliver } from './batch'

export interface OutboxDeps {
  /** OUTBOX_DSN: the application's database. */
  dsn: string
  /** OUTBOX_TABLE (checked by config: a plain lowercase identifier). */
  table: string
  /** OUTBOX_POLL_MS: the poll that catches what a missed notification left. */
  pollMs: number
  nodeId: string
  limits: RowLimits
  deliver: Deliver
  metrics: Pick<Metrics, 'outbox'>
}

/** The transactional outbox of one node (docs/outbox.md): main starts it after the broker, stops it first on shutdown. */
export interface Outbox {
  /** Creates the table when missing, LISTENs, and delivers what is waiting. Throws when the database does not answer. */
  start(): Promise<void>
  /** No new batch; waits (up to `graceMs`) for the batch in flight to commit, then closes the connections. */
  stop(graceMs: number): Promise<void>
}

/** After a failure that may pass: the first wait, doubling up to the last. */
const BACKOFF_FIRST_MS = 250
const BACKOFF_MAX_MS = 30_000

/**
 * Delivers the rows of the outbox table: woken by NOTIFY (the table's trigger, at commit) and
 * every `pollMs`; batches follow each other while they find rows. A failure that may pass
 * (Redis away, the database away) waits a backoff before the next batch; rows that can never
 * be delivered are moved aside by the batch itself (outbox/batch.ts).
 */
export function createOutbox(deps: OutboxDeps): Outbox {
  const names = outboxNames(deps.table)
  // One connection for batches (one at a time), and postgres.js's own for LISTEN; the name shows in pg_stat_activity.
  const sql: Sql = postgres(deps.dsn, {
    max: 1,
    onnotice: () => {},
    connection: { application_name: `chat-outbox ${deps.nodeId}` },
  })
  let running: Promise<void> | undefined
  let again = false
  let stopped = false
  let poll: Timer | undefined
  let retry: Timer | undefined
  let backoffMs = 0
  let unlisten: (() => Promise<void>) | undefined
  /** One warning per backoff step, not one per batch. */
  let warnedAt = 0

  function wake() {
    if (stopped || retry) return
    if (running) return void (again = true)
    running = drain().finally(() => {
      running = undefined
      if (again) {
        again = false
        wake()
      }
    })
  }

  async function drain() {
    while (!stopped) {
      let r: BatchResult
      try {
        r = await runBatch(sql, names, deps.limits, deps.deliver)
      } catch (err) {
        r = { delivered: 0, duplicates: 0, failed: 0, passing: err, took: true }
      }
      const m = deps.metrics.outbox
      m.delivered.inc(r.delivered - r.duplicates)
      m.duplicate.inc(r.duplicates)
      m.failed.inc(r.failed)
      if (r.failed) log.warn('outbox: rows that can never be delivered moved aside', { table: names.failed, count: r.failed })
      if (r.duplicates)
        log.info('outbox: rows whose retry key was delivered already (a node stopped before its commit, or a key used again)', {
          count: r.duplicates,
        })
      if (r.passing !== undefined) return backOff(r.passing)
      backoffMs = 0
      if (!r.took || (r.delivered === 0 && r.failed === 0)) return
    }
  }

  function backOff(err: unknown) {
    backoffMs = backoffMs ? Math.min(BACKOFF_MAX_MS, backoffMs * 2) : BACKOFF_FIRST_MS
    if (Date.now() - warnedAt > 1000) {
      warnedAt = Date.now()
      log.warn('outbox: delivery failed; retrying', { err, retryInMs: backoffMs })
    }
    again = false
    retry = setTimeout(() => {
      retry = undefined
      wake()
    }, backoffMs)
  }

  return {
    async start() {
      await ensureOutbox(sql, names)
      // Called again on each reconnection of the LISTEN connection: what was inserted meanwhile is looked at.
      const l = await sql.listen(
        names.channel,
        () => wake(),
        () => wake(),
      )
      unlisten = l.unlisten
      poll = setInterval(wake, deps.pollMs)
      log.info('outbox on', { table: names.table, pollMs: deps.pollMs })
      wake()
    },
    async stop(graceMs) {
      stopped = true
      clearInterval(poll)
      clearTimeout(retry)
      await unlisten?.().catch(() => {})
      if (running) await Promise.race([running, Bun.sleep(graceMs)])
      await sql.end({ timeout: 1 })
    },
  }
}
