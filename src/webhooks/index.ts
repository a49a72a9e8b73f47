import type { RedisConnections } from '../broker/redis-connect'
import type { Cluster } from '../cluster/heartbeat'
import { memoryLedger } from '../cluster/ledger'
import { ledgerOnline } from '../cluster/online'
import type { Kind, Online } from '../cluster/online'
import type { Sql } from 'postgres'
import pkg from '../../package.json'
import type { Config } from '../config'
import { log } from '../log'
import type { Metrics } from '../metrics'
import type { User } from '../protocol/server-frames'
import { beforePublishHook } from './before-publish'
import type { Draft, Verdict } from './before-publish'
import { EVENT_TYPES, OFFLINE_CAP, encodeEvent, encodeMessageCreated } from './events'
import type { EventInput, EventType } from './events'
import { pgJournal } from './pg-journal'
import { memorySource, startDeliverer } from './queue'
import type { Journal, Source } from './queue'
import { redisSource } from './redis-queue'
import { signedHeaders } from './sign'

/**
 * Members of `room` with no live connection anywhere in the cluster when a message was sent
 * (the conversations feature provides it; `online` tells which users have a live connection).
 */
export type OfflineProvider = (room: string, sender: string, online: (ids: string[]) => Promise<Set<string>>) => Promise<string[]>

/** What the hub calls. Each member is absent when it has nothing to do, so the hub pays nothing. */
export interface HubWebhooks {
  beforePublish?: (d: Draft) => Promise<Verdict>
  /** A chat message was accepted: `frame` is its encoded chat frame. */
  created?: (room: string, from: User, frame: string) => void
  /** Any other event (member.added, member.removed, …); absent when WEBHOOK_URL is unset. */
  emit?: (input: EventInput) => void
}

export interface Webhooks {
  hub: HubWebhooks
  /** Sends an event of any type (the other features call this); dropped when WEBHOOK_EVENTS leaves its type out. */
  emit(input: EventInput): void
  start(): Promise<void>
  /** Delivers what waits for up to `graceMs`, then stops; a durable queue keeps the rest. */
  stop(graceMs: number): Promise<void>
}

