import type { Sql } from 'postgres'
import init from './migrations/001_init.sql' with { type: 'text' }
import conversations from './migrations/002_conversations.sql' with { type: 'text' }
import auditIdempotent from './migrations/003_audit_idempotent.sql' with { type: 'text' }
import webhooks from './migrations/004_webhooks.sql' with { type: 'text' }
import lifecycle from './migrations/005_lifecycle.sql' with { type: 'text' }
import push from './migrations/006_push.sql' with { type: 'text' }
import searchPins from './migrations/007_search_pins.sql' with { type: 'text' }
import uploads from './migrations/008_uploads.sql' with { type: 'text' }
import searchSymbols from './migrations/009_search_symbols.sql' with { type: 'text' }
import previews from './migrations/010_previews.sql' with { type: 'text' }
import pollsSettings from './migrations/011_polls_settings.sql' with { type: 'text' }
import threadsScheduled from './migrations/012_threads_scheduled.sql' with { type: 'text' }

/** Every migration, in order. Files are embedded, so the compiled binary carries them. */
export const migrations: { name: string; sql: string }[] = [
  { name: '001_init', sql: init },
  { name: '002_conversations', sql: conversations },
  { name: '003_audit_idempotent', sql: auditIdempotent },
  { name: '004_webhooks', sql: webhooks },
  { name: '005_lifecycle', sql: lifecycle },
  { name: '006_push', sql: push },
  { name: '007_search_pins', sql: searchPins },
  { name: '008_uploads', sql: uploads },
  { name: '009_search_symbols', sql: searchSymbols },
  { name: '010_previews', sql: previews },
  { name: '011_polls_settings', sql: pollsSettings },
  { name: '012_threads_scheduled', sql: threadsScheduled },
]

/** An arbitrary constant: the advisory lock that serialises migrations across nodes. */
const MIGRATION_LOCK = 7_214_420_001

/**
 * Applies pending migrations in one transaction under an advisory lock, so that nodes
 * starting together apply each migration exactly once. Returns the names applied.
 */
export async function migrate(sql: Sql): Promise<string[]> {
  return sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK})`
    await tx`create table if not exists schema_migrations (name text primary key, applied_at timestamptz not null default now())`
    const done = new Set((await tx<{ name: string }[]>`select name from schema_migrations`).map((r) => r.name))
    const applied: string[] = []
    for (const m of migrations) {
      if (done.has(m.name)) continue
      await tx.unsafe(m.sql)
      await tx`insert into schema_migrations (name) values (${m.name})`
      applied.push(m.name)
    }
    return applied
  })
}
