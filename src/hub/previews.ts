import { NoPreview, fetchPreview, firstUrl } from '../core/link-preview'
import type { AllowList } from '../core/outbound'
import { OutboundRefused } from '../core/outbound-fetch'
import type { LinkPreview } from '../core/room-log'
import { SYSTEM_USER } from '../core/identity'
import { FrameError } from '../core/errors'
import { log } from '../log'
import type { Metrics } from '../metrics'
import { eventHead, eventTail } from '../protocol/server-frames'
import type { RoomEvent } from '../protocol/server-frames'
import type { Append } from './append'

/**
 * Link previews (PROTOCOL-v4, LINK_PREVIEWS): a chat message's first http(s) URL is looked up
 * OFF the chat path, by the node that accepted the message (so one node per message): the
 * message's ack never waits for it. A bounded queue feeds a few fetches at a time
 * (core/link-preview.ts, under the outbound rule); each result is cached per URL, and each
 * message whose link has a preview gets its own `preview` event appended to the room's log as
 * the server, also when the preview came from the cache. A message deleted before its preview
 * is refused by the log (`not_found`) and gets none.
 */
export interface Previews {
  /** A chat message was accepted: queues its first link's preview (cheap when there is no `://`). */
  created(room: string, msg: string, body: string): void
  /** Resolves once the queue is empty and every fetch done (drain, tests). */
  idle(): Promise<void>
}

/** Previews by URL, shared when it can be (Redis): `null` is a link known to have none. */
export interface PreviewCache {
  get(url: string): Promise<LinkPreview | null | undefined>
  set(url: string, preview: LinkPreview | null): Promise<void>
}

/** How long a preview is kept, and a link known to have none (a page may gain its tags). */
export const PREVIEW_TTL_MS = 60 * 60_000
export const NONE_TTL_MS = 10 * 60_000
const CACHE_MAX = 2000
const CONCURRENCY = 4
/** Past this many links waiting, new ones get no preview (counted `dropped`): a flood of links costs a bounded queue. */
const QUEUE_MAX = 1000

/** A bounded LRU with a TTL per entry, in this process. */
export function memoryPreviewCache(max = CACHE_MAX): PreviewCache {
  const entries = new Map<string, { until: number; preview: LinkPreview | null }>()
  return {
    async get(url) {
      const e = entries.get(url)
      if (!e) return undefined
      entries.delete(url)
      if (e.until < Date.now()) return undefined
      entries.set(url, e) // most recently used last
      return e.preview
    },
    async set(url, preview) {
      entries.delete(url)
      entries.set(url, { until: Date.now() + (preview ? PREVIEW_TTL_MS : NONE_TTL_MS), preview })
      if (entries.size > max) entries.delete(entries.keys().next().value!)
    },
  }
}

/** The Redis commands a shared cache needs (ioredis, one Redis or a Cluster). */
export interface CacheRedis {
  get(key: string): Promise<string | null>
  set(key: string, value: string, px: 'PX', ms: number): Promise<unknown>
}

/**
 * The cluster's cache in Redis (one key per URL, expiring by itself), behind this node's LRU;
 * a Redis that fails is a miss, never an error of the preview.
 */
export function sharedPreviewCache(redis: CacheRedis, prefix: string, local = memoryPreviewCache()): PreviewCache {
  const key = (url: string) => `${prefix}preview:${new Bun.CryptoHasher('sha256').update(url).digest('hex')}`
  return {
    async get(url) {
      const hit = await local.get(url)
      if (hit !== undefined) return hit
      const raw = await redis.get(key(url)).catch(() => null)
      if (raw === null) return undefined
      const preview = JSON.parse(raw) as LinkPreview | null
      await local.set(url, preview)
      return preview
    },
    async set(url, preview) {
      await local.set(url, preview)
      await redis.set(key(url), JSON.stringify(preview), 'PX', preview ? PREVIEW_TTL_MS : NONE_TTL_MS).catch(() => {})
    },
  }
}

