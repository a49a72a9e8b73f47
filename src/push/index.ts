import { readFileSync } from 'node:fs'
import type { RedisConnections } from '../broker/redis-connect'
import type { Cluster } from '../cluster/heartbeat'
import { memoryLedger } from '../cluster/ledger'
import { ledgerOnline } from '../cluster/online'
import type { Online } from '../cluster/online'
import type { Config } from '../config'
import type { User } from '../core/identity'
import { log } from '../log'
import type { Device, Members, PushKind } from '../members/types'
import type { Metrics } from '../metrics'
import type { EventInput } from '../webhooks/events'
import { OutboundRefused, checkOutbound } from '../core/outbound-fetch'
import { startJobDeliverer } from '../webhooks/job-deliverer'
import type { JobDeliverer } from '../webhooks/job-deliverer'
import { memorySource } from '../webhooks/queue'
import type { Held, Source } from '../webhooks/queue'
import { redisSource } from '../webhooks/redis-queue'
import { apnsProvider } from './apns'
import { fcmProvider, parseServiceAccount } from './fcm'
import type { ServiceAccount } from './fcm'
import { mentions, notification } from './decide'
import type { Message } from './decide'
import type { Provider, PushJob } from './types'
import { webPushProvider } from './webpush'

/** What the hub calls; every call is O(1) and never waits: the decision runs later, per room. */
export interface HubPush {
  /** A chat or dm was accepted (not a retry's duplicate). */
  created(room: string, from: User, seq: number, msg: string, body: string, type: 'chat' | 'dm'): void
  /** Providers configured here: a device of another kind is refused. */
  readonly kinds: ReadonlySet<PushKind>
  /**
   * Why a device's address may not be registered (undefined: it may): a Web Push endpoint
   * under the outbound rule (https to public addresses, or OUTBOUND_ALLOW), resolved now; it
   * is checked again on every send.
   */
  refuse(device: Pick<Device, 'kind' | 'subscription'>): Promise<string | undefined>
}

export interface Push {
  hub: HubPush
  start(): Promise<void>
  stop(graceMs: number): Promise<void>
}

/** Messages kept per room and window: enough for mentions and blocked senders, bounded for a flood. */
const WINDOW_MAX = 64
const QUEUE_MAX = 100_000
/** A push is retried (backoff 250 ms doubling to 30 s) for this long, then given up as `expired`. */
const RETRY_MS = 3_600_000
/** One provider request, a TLS handshake that never completes included: then it is retried later. */
const TIMEOUT_MS = 10_000
/** Sends in flight per provider (retries at most half of them), and jobs a node holds (sending, or waiting for a retry). */
const PER_PROVIDER = 32
const HOLD_MAX = 10_000
/** Offline users decided at once (each needs its devices and badge read). */
const CHUNK = 64

interface Window {
  msgs: Message[]
  count: number
}

/** The providers the environment configures; a file that cannot be read stops the startup (ConfigError-like lines). */
export function providersOf(config: Config): Provider[] {
  const out: Provider[] = []
  if (config.PUSH_VAPID_PUBLIC_KEY && config.PUSH_VAPID_PRIVATE_KEY && config.PUSH_VAPID_SUBJECT)
    out.push(
      webPushProvider({
        publicKey: config.PUSH_VAPID_PUBLIC_KEY,
        privateKey: config.PUSH_VAPID_PRIVATE_KEY,
        subject: config.PUSH_VAPID_SUBJECT,
        timeoutMs: TIMEOUT_MS,
        allow: config.OUTBOUND_ALLOW,
      }),
    )
  if (config.PUSH_FCM_CREDENTIALS_FILE) {
    const file = config.PUSH_FCM_CREDENTIALS_FILE
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      throw new Error(`PUSH_FCM_CREDENTIALS_FILE: cannot read ${file}: ${(err as Error).message}`)
    }
    let account: ServiceAccount
    try {
      account = parseServiceAccount(text, file)
    } catch (err) {
      throw new Error(`PUSH_FCM_CREDENTIALS_FILE: ${(err as Error).message}`)
    }
    out.push(fcmProvider({ account, url: config.PUSH_FCM_URL, timeoutMs: TIMEOUT_MS }))
  }
  if (config.PUSH_APNS_KEY_FILE && config.PUSH_APNS_KEY_ID && config.PUSH_APNS_TEAM_ID && config.PUSH_APNS_TOPIC) {
    let key: string
    try {
      key = readFileSync(config.PUSH_APNS_KEY_FILE, 'utf8')
    } catch (err) {
      throw new Error(`PUSH_APNS_KEY_FILE: cannot read ${config.PUSH_APNS_KEY_FILE}: ${(err as Error).message}`)
    }
    if (!key.includes('-----BEGIN PRIVATE KEY-----'))
      throw new Error(`PUSH_APNS_KEY_FILE: ${config.PUSH_APNS_KEY_FILE} is not a PKCS#8 PEM key (the .p8 file Apple gives)`)
    out.push(
      apnsProvider({
        key,
        keyId: config.PUSH_APNS_KEY_ID,
        teamId: config.PUSH_APNS_TEAM_ID,
        topic: config.PUSH_APNS_TOPIC,
        url: config.PUSH_APNS_URL,
        timeoutMs: TIMEOUT_MS,
      }),
    )
  }
  return out
}

