import type Redis from 'ioredis'
import { log } from '../log'
import type { Encoded } from './events'
import type { Held, Source } from './queue'
import PUSH from './lua/queue-push.lua' with { type: 'text' }

const DEFAULT_GROUP = 'webhooks'
const FLUSH_RETRY_MS = 500

type Entry = [string, string[] | null]

const heldOf = ([sid, f]: Entry): Held | undefined => {
  if (!f) return undefined // trimmed by the bound while pending
  const m: Record<string, string> = {}
  for (let i = 0; i + 1 < f.length; i += 2) m[f[i]!] = f[i + 1]!
  return { sid, id: m.i!, at: Number(m.a), json: m.e! }
}

/**
 * The cluster's queue: one Redis stream with one consumer group. Each entry goes to one
 * node (XREADGROUP), stays pending until that node acknowledges it (XACK + XDEL, so the
 * stream's length is the queue's depth), and is claimed by another node (XAUTOCLAIM) once it
 * has been idle `claimMs`: a node that dies mid-delivery leaves its events to the others.
 * A node that is retrying renews its claim (XCLAIM JUSTID) well within `claimMs`.
 */
export function redisSource(opts: {
  cmd: Redis
  /** A connection of its own: XREADGROUP BLOCK holds it. */
  blocking: Redis
  prefix: string
  nodeId: string
  bound: number
  claimMs: number
  onDrop: (n: number) => void
  onError?: (err: unknown) => void
  /** The queue's hash tag and consumer group: another queue (push) shares the code, not the stream. Default `wh` / `webhooks`. */
  tag?: string
  group?: string
}): Source & { start(): Promise<void> } {
  const { cmd, blocking } = opts
  const stream = `${opts.prefix}{${opts.tag ?? 'wh'}}:events`
  const GROUP = opts.group ?? DEFAULT_GROUP
  const me = opts.nodeId
  /** Emitted events not yet in Redis (written in one script call per tick). */
  let local: Encoded[] = []
  let flushing = false
  let flushTimer: Timer | undefined
  let depth = 0
  /** done() calls made so far (see done). */
  let doneAsked = 0
  let closed = false
  let claimCursor = '0-0'
  let lastClaim = 0

  cmd.defineCommand('webhookPush', { numberOfKeys: 1, lua: PUSH })
  const push = (cmd as unknown as { webhookPush(k: string, ...a: (string | number)[]): Promise<[number, number]> }).webhookPush.bind(cmd)

  async function flush() {
    flushTimer = undefined
    if (flushing || local.length === 0) return
    flushing = true
    const batch = local
    local = []
    try {
      const args: (string | number)[] = []
      for (const e of batch) args.push(e.id, e.at, e.json)
      const [dropped, length] = await push(stream, opts.bound, ...args)
      depth = length
      if (dropped > 0) opts.onDrop(dropped)
    } catch (err) {
      opts.onError?.(err)
      // Keep them (newest last) within the bound; try again shortly.
      local = batch.concat(local)
      if (local.length > opts.bound) {
        opts.onDrop(local.length - opts.bound)
        local = local.slice(local.length - opts.bound)
      }
      flushTimer ??= setTimeout(flush, FLUSH_RETRY_MS)
    } finally {
      flushing = false
    }
    if (local.length > 0) flushTimer ??= setTimeout(flush, 0)
  }

  async function claimDead(max: number): Promise<Held[]> {
    lastClaim = Date.now()
    const [next, entries] = (await cmd.xautoclaim(stream, GROUP, me, opts.claimMs, claimCursor, 'COUNT', max)) as [
      string,
      Entry[],
      string[]?,
    ]
    claimCursor = next
    const held = entries.map(heldOf).filter((e): e is Held => e !== undefined)
    if (held.length) log.info('webhook events claimed from a silent node', { events: held.length })
    return held
  }

  async function read(max: number, blockMs: number): Promise<Held[]> {
    const args: (string | number)[] = ['GROUP', GROUP, me, 'COUNT', max]
    if (blockMs > 0) args.push('BLOCK', blockMs)
    args.push('STREAMS', stream, '>')
    const r =
      (await (blocking as unknown as { xreadgroup(...a: (string | number)[]): Promise<[string, Entry[]][] | null> }).xreadgroup(...args)) ??
      []
    return (r[0]?.[1] ?? []).map(heldOf).filter((e): e is Held => e !== undefined)
  }

  async function createGroup() {
    try {
      await cmd.xgroup('CREATE', stream, GROUP, '0', 'MKSTREAM')
    } catch (err) {
      if (!String(err).includes('BUSYGROUP')) throw err
    }
  }

  /** Redis came back without its data: the group is gone; make it again (from the stream's start). */
  const regroup = async (err: unknown): Promise<never> => {
    if (String(err).includes('NOGROUP')) {
      log.warn('webhook consumer group missing (Redis lost its data?); creating it again')
      await createGroup()
    }
    throw err
  }

  return {
    async start() {
      await createGroup()
      depth = await cmd.xlen(stream)
    },
    push(events) {
      if (closed) return
      for (const e of events) local.push(e)
      flushTimer ??= setTimeout(flush, 0)
    },
    async take(max, lingerMs) {
      if (closed) return []
      if (Date.now() - lastClaim > opts.claimMs / 4) {
        const claimed = await claimDead(max).catch(regroup)
        if (claimed.length) return claimed
      }
      const first = await read(max, 1000).catch(regroup)
      if (first.length === 0 || first.length >= max || lingerMs === 0) return first
      await Bun.sleep(lingerMs)
      return first.concat(await read(max - first.length, 0))
    },
    async done(batch) {
      const ids = batch.map((e) => e.sid!)
      // Batches finish concurrently: only the length read by the newest call is the depth (an
      // older answer arriving last would leave a stale count on an empty queue).
      const asked = ++doneAsked
      const r = await cmd
        .multi()
        .xack(stream, GROUP, ...ids)
        .xdel(stream, ...ids)
        .xlen(stream)
        .exec()
      if (asked === doneAsked) depth = Number(r?.[2]?.[1] ?? depth)
    },
    async renew(batch) {
      await cmd.xclaim(stream, GROUP, me, 0, ...batch.map((e) => e.sid!), 'JUSTID')
    },
    depth: () => depth + local.length,
    async close() {
      closed = true
      if (flushTimer) clearTimeout(flushTimer)
      await flush().catch(() => {})
    },
  }
}
