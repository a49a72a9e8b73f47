import { log } from '../log'
import type { Encoded } from './events'

/** An event taken for delivery; `sid` is its Redis stream entry id when Redis holds the queue. */
export interface Held extends Encoded {
  sid?: string
}

/**
 * Where pending events wait: in this process (optionally journalled to PostgreSQL) or in a
 * Redis stream shared by the cluster. One deliverer per node takes batches from it.
 */
export interface Source {
  /** Adds events without waiting; past the bound the oldest waiting ones are dropped (`onDrop`). */
  push(events: Encoded[]): void
  /**
   * The next batch of 1..max events. Once one event is there, waits up to `lingerMs` for a
   * fuller batch. Resolves with [] now and then (closing, a Redis read that timed out).
   */
  take(max: number, lingerMs: number): Promise<Held[]>
  /** The batch is finished (delivered, or given up after the retry window). */
  done(batch: Held[]): Promise<void>
  /** Still retrying these: keep them this node's (Redis: nobody else claims them meanwhile). */
  renew?(batch: Held[]): Promise<void>
  depth(): number
  close(): Promise<void>
}

/** A durable copy of a memory queue (PostgreSQL): what it holds is loaded again at start. */
export interface Journal {
  load(): Promise<Encoded[]>
  add(events: Encoded[]): void
  forget(ids: string[]): void
  /** Writes what is buffered (bounded by `ms`). */
  close(ms: number): Promise<void>
}

/** A bounded in-process queue; the oldest waiting events go first when it is full. */
export function memorySource(opts: { bound: number; onDrop: (n: number) => void; journal?: Journal }): Source {
  let waiting: Encoded[] = []
  let head = 0
  let inflight = 0
  let closed = false
  let wake: (() => void) | undefined
  let wantFull = 0
  const size = () => waiting.length - head

  const signal = () => {
    const w = wake
    wake = undefined
    w?.()
  }

  return {
    push(events) {
      if (closed) return
      for (const e of events) waiting.push(e)
      opts.journal?.add(events)
      const excess = size() + inflight - opts.bound
      if (excess > 0) {
        const n = Math.min(excess, size())
        const gone = waiting.slice(head, head + n)
        head += n
        opts.onDrop(n)
        opts.journal?.forget(gone.map((e) => e.id))
      }
      if (head > 4096 && head * 2 > waiting.length) {
        waiting = waiting.slice(head)
        head = 0
      }
      if (size() >= wantFull) signal()
    },
    async take(max, lingerMs) {
      if (size() === 0 && !closed) {
        wantFull = 1
        await new Promise<void>((r) => (wake = r))
      }
      if (size() < max && lingerMs > 0 && !closed) {
        wantFull = max
        let timer: ReturnType<typeof setTimeout> | undefined
        await new Promise<void>((r) => {
          wake = r
          timer = setTimeout(r, lingerMs)
        })
        clearTimeout(timer)
        wake = undefined
      }
      const n = Math.min(max, size())
      const batch = waiting.slice(head, head + n)
      head += n
      inflight += n
      return batch
    },
    async done(batch) {
      inflight -= batch.length
      opts.journal?.forget(batch.map((e) => e.id))
    },
    depth: () => size() + inflight,
    async close() {
      closed = true
      signal()
    },
  }
}

export interface DelivererMetrics {
  sent: { inc(n?: number): void }
  failed: { inc(n?: number): void }
  retried: { inc(n?: number): void }
  latency: { observe(seconds: number): void }
}

export interface DelivererOptions {
  source: Source
  /**
   * Sends one request body; resolves with undefined on a 2xx, else what went wrong. (Jobs with
   * a destination each, like pushes, go through job-deliverer.ts: retried one by one.)
   */
  post: (body: string) => Promise<string | undefined>
  /** What the queue carries, in its log lines (default `webhook`). */
  name?: string
  batchMax: number
  batchMs: number
  retryMs: number
  /** Renew held events at least this often while retrying (Redis claims). */
  renewMs: number
  metrics: DelivererMetrics
}

export const BACKOFF_FIRST_MS = 250
export const BACKOFF_MAX_MS = 30_000