export interface PreviewDeps {
  append: Append
  metrics: Pick<Metrics, 'previews'>
  allow: AllowList
  timeoutMs: number
  cache?: PreviewCache
  /** Name resolution (tests); default the system's. */
  resolve?: (name: string) => Promise<string[]>
}

type Result = 'fetched' | 'cached' | 'none' | 'refused' | 'failed' | 'dropped' | 'gone'

export function createPreviews(deps: PreviewDeps): Previews {
  const cache = deps.cache ?? memoryPreviewCache()
  const queue: { room: string; msg: string; url: string }[] = []
  /** Fetches in flight by URL: a second message with the same link waits for the first fetch. */
  const inflight = new Map<string, Promise<LinkPreview | null>>()
  let running = 0
  let scheduled = false
  let waiters: (() => void)[] = []
  const count = (r: Result) => deps.metrics.previews.inc({ result: r })

  /** The link's preview (null: none) and whether it took a fetch; throws what the fetch threw when it is worth trying again later. */
  async function lookup(url: string): Promise<{ preview: LinkPreview | null; fetched: boolean }> {
    const hit = await cache.get(url)
    if (hit !== undefined) return { preview: hit, fetched: false }
    const pending = inflight.get(url)
    if (pending) return { preview: await pending, fetched: false }
    const p = fetchPreview(url, { allow: deps.allow, timeoutMs: deps.timeoutMs, resolve: deps.resolve }).then(
      async (preview) => {
        await cache.set(url, preview)
        return preview
      },
      async (err) => {
        // Refused for good or without a preview: known for a while. A timeout or a network error may pass.
        if (err instanceof NoPreview || (err instanceof OutboundRefused && !err.transient)) await cache.set(url, null)
        throw err
      },
    )
    inflight.set(url, p)
    try {
      return { preview: await p, fetched: true }
    } finally {
      inflight.delete(url)
    }
  }

  async function run(job: { room: string; msg: string; url: string }): Promise<Result> {
    let found: { preview: LinkPreview | null; fetched: boolean }
    try {
      found = await lookup(job.url)
    } catch (err) {
      if (err instanceof NoPreview) return 'none'
      if (err instanceof OutboundRefused) {
        log.debug('link preview refused', { url: job.url.slice(0, 200), reason: err.message })
        return 'refused'
      }
      log.debug('link preview failed', { url: job.url.slice(0, 200), err: String(err) })
      return 'failed'
    }
    if (!found.preview) return 'none'
    const event: RoomEvent = {
      type: 'preview',
      id: Bun.randomUUIDv7(),
      room: job.room,
      from: SYSTEM_USER,
      ts: new Date().toISOString(),
      extra: { msg: job.msg, preview: found.preview },
    }
    try {
      // Keyed by the message: a second attempt at the same preview appends nothing.
      await deps.append(job.room, { event, head: eventHead('preview'), tail: eventTail(event) }, JSON.stringify(['preview', job.msg]))
    } catch (err) {
      if (err instanceof FrameError && err.code === 'not_found') return 'gone'
      log.warn('link preview not appended', { room: job.room, msg: job.msg, err: err instanceof Error ? err.message : String(err) })
      return 'failed'
    }
    return found.fetched ? 'fetched' : 'cached'
  }

  function pump() {
    scheduled = false
    while (running < CONCURRENCY && queue.length) {
      const job = queue.shift()!
      running++
      void run(job)
        .then(count, () => count('failed'))
        .finally(() => {
          running--
          pump()
        })
    }
    if (running === 0 && queue.length === 0) {
      const w = waiters
      waiters = []
      for (const f of w) f()
    }
  }

  return {
    created(room, msg, body) {
      const url = firstUrl(body)
      if (!url) return
      if (queue.length >= QUEUE_MAX) return count('dropped')
      queue.push({ room, msg, url })
      // Past this tick: the message's ack and fan-out go first, whatever the fetch's first steps cost.
      if (!scheduled) {
        scheduled = true
        setImmediate(pump)
      }
    },
    idle() {
      if (running === 0 && queue.length === 0 && !scheduled) return Promise.resolve()
      return new Promise((resolve) => waiters.push(resolve))
    },
  }
}
