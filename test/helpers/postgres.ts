import postgres from 'postgres'

export const PG_ADMIN = 'postgres://postgres@127.0.0.1:5432/test'

/** A freshly created database of its own for one test file; `drop()` removes it. */
export async function freshDatabase(tag: string) {
  const name = `chat_${tag}_${process.pid}_${Date.now().toString(36)}`.toLowerCase()
  const admin = postgres(PG_ADMIN, { max: 1, onnotice: () => {} })
  await admin.unsafe(`create database ${name}`)
  const dsn = `postgres://postgres@127.0.0.1:5432/${name}`
  const sql = postgres(dsn, { max: 2, onnotice: () => {} })
  return {
    name,
    dsn,
    /** The same database through another port (a proxy in front of PostgreSQL). */
    dsnVia: (port: number) => `postgres://postgres@127.0.0.1:${port}/${name}`,
    sql,
    async drop() {
      await sql.end({ timeout: 1 })
      await admin.unsafe(`drop database if exists ${name} with (force)`)
      await admin.end({ timeout: 1 })
    },
  }
}
