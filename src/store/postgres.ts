import postgres from 'postgres'
import type { Sql } from 'postgres'
import { log } from '../log'
import { auditList } from './activity'
import { health, pinger } from './health'
import { messageReads } from './message-reads'
import { migrate } from './migrate'
import { retention } from './retention'
import { createSearch } from './search'
import type { Store } from './types'
import { writer } from './writer'

export interface PostgresStoreOptions {
  dsn: string
  nodeId: string
  messageRetentionDays?: number
  auditRetentionDays?: number
  /** Messages that may wait for the database before new ones are refused. */
  maxBacklog?: number
  onError?: (err: unknown) => void
}

export type PostgresStore = Store & { sql: Sql }

/**
 * PostgreSQL through postgres.js, put together: migrations at start (migrate.ts), writes in
 * batches that outlast an outage (writer.ts: messages, users, sessions, audit), reads by seq
 * (message-reads.ts), search (search.ts), retention (retention.ts) and the readiness that
 * every operation and a ping report to (health.ts).
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
  if (applied.length) log.info('migrations applied', { applied })

  const state = health(opts.onError, () => writes.backlog)
  const writes = writer(sql, { nodeId: opts.nodeId, maxBacklog: opts.maxBacklog ?? 10_000, onError: opts.onError }, state)
  const stopPruning = await retention(sql, opts, (err) => state.failed(err))
  const stopPinging = pinger(sql, state)

  return {
    sql,
    ...messageReads(sql),
    search,
    save: writes.save,
    accepting: writes.accepting,
    userSeen: writes.userSeen,
    sessionOpened: writes.sessionOpened,
    sessionClosed: writes.sessionClosed,
    audit: writes.audit,
    auditList: (q) => auditList(sql, q),
    problem: () => (state.down ? `postgres: ${state.down}` : undefined),
    async close(ms = 3000) {
      stopPinging()
      stopPruning()
      await writes.close(ms)
      await sql.end({ timeout: 2 })
    },
  }
}
