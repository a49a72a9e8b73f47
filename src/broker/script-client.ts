import { RedisClient } from 'bun'
import type { BunRedis } from '../cluster/ledger'
import { log } from '../log'

/**
 * A connection with calls outstanding that has answered none of them for this long is stalled
 * (Bun's client has no command timeout of its own): its calls fail and it reconnects.
 */
const STALL_MS = 3_000
const BACKOFF_MAX_MS = 2_000

/** A script by its text: EVALSHA, loading it when Redis does not know it. */
export type RunScript = BunRedis['run']

/**
 * The connection of the hot calls on one Redis: Bun's own client, which costs a fraction of
 * ioredis's CPU per call (docs/performance.md, round 3). It runs the append script and the calls
 * of a connect's path (the ledger's writes and reads, a member's summary, a resume's read, the
 * presence windows: redis-scripts.ts `hotScripts`, cluster/ledger.ts); everything else stays on
 * the ioredis connections. Not for a Redis Cluster, whose slots it does not follow.
 *
 * Like the ioredis command connection it queues nothing while disconnected (a send fails at
 * once: the hub answers `unavailable`) and reconnects with a backoff. A connection that stops
 * answering (STALL_MS without any answer while calls wait) fails its calls and reconnects; one
 * that answers late because Redis or this node is overloaded fails none: a call's age alone
 * says nothing, as every call queued behind a burst is old, and failing it would tell its
 * sender "not accepted" about a message Redis is about to append.
 */
export interface ScriptClient extends BunRedis {
  connect(): Promise<void>
  close(): void
  readonly connected: boolean
}

export function scriptClient(url: string, opts: { stallMs?: number } = {}): ScriptClient {
  const stallMs = opts.stallMs ?? STALL_MS
  const client = new RedisClient(url, {
    enableOfflineQueue: false,
    autoReconnect: true,
    enableAutoPipelining: true,
    connectionTimeout: STALL_MS,
  })
  const shas = new Map<string, string>()
  /** SCRIPT LOADs in flight, by sha. */
  const loading = new Map<string, Promise<unknown>>()
  /** Calls sent and not answered yet, and when the connection last answered (or became busy). */
  let waiting = 0
  let progress = 0
  /** Set when the watchdog closed a stalled connection: its calls fail with the reason. */
  let stalled = false
  let closing = false
  let retry = 0

  client.onclose = () => {
    if (closing) return
    // Bun gives up after its own retries (and never retries a close of ours); keep trying, as ioredis does.
    const wait = Math.min(100 * 2 ** retry++, BACKOFF_MAX_MS)
    setTimeout(
      () =>
        void client.connect().then(
          () => ((retry = 0), (stalled = false)),
          () => {},
        ),
      wait,
    ).unref?.()
  }

  const watchdog = setInterval(
    () => {
      if (waiting === 0 || stalled || performance.now() - progress < stallMs) return
      stalled = true
      log.warn('redis (append connection) stalled; reconnecting', { waiting, stallMs })
      client.close() // Bun fails every call it still waits for
    },
    Math.min(500, stallMs / 2),
  )
  watchdog.unref?.()

  const answered = (v: unknown) => {
    waiting--
    progress = performance.now()
    return v
  }
  const failed = (err: unknown): never => {
    waiting--
    progress = performance.now()
    throw stalled ? new Error(`redis: no answer in ${stallMs} ms`) : err
  }
  function send(command: string, args: string[]): Promise<unknown> {
    if (waiting++ === 0) progress = performance.now()
    return client.send(command, args).then(answered, failed)
  }
  const call = (args: string[]) => send('EVALSHA', args)

  async function run(lua: string, keys: string[], args: (string | number)[]) {
    let sha = shas.get(lua)
    if (sha === undefined) shas.set(lua, (sha = new Bun.CryptoHasher('sha1').update(lua).digest('hex')))
    const argv = [sha, String(keys.length), ...keys, ...args.map(String)]
    try {
      return await call(argv)
    } catch (err) {
      // A Redis that restarted (or a node's first calls) finds the script unknown: loaded once,
      // however many calls were in flight (a burst of connects sent hundreds of loads).
      if (!String((err as Error).message).includes('NOSCRIPT')) throw err
      let load = loading.get(sha)
      if (!load) {
        load = client.send('SCRIPT', ['LOAD', lua]).finally(() => loading.delete(sha!))
        loading.set(sha, load)
        log.debug('script loaded', { sha })
      }
      await load
      return call(argv)
    }
  }

  return {
    run,
    send,
    connect: () => client.connect(),
    close() {
      closing = true
      clearInterval(watchdog)
      client.close()
    },
    get connected() {
      return client.connected
    },
  }
}