/**
 * Push notifications: undefined when no provider is configured (the hub then pays nothing).
 *
 * The way a message becomes a push, off the chat path: `created` adds it to its room's window
 * (a Map lookup and an array push); when the window closes (PUSH_COALESCE_MS) the room is
 * decided once for all its messages: the members with devices (kept per room by the members
 * engine, so a room of 10 000 members without devices costs one empty read), of those the
 * ones with no live connection anywhere (`online`, the ledger's `live` book), then
 * notify levels and blocks for those few, then one job per device into the queue (the webhooks'
 * queue code: a Redis stream with a consumer group in a cluster), sent and retried there.
 */
export function createPush(opts: {
  config: Config
  metrics: Metrics
  nodeId: string
  members: Members
  emit?: (e: EventInput) => void
  /** With Redis: the node's connections and the cluster's heartbeat (the queue shared by every node). */
  redis?: { connections: RedisConnections; nodes: Cluster }
  /** Who is online, cluster-wide (the ledger's `live` book, shared with the webhooks). */
  online?: Online
  providers?: Provider[]
  /** The user's total unread, the badge: the hub's count, the one `welcome` shows (main.ts wires it). */
  badge?: (user: string) => Promise<number>
}): Push | undefined {
  const { config, metrics, members, nodeId } = opts
  const providers = opts.providers ?? providersOf(config)
  if (providers.length === 0) return undefined
  const byKind = new Map(providers.map((p) => [p.kind, p]))

  const cmd = opts.redis?.connections.cmd
  const blocking = opts.redis?.connections.blocking()
  let dropLogAt = 0
  const onDrop = (n: number) => {
    metrics.push.dropped.inc(n)
    if (Date.now() - dropLogAt < 10_000) return
    dropLogAt = Date.now()
    log.warn('pushes dropped: the queue is full', { dropped: n, bound: QUEUE_MAX })
  }
  const redis =
    cmd && blocking
      ? redisSource({
          cmd,
          blocking,
          prefix: config.REDIS_PREFIX,
          nodeId,
          bound: QUEUE_MAX,
          claimMs: config.WEBHOOK_CLAIM_MS,
          onDrop,
          tag: 'push',
          group: 'push',
        })
      : undefined
  const source: Source = redis ?? memorySource({ bound: QUEUE_MAX, onDrop })
  // Who is online: the users the webhooks count too, written once.
  const online = opts.online ?? ledgerOnline((onEdge) => memoryLedger().book('live', onEdge))
  online.follow('u')

  const windows = new Map<string, Window>()
  const hub: HubPush = {
    kinds: new Set(byKind.keys()),
    async refuse(device) {
      if (device.kind !== 'webpush' || !device.subscription) return undefined
      try {
        await checkOutbound(device.subscription.endpoint, { allow: config.OUTBOUND_ALLOW, timeoutMs: TIMEOUT_MS })
        return undefined
      } catch (err) {
        if (err instanceof OutboundRefused) return `subscription.endpoint: ${err.message}`
        throw err
      }
    },
    created(room, from, seq, msg, body, type) {
      let w = windows.get(room)
      if (!w) {
        windows.set(room, (w = { msgs: [], count: 0 }))
        setTimeout(() => close(room), config.PUSH_COALESCE_MS)
      }
      // A ring of the newest WINDOW_MAX: put in order when the window is decided.
      w.msgs[w.count++ % WINDOW_MAX] = { from, seq, msg, body, type }
    },
  }

  function close(room: string) {
    const w = windows.get(room)
    windows.delete(room)
    if (!w) return
    if (w.count > WINDOW_MAX) {
      const at = w.count % WINDOW_MAX
      w.msgs = w.msgs.slice(at).concat(w.msgs.slice(0, at))
    }
    decide(room, w).catch((err) => log.warn('push not decided', { room, err }))
  }

  async function decide(room: string, w: Window) {
    // The default room is every user's: a push per lobby message to everyone offline is noise.
    if (room === config.DEFAULT_ROOM) return
    const withDevices = await members.pushable(room)
    if (withDevices.length === 0) return
    const live = await online.online(withDevices)
    const offline = withDevices.filter((u) => !live.has(u))
    if (offline.length === 0) return
    const senders = [...new Set(w.msgs.map((m) => m.from.id))]
    const [levels, ...blocked] = await Promise.all([
      members.notifyLevels(room, offline),
      ...senders.map((s) => members.blocking(s, offline)),
    ])
    const blockedBy = new Map(senders.map((s, i) => [s, blocked[i]!]))
    for (let i = 0; i < offline.length; i += CHUNK)
      await Promise.all(
        offline.slice(i, i + CHUNK).map(async (user) => {
          const level = levels.get(user) ?? 'all'
          if (level === 'none') return
          const name = level === 'mentions' ? ((await members.user(user))?.name ?? user) : user
          const mine = w.msgs.filter(
            (m) => m.from.id !== user && !blockedBy.get(m.from.id)?.has(user) && (level === 'all' || mentions(m.body, user, name)),
          )
          if (mine.length === 0) return
          const [devices, badge] = await Promise.all([members.devices(user), opts.badge ? opts.badge(user).catch(() => 0) : 0])
          // Messages past the window's bound count too, when every one of them would have.
          const count = level === 'all' && mine.length === w.msgs.length ? w.count : mine.length
          const base = notification(room, mine.at(-1)!, count, badge)
          const jobs = devices
            .filter((d) => byKind.has(d.kind))
            .map((device) => ({
              id: Bun.randomUUIDv7(),
              at: Date.now(),
              json: JSON.stringify({ user, device, ...base } satisfies PushJob),
            }))
          if (jobs.length) source.push(jobs)
        }),
      )
  }

  /** A 400/403 is logged once per device and reason (a device refused every time would flood the log). */
  const logged = new Set<string>()
  const report = (job: PushJob, reason: string) => {
    opts.emit?.({
      type: 'push.failed',
      user: { id: job.user, name: job.user },
      device: job.device.device,
      provider: job.device.kind,
      reason,
    })
  }

  /** One job: undefined when finished (sent, gone, refused for good), else why it is retried. */
  async function sendOne(e: Held): Promise<string | undefined> {
    const job = JSON.parse(e.json) as PushJob
    const provider = byKind.get(job.device.kind)
    if (!provider) return undefined
    const out = await provider.send(job)
    metrics.push.sent.labels({ provider: job.device.kind, result: out.result }).inc()
    if (out.result === 'ok') return undefined
    if (out.result === 'retry') return out.reason
    if (out.result === 'gone') {
      // Removed only if it still is the device that was pushed to (not re-registered since).
      const now = (await members.devices(job.user)).find((d) => d.device === job.device.device)
      if (now && (now.token ?? now.subscription?.endpoint) === (job.device.token ?? job.device.subscription?.endpoint))
        await members.removeDevice(job.user, job.device.device)
      log.info('push device gone; removed', { user: job.user, device: job.device.device, provider: job.device.kind, reason: out.reason })
    } else {
      const k = `${job.user}\n${job.device.device}\n${out.reason}`
      if (!logged.has(k)) {
        if (logged.size > 10_000) logged.clear()
        logged.add(k)
        log.warn('push refused by the provider', {
          user: job.user,
          device: job.device.device,
          provider: job.device.kind,
          reason: out.reason,
        })
      }
    }
    report(job, out.reason)
    return undefined
  }

  let deliverer: JobDeliverer | undefined
  return {
    hub,
    async start() {
      if (opts.redis && redis) {
        await opts.redis.connections.connect()
        await redis.start()
      }
      // One job per device, each retried on its own: a device that never answers holds up no one else's push.
      deliverer = startJobDeliverer({
        source,
        send: sendOne,
        laneOf: (e) => (JSON.parse(e.json) as PushJob).device.kind,
        perLane: PER_PROVIDER,
        holdMax: HOLD_MAX,
        takeMax: 50,
        waitMax: 1000,
        name: 'push',
        retryMs: RETRY_MS,
        renewMs: Math.max(250, Math.floor(config.WEBHOOK_CLAIM_MS / 3)),
        onExpired: (e, problem) => {
          const job = JSON.parse(e.json) as PushJob
          metrics.push.sent.labels({ provider: job.device.kind, result: 'expired' }).inc()
          report(job, `given up after ${RETRY_MS / 1000} s: ${problem}`)
        },
      })
      log.info('push on', { providers: [...byKind.keys()], queue: redis ? 'redis' : 'memory' })
    },
    async stop(graceMs) {
      // The windows still open are decided now, so their pushes reach the queue.
      for (const room of [...windows.keys()]) close(room)
      await online.settle(Math.min(graceMs, 2000))
      await deliverer?.stop(graceMs)
      for (const p of providers) p.close?.()
    },
  }
}
