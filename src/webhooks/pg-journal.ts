import type { Sql } from 'postgres'
import { log } from '../log'
import type { Encoded } from './events'
import type { Journal } from './queue'

const FLUSH_MS = 20
const RETRY_MS = 1000
const CHUNK = 1000

/**
 * The durable copy of the in-process queue (PostgreSQL on, Redis off). Writes are batched
 * every 20 ms; an event delivered before its batch is written is never written at all, so a
 * receiver that keeps up costs the database almost nothing. An event is at risk only in
 * those first 20 ms (a SIGKILL then loses it); a graceful stop writes what is buffered.
 */
export async function pgJournal(opts: { sql: Sql; onError?: (err: unknown) => void }): Promise<Journal> {
  const { sql } = opts
  let adds = new Map<string, Encoded>()
  let forgets = new Set<string>()
  let timer: Timer | undefined
  let writing: Promise<void> | undefined
  let down = false
  /** Rows loaded at start: in the table already, whatever the queue does with them. */
  const stored = new Set<string>()

  const schedule = (ms = FLUSH_MS) => {
    timer ??= setTimeout(() => {
      timer = undefined
      writing ??= write().finally(() => (writing = undefined))
    }, ms)
  }

  async function write() {
    // Delivered before written: neither row is needed.
    for (const id of forgets) if (adds.delete(id)) forgets.delete(id)
    if (adds.size === 0 && forgets.size === 0) return
    const rows = [...adds.values()]
    const gone = [...forgets]
    adds = new Map()
    forgets = new Set()
    try {
      await sql.begin(async (tx) => {
        for (let i = 0; i < rows.length; i += CHUNK) {
          const part = rows.slice(i, i + CHUNK)
          await tx`insert into webhook_events (id, at, event)
            select * from unnest(${part.map((e) => e.id)}::text[], ${part.map((e) => e.at)}::bigint[], ${part.map((e) => e.json)}::text[])
            on conflict (id) do nothing`
        }
        for (let i = 0; i < gone.length; i += CHUNK)
          await tx`delete from webhook_events where id = any(${gone.slice(i, i + CHUNK)}::text[])`
      })
      if (down) log.info('webhook journal writes again')
      down = false
    } catch (err) {
      opts.onError?.(err)
      if (!down) log.warn('webhook journal not written; retrying', { err: (err as Error).message })
      down = true
      // Put them back under what came since (a later forget still cancels an earlier add).
      for (const e of rows) if (!adds.has(e.id)) adds.set(e.id, e)
      for (const id of gone) forgets.add(id)
      schedule(RETRY_MS)
      return
    }
    if (adds.size || forgets.size) schedule()
  }

  return {
    async load() {
      const rows = await sql<{ id: string; at: string; event: string }[]>`select id, at, event from webhook_events order by seq`
      for (const r of rows) stored.add(r.id)
      return rows.map((r) => ({ id: r.id, at: Number(r.at), json: r.event }))
    },
    add(events) {
      for (const e of events) if (!stored.has(e.id)) adds.set(e.id, e)
      schedule()
    },
    forget(ids) {
      for (const id of ids) {
        stored.delete(id)
        forgets.add(id)
      }
      schedule()
    },
    async close(ms) {
      if (timer) clearTimeout(timer)
      timer = undefined
      const until = Date.now() + ms
      while (Date.now() < until) {
        await writing
        if (adds.size === 0 && forgets.size === 0) break
        writing = write().finally(() => (writing = undefined))
        await writing
        if (down) await Bun.sleep(100)
      }
    },
  }
}