/** Undefined when neither WEBHOOK_URL nor HOOK_BEFORE_PUBLISH_URL is set: nothing runs, nothing is called. */
export function createWebhooks(opts: {
  config: Config
  metrics: Metrics
  nodeId: string
  offline?: OfflineProvider
  /** With Redis: the node's connections and the cluster's heartbeat (a queue shared by every node). */
  redis?: { connections: RedisConnections; nodes: Cluster }
  /** Who is online, cluster-wide (the ledger's `live` book, shared with push): online/offline, occupied/vacated. */
  online?: Online
  /** Without Redis, with PostgreSQL: the store's pool, where the queue is journalled. */
  sql?: Sql
}): Webhooks | undefined {
  const { config, metrics, nodeId } = opts
  if (!config.WEBHOOK_URL && !config.HOOK_BEFORE_PUBLISH_URL) return undefined
  const secret = config.WEBHOOK_SECRET!
  const userAgent = `chat-server/${pkg.version} (${nodeId})`
  const hub: HubWebhooks = {}
  if (config.HOOK_BEFORE_PUBLISH_URL)
    hub.beforePublish = beforePublishHook({
      url: config.HOOK_BEFORE_PUBLISH_URL,
      secret,
      timeoutMs: config.HOOK_TIMEOUT_MS,
      fail: config.HOOK_FAIL,
      maxBody: config.MAX_BODY_CHARS,
      userAgent,
      onFailure: () => metrics.webhook.hookFailures.inc(),
    })
  if (!config.WEBHOOK_URL) return { hub, emit() {}, async start() {}, async stop() {} }

  const url = config.WEBHOOK_URL
  const types = new Set<EventType>(config.WEBHOOK_EVENTS ?? EVENT_TYPES)
  /** Drops are counted at once and logged at most every 10 s (a full queue drops on every event). */
  let droppedUnlogged = 0
  let dropLogAt = 0
  const onDrop = (n: number) => {
    metrics.webhook.dropped.inc(n)
    droppedUnlogged += n
    const now = Date.now()
    if (now - dropLogAt < 10_000) return
    log.warn('webhook events dropped: the queue is full', { dropped: droppedUnlogged, bound: config.WEBHOOK_QUEUE_MAX })
    droppedUnlogged = 0
    dropLogAt = now
  }
  // Every key of the webhooks shares the `{wh}` hash tag: one slot of a Redis Cluster.
  const cmd = opts.redis?.connections.cmd
  const blocking = opts.redis?.connections.blocking()
  let journal: Journal | undefined
  /** The memory queue writes through to the journal once start() has opened it. */
  const journalled: Journal = {
    load: async () => [],
    add: (e) => journal?.add(e),
    forget: (ids) => journal?.forget(ids),
    close: async () => {},
  }
  const redis =
    cmd && blocking
      ? redisSource({
          cmd,
          blocking,
          prefix: config.REDIS_PREFIX,
          nodeId,
          bound: config.WEBHOOK_QUEUE_MAX,
          claimMs: config.WEBHOOK_CLAIM_MS,
          onDrop,
        })
      : undefined
  // Without Redis the queue is this process's; with PostgreSQL it is journalled there.
  const memory = redis ? undefined : memorySource({ bound: config.WEBHOOK_QUEUE_MAX, onDrop, journal: journalled })
  const source: Source = redis ?? memory!
  metrics.webhook.depth.from(() => source.depth())

  const emit = (hub.emit = (input: EventInput) => {
    if (types.has(input.type)) source.push([encodeEvent(input)])
  })

  const kinds = {
    u: { up: 'user.online', down: 'user.offline' },
    r: { up: 'room.occupied', down: 'room.vacated' },
  } as const
  const toEvent = (kind: Kind, type: EventType, id: string, user?: User): EventInput =>
    kind === 'u' ? { type, user: user ?? { id, name: id } } : { type, room: id, user }
  const online = opts.online ?? ledgerOnline((onEdge) => memoryLedger().book('live', onEdge))
  // Users are counted whenever an event needs them: online/offline, and the `offline` list of
  // message.created (without the count every member would look offline).
  const counted = {
    u: types.has('user.online') || types.has('user.offline') || types.has('message.created'),
    r: types.has('room.occupied') || types.has('room.vacated'),
  }
  // Counted when either edge is wanted: an offline needs the online that came before it. A
  // dead node's reaped edge carries no user of a room: the event names the room alone.
  for (const kind of ['u', 'r'] as const)
    if (counted[kind])
      online.follow(kind, (edge, id, user) => {
        if (types.has(kinds[kind][edge])) emit(toEvent(kind, kinds[kind][edge], id, user))
      })

  if (types.has('message.created')) {
    const offline = opts.offline
    const none: string[] = []
    hub.created = offline
      ? (room, from, frame) =>
          void offline(room, from.id, online.online)
            .catch((err) => {
              log.warn('offline members not known', { room, err })
              return none
            })
            .then((ids) => source.push([encodeMessageCreated(room, from, frame, ids.slice(0, OFFLINE_CAP), ids.length > OFFLINE_CAP)]))
      : (room, from, frame) => source.push([encodeMessageCreated(room, from, frame, none, false)])
  }

  const post = async (body: string): Promise<string | undefined> => {
    try {
      const res = await fetch(url, {
        method: 'POST',
        body,
        headers: signedHeaders(secret, body, userAgent),
        signal: AbortSignal.timeout(config.WEBHOOK_TIMEOUT_MS),
      })
      await res.arrayBuffer().catch(() => {})
      return res.ok ? undefined : `status ${res.status}`
    } catch (err) {
      return (err as Error).name === 'TimeoutError' ? `no answer in ${config.WEBHOOK_TIMEOUT_MS} ms` : (err as Error).message
    }
  }
  let deliverer: ReturnType<typeof startDeliverer> | undefined

  return {
    hub,
    emit,
    async start() {
      if (opts.redis && redis) {
        await opts.redis.connections.connect()
        await redis.start()
      } else if (opts.sql && memory) {
        journal = await pgJournal({ sql: opts.sql!, onError: () => metrics.storeErrors.inc() })
        const pending = await journal.load()
        if (pending.length) {
          log.info('webhook events pending from before the restart', { events: pending.length })
          memory.push(pending)
        }
      }
      deliverer = startDeliverer({
        source,
        post,
        batchMax: config.WEBHOOK_BATCH_MAX,
        batchMs: config.WEBHOOK_BATCH_MS,
        retryMs: config.WEBHOOK_RETRY_S * 1000,
        renewMs: Math.max(250, Math.floor(config.WEBHOOK_CLAIM_MS / 3)),
        metrics: metrics.webhook,
      })
    },
    async stop(graceMs) {
      await online.settle(Math.min(graceMs, 2000))
      await deliverer?.stop(graceMs)
      await journal?.close(2000)
    },
  }
}
