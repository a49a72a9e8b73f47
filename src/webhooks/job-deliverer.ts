import { log } from '../log'
import { backoff } from './queue'
import type { Held, Source } from './queue'

/**
 * Delivery one job at a time, each with its own backoff (push: one job per device). Unlike
 * the webhooks' deliverer, which retries a whole batch to its one URL, a job that fails here
 * leaves the common path: it waits for its retry on a timer of its own while the others go
 * on, so a device that never answers (any user can register one) delays nobody else. At most
 * `perLane` jobs of a lane (push: a provider) are in flight, retries at most half of them, so
 * a lane full of failing endpoints still sends fresh jobs. Jobs stay held in the source until
 * finished: memory counts them against its bound, Redis keeps them pending and renewed, and a
 * node that dies leaves them to the others (XAUTOCLAIM), retried until `retryMs`.
 */
export interface JobDelivererOptions {
  source: Source
  /** Sends one job: undefined when finished (delivered, or refused for good), else why to retry it. */
  send(job: Held): Promise<string | undefined>
  /** The lane of a job (push: its provider). */
  laneOf(job: Held): string
  /** Jobs of one lane in flight at most. */
  perLane: number
  /** Jobs this node holds at most: in flight, waiting for a lane, waiting for their retry. */
  holdMax: number
  /** Jobs taken from the source at once. */
  takeMax: number
  /**
   * New jobs waiting for a lane at most before the node stops taking more: high enough that a
   * lane whose sends all hang (one provider slow) leaves room to take the other lanes' jobs.
   */
  waitMax: number
  retryMs: number
  /** Held jobs are renewed this often (Redis claims). */
  renewMs: number
  /** What the jobs are, in log lines. */
  name: string
  /** A job given up after the retry window. */
  onExpired?(job: Held, problem: string): void
}

export interface JobDeliverer {
  /** Delivers what waits for up to `graceMs` more, then stops; what is left stays in a durable source. */
  stop(graceMs: number): Promise<void>
  /** Jobs held: in flight, waiting for a lane or for their retry. */
  held(): number
}

interface Lane {
  inflight: number
  retrying: number
  fresh: Held[]
  due: Held[]
}

const keyOf = (e: Held) => e.sid ?? e.id

export function startJobDeliverer(opts: JobDelivererOptions): JobDeliverer {
  const { source } = opts
  const lanes = new Map<string, Lane>()
  /** Every job held, by its key, with its failed attempts so far. */
  const held = new Map<string, { job: Held; attempts: number }>()
  const timers = new Set<ReturnType<typeof setTimeout>>()
  let waitingFresh = 0
  let stopping = false
  let stopAt = Infinity
  let wakeTaker: (() => void) | undefined
  let wakeIdle: (() => void) | undefined
  let failLogAt = 0
  let failedSinceLog = 0

  const laneOf = (e: Held) => {
    const name = opts.laneOf(e)
    let l = lanes.get(name)
    if (!l) lanes.set(name, (l = { inflight: 0, retrying: 0, fresh: [], due: [] }))
    return l
  }
  const wake = () => {
    const w = wakeTaker
    wakeTaker = undefined
    w?.()
    if (held.size === 0) wakeIdle?.()
  }

  /** Finished jobs leave the source in one call per tick, not one per job. */
  let finished: Held[] = []
  let finishing: Promise<void> | undefined
  const finish = (e: Held) => {
    held.delete(keyOf(e))
    finished.push(e)
    finishing ??= (async () => {
      await Promise.resolve()
      while (finished.length > 0) {
        const batch = finished
        finished = []
        await source.done(batch).catch((err) => log.warn(`${opts.name} jobs not marked done`, { err }))
      }
      finishing = undefined
    })()
  }

  function pump() {
    for (const lane of lanes.values())
      while (lane.inflight < opts.perLane) {
        // Retries take at most half the slots (never starved by a stream of new jobs), new jobs the rest.
        const retry = lane.due.length > 0 && lane.retrying < Math.max(1, opts.perLane >> 1)
        const job = retry ? lane.due.shift() : lane.fresh.shift()
        if (!job) break
        if (!retry) waitingFresh--
        run(lane, job, retry)
      }
    wake()
  }

  function run(lane: Lane, job: Held, retry: boolean) {
    lane.inflight++
    if (retry) lane.retrying++
    opts
      .send(job)
      .catch((err) => `not sent: ${(err as Error).message}`)
      .then((problem) => {
        lane.inflight--
        if (retry) lane.retrying--
        if (problem === undefined) finish(job)
        else failed(lane, job, problem)
        pump()
      })
  }

  function failed(lane: Lane, job: Held, problem: string) {
    const h = held.get(keyOf(job))
    if (!h) return
    if (job.at < Date.now() - opts.retryMs) {
      opts.onExpired?.(job, problem)
      log.error(`${opts.name} given up after the retry window`, { id: job.id, problem })
      finish(job)
      return
    }
    // One line per 10 s for all the jobs that failed meanwhile: a dead endpoint must not flood the log.
    failedSinceLog++
    if (Date.now() - failLogAt > 10_000) {
      log.warn(`${opts.name} delivery failed; retrying`, { jobs: failedSinceLog, problem })
      failLogAt = Date.now()
      failedSinceLog = 0
    }
    const t = setTimeout(
      () => {
        timers.delete(t)
        lane.due.push(job)
        pump()
      },
      backoff(h.attempts++),
    )
    timers.add(t)
  }

  const renewer = setInterval(() => {
    if (!source.renew || held.size === 0) return
    const jobs = [...held.values()].map((h) => h.job)
    for (let i = 0; i < jobs.length; i += 500) source.renew(jobs.slice(i, i + 500)).catch(() => {})
  }, opts.renewMs)

  let unreadable = false
  const running = (async () => {
    while (Date.now() < stopAt) {
      if (held.size >= opts.holdMax || waitingFresh >= opts.waitMax) {
        await new Promise<void>((r) => (wakeTaker = r))
        continue
      }
      let batch: Held[]
      try {
        batch = await source.take(Math.min(opts.takeMax, opts.holdMax - held.size), 0)
        if (unreadable) log.info(`${opts.name} queue readable again`)
        unreadable = false
      } catch (err) {
        if (!unreadable) log.warn(`${opts.name} queue not readable; retrying`, { err })
        unreadable = true
        await Bun.sleep(500)
        continue
      }
      if (batch.length === 0 && stopping) break
      for (const job of batch) {
        // A job of ours claimed back (a renewal came late) is held already.
        if (held.has(keyOf(job))) continue
        held.set(keyOf(job), { job, attempts: 0 })
        laneOf(job).fresh.push(job)
        waitingFresh++
      }
      pump()
    }
  })()

  return {
    held: () => held.size,
    async stop(graceMs) {
      stopping = true
      stopAt = Date.now() + graceMs
      await source.close()
      wake()
      await Promise.race([running, Bun.sleep(graceMs + 100)])
      if (held.size > 0) await Promise.race([new Promise<void>((r) => (wakeIdle = r)), Bun.sleep(Math.max(0, stopAt - Date.now()))])
      for (const t of timers) clearTimeout(t)
      timers.clear()
      clearInterval(renewer)
      wakeTaker?.()
      await finishing
    },
  }
}
