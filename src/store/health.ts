import type { Sql } from 'postgres'
import { log } from '../log'

const PING_EVERY_MS = 2000
const PING_TIMEOUT_MS = 3000

/** Whether PostgreSQL answers: every write, prune and ping reports here; readiness reads it. */
export interface Health {
  /** An operation failed: PostgreSQL is down until one succeeds (logged once per outage). */
  failed(err: unknown): void
  /** An operation succeeded: PostgreSQL is up again. */
  succeeded(): void
  /** Why PostgreSQL is unavailable; undefined while it answers. */
  readonly down: string | undefined
}

/** `backlog`: messages waiting to be written, for the line that says PostgreSQL is back. */
export function health(onError: ((err: unknown) => void) | undefined, backlog: () => number): Health {
  let down: string | undefined
  return {
    failed(err) {
      onError?.(err)
      const reason = (err as Error)?.message ?? String(err)
      if (!down) log.warn('postgres unavailable', { err: reason })
      down = reason
    },
    succeeded() {
      if (down) log.info('postgres available again', { backlog: backlog() })
      down = undefined
    },
    get down() {
      return down
    },
  }
}

/**
 * A ping tells readiness both ways: that the database went away while a write waits on a dead
 * connection, and that it came back while nothing is being written. Returns its stop.
 */
export function pinger(sql: Sql, h: Health): () => void {
  let pinging = false
  const timer = setInterval(() => {
    if (pinging) return
    pinging = true
    withTimeout(PING_TIMEOUT_MS, () => sql`select 1`)
      .then(
        () => h.succeeded(),
        (err) => h.failed(err),
      )
      .finally(() => (pinging = false))
  }, PING_EVERY_MS)
  timer.unref()
  return () => clearInterval(timer)
}

/** `work`, or an error after `ms`: postgres.js can wait forever on a connection dropped during its handshake. */
export async function withTimeout<T>(ms: number, work: () => Promise<T>): Promise<T> {
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