/** 250 ms, doubling, capped at 30 s, with ±20 % jitter so that nodes do not retry in step. */
export const backoff = (attempt: number) => Math.min(BACKOFF_FIRST_MS * 2 ** attempt, BACKOFF_MAX_MS) * (0.8 + Math.random() * 0.4)

export const requestBody = (batch: Held[]) => `{"events":[${batch.map((e) => e.json).join(',')}]}`

/**
 * One delivery loop per node: a batch at a time, retried with the same events (same ids)
 * until a 2xx or until an event is older than the retry window (then it is given up and
 * counted as failed). Events wait in the source meanwhile, within its bound.
 */
export function startDeliverer(opts: DelivererOptions) {
  const { source, metrics } = opts
  const name = opts.name ?? 'webhook'
  const send = async (batch: Held[]): Promise<{ retry: Held[]; problem?: string }> => {
    const problem = await opts.post(requestBody(batch))
    return problem === undefined ? { retry: [] } : { retry: batch, problem }
  }
  let stopping = false
  let stopAt = Infinity
  let stopTimer: ReturnType<typeof setTimeout> | undefined
  let wakeSleep: (() => void) | undefined
  /** The source failed to read (Redis down): logged once, not every 500 ms. */
  let unreadable = false

  const pause = (ms: number) =>
    new Promise<void>((r) => {
      const t = setTimeout(r, ms)
      wakeSleep = () => {
        clearTimeout(t)
        r()
      }
    })

  async function deliver(batch: Held[]) {
    for (let attempt = 0; batch.length > 0; attempt++) {
      if (attempt > 0) {
        metrics.retried.inc(batch.length)
        // Renewed right before each retry too: a claim then never ages past one request timeout.
        await source.renew?.(batch).catch(() => {})
      }
      const { retry, problem } = await send(batch)
      if (retry.length < batch.length) {
        const finished = retry.length === 0 ? batch : batch.filter((e) => !retry.includes(e))
        const now = Date.now()
        metrics.sent.inc(finished.length)
        for (const e of finished) metrics.latency.observe((now - e.at) / 1000)
        await source.done(finished)
        batch = retry
      }
      if (batch.length === 0) return
      if (attempt === 0) log.warn(`${name} delivery failed; retrying`, { events: batch.length, problem })
      const cutoff = Date.now() - opts.retryMs
      const expired = batch.filter((e) => e.at < cutoff)
      if (expired.length > 0) {
        metrics.failed.inc(expired.length)
        log.error(`${name} events given up after the retry window`, { events: expired.length, problem })
        batch = batch.filter((e) => e.at >= cutoff)
        await source.done(expired)
      }
      if (batch.length === 0 || Date.now() >= stopAt) return
      // Sleep in steps no longer than renewMs, renewing the claim on the held events.
      const until = Date.now() + backoff(attempt)
      while (Date.now() < until && Date.now() < stopAt) {
        await source.renew?.(batch).catch(() => {})
        await pause(Math.min(until - Date.now(), opts.renewMs))
      }
      if (Date.now() >= stopAt) return
    }
  }

  const running = (async () => {
    while (!stopping || source.depth() > 0) {
      if (Date.now() >= stopAt) break
      let batch: Held[]
      try {
        batch = await source.take(opts.batchMax, stopping ? 0 : opts.batchMs)
        if (unreadable) log.info(`${name} queue readable again`)
        unreadable = false
      } catch (err) {
        if (!unreadable) log.warn(`${name} queue not readable; retrying`, { err })
        unreadable = true
        await pause(500)
        continue
      }
      if (batch.length === 0) {
        if (stopping) break
        continue
      }
      try {
        await deliver(batch)
      } catch (err) {
        log.warn(`${name} batch not finished`, { err })
        await pause(500)
      }
    }
  })()

  return {
    /**
     * Delivers what waits for up to `graceMs` more, then stops; what is left stays in a
     * durable source (Redis, the journal) for later.
     */
    async stop(graceMs: number) {
      stopping = true
      stopAt = Date.now() + graceMs
      stopTimer = setTimeout(() => wakeSleep?.(), graceMs)
      await source.close()
      await Promise.race([running, Bun.sleep(graceMs + 100)])
      clearTimeout(stopTimer)
    },
  }
}
