import { afterAll } from 'bun:test'
import postgres from 'postgres'
import type { Sql } from 'postgres'
import { PG_ADMIN } from '../helpers/postgres'
import type { TestClient } from '../helpers/client'

/**
 * The application's side of the outbox tests: the shared test database, one table per test
 * (dropped after the file, with its `_failed` twin and trigger function).
 */
export function outboxDb(tag: string) {
  const sql: Sql = postgres(PG_ADMIN, { max: 12, onnotice: () => {} })
  const tables: string[] = []
  let n = 0
  afterAll(async () => {
    for (const t of tables) {
      await sql.unsafe(`drop table if exists ${t}, ${t}_failed cascade`).catch(() => {})
      await sql.unsafe(`drop function if exists ${t}_notify() cascade`).catch(() => {})
    }
    await sql.end({ timeout: 1 })
  })
  return {
    sql,
    dsn: PG_ADMIN,
    /** A table name no other test (or run) uses. */
    table() {
      const t = `outbox_${tag}_${process.pid}_${Date.now().toString(36)}_${++n}`
      tables.push(t)
      return t
    },
    /** Resolves once the node has made the table (it creates it at start). */
    async ready(table: string) {
      for (let i = 0; i < 500; i++) {
        const [r] = await sql`select to_regclass(${table}) is not null as made`
        if (r?.made) return
        await Bun.sleep(20)
      }
      throw new Error(`${table} was never created`)
    },
    count: async (table: string) => Number((await sql.unsafe(`select count(*)::int as n from ${table}`))[0]!.n),
  }
}

/** The bodies of the `chat`/`dm` frames a client got in `room` (or all rooms), in order. */
export const bodies = (c: TestClient, room?: string, type = 'chat') =>
  c.frames.filter((f) => f.type === type && (room === undefined || f.room === room)).map((f) => f.body as string)
