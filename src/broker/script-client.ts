import { RedisClient } from 'bun'
import { log } from '../log'

/** A call that has not answered in this long fails (Bun's client has no command timeout of its own). */
const TIMEOUT_MS = 3_000
const BACKOFF_MAX_MS = 2_000

export type RunScript = (lua: string, keys: string[], args: (string | number)[]) => Promise<unknown>

/**
 * The append script's connection on one Redis: Bun's own client, which costs a fraction of
 * ioredis's CPU per call (docs/performance.md, round 3). It only runs scripts (EVALSHA, loading
 * a script Redis does not know); everything else stays on the ioredis connections. Not for a
 * Redis Cluster, whose slots it does not follow.
 *
 * Like the ioredis command connection it queues nothing while disconnected (a send fails at
 * once: the hub answers `unavailable`), reconnects with a backoff, and fails a call that has
 * not answered in TIMEOUT_MS.
 */
export interface ScriptClient {
  run: RunScript
  connect(): Promise<void>
  close(): void
  readonly connected: boolean
}

export function scriptClient(url: string): ScriptClient {
  const client = new RedisClient(url, { enableOfflineQueue: false, autoReconnect: true, enableAutoPipelining: true, connectionTimeout: TIMEOUT_MS })
  const shas = new Map<string, string>()
  /** Calls not answered yet, oldest first (a Map keeps insertion order). */
  const pending = new Map<number, { at: number; reject: (err: Error) => void }>()
  let next = 0
  let closing = false
  let retry = 0

  client.onclose = () => {
    if (closing) return
    // Bun gives up after its own retries; keep trying, as ioredis does.
    const wait = Math.min(100 * 2 ** retry++, BACKOFF_MAX_MS)
    setTimeout(() => void client.connect().then(() => (retry = 0), () => {}), wait).unref?.()
  }

  const watchdog = setInterval(() => {
    const now = performance.now()
    for (const [id, p] of pending) {
      if (now - p.at < TIMEOUT_MS) break
      pending.delete(id)
      p.reject(new Error(`redis: no answer in ${TIMEOUT_MS} ms`))
    }
  }, 500)
  watchdog.unref?.()

  function call(args: string[]): Promise<unknown> {
    const id = next++
    return new Promise((resolve, reject) => {
      pending.set(id, { at: performance.now(), reject })
      client.send('EVALSHA', args).then(
        (v) => pending.delete(id) && resolve(v),
        (err) => pending.delete(id) && reject(err),
      )
    })
  }

  async function run(lua: string, keys: string[], args: (string | number)[]) {
    let sha = shas.get(lua)
    if (sha === undefined) shas.set(lua, (sha = new Bun.CryptoHasher('sha1').update(lua).digest('hex')))
    const argv = [sha, String(keys.length), ...keys, ...args.map(String)]
    try {
      return await call(argv)
    } catch (err) {
      // A Redis that restarted has forgotten its scripts.
      if (!String((err as Error).message).includes('NOSCRIPT')) throw err
      await client.send('SCRIPT', ['LOAD', lua])
      log.debug('append script loaded again')
      return call(argv)
    }
  }

  return {
    run,
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
