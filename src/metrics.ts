import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { CLIENT_FRAME_TYPES } from './protocol/client-frames'
import type { ClientFrameType } from './protocol/client-frames'
import type { ErrorCode } from './protocol/server-frames'

/**
 * A count the hot path bumps as a plain number (no label hashing, no validation per call);
 * its prom-client counter reads it on scrape, in `collect()`.
 */
export class Tally {
  n = 0
  inc(value = 1) {
    this.n += value
  }
}

/**
 * A histogram the hot path feeds with plain numbers (a bucket index and two additions, no
 * label hashing or validation per call); its prom-client histogram is filled from it on scrape.
 */
export class TallyHistogram {
  readonly counts: number[]
  sum = 0
  n = 0
  constructor(readonly bounds: readonly number[]) {
    this.counts = bounds.map(() => 0)
  }
  observe(value: number) {
    const b = this.bounds
    let i = 0
    while (i < b.length && value > b[i]!) i++
    if (i < b.length) this.counts[i]!++
    this.sum += value
    this.n++
  }
}

/** The frame types counted going out (the `type` label of chat_frames_out_total; the list in createMetrics). */
export type FrameOutType =
  | 'welcome'
  | 'chat'
  | 'dm'
  | 'ack'
  | 'joined'
  | 'left'
  | 'history'
  | 'presence'
  | 'typing'
  | 'read'
  | 'rooms'
  | 'pins'
  | 'search'
  | 'pong'
  | 'error'
  | 'threads'
  | 'scheduled'

/**
 * Every metric of the server. Tallies are counted as plain numbers on the hot path and read by
 * their prom-client counter on scrape; the others are prom-client's own.
 */
export interface Metrics {
  /** The registry `/metrics` serializes: these and the process' default metrics. */
  registry: Registry
  /** chat_connections: open WebSocket connections. */
  connections: Gauge
  /** chat_rooms: rooms with at least one member on this node. */
  rooms: Gauge
  /** chat_frames_in_total by client frame type (`invalid`: frames that failed validation). */
  framesIn: Record<ClientFrameType | 'invalid', Tally>
  /** chat_frames_out_total by frame type. */
  framesOut: Record<FrameOutType, Tally>
  /** chat_messages_published_total: chat messages accepted and published. */
  published: Tally
  /** chat_messages_delivered_total: chat and DM frames handed to local subscribers. */
  delivered: Tally
  /** chat_messages_dropped_total: frames a slow subscriber could not take. */
  dropped: Counter
  /** chat_errors_total by code: one label child per error code. */
  errors: Record<ErrorCode, Counter.Internal>
  rateLimited: Counter
  /** chat_slow_consumer_closes_total: connections closed with 4008. */
  slowConsumers: Counter
  /** chat_auth_refused_total by reason. */
  authRefused: Counter<'reason'>
  /** chat_connections_refused_total by reason (a connection limit). */
  connRefused: Counter<'reason'>
  /** chat_connect_seconds by transport: upgrade request to the session's first frame. */
  connect: Record<'ws' | 'sse' | 'pusher', Histogram.Internal<'transport'>>
  brokerErrors: Counter
  /** chat_rooms_evicted_total: idle rooms the memory engine forgot. */
  roomsEvicted: Counter
  storeErrors: Counter
  /** chat_uncaught_errors_total: errors no handler caught. */
  uncaught: Counter
  /** chat_publish_latency_seconds: a chat frame received to its publish. */
  publishLatency: TallyHistogram
  webhook: WebhookMetrics
  push: PushMetrics
  /** chat_link_previews_total by result: each message with a link (LINK_PREVIEWS), how its preview went. */
  previews: Counter<'result'>
  /**
   * chat_outbox_rows_total by result (src/outbox): `delivered` (appended), `duplicate` (its retry
   * key was delivered already), `failed` (moved to `<OUTBOX_TABLE>_failed`).
   */
  outbox: Record<'delivered' | 'duplicate' | 'failed', Tally>
}

/** Webhooks (src/webhooks): counted per event. */
export interface WebhookMetrics {
  /** Delivered: the application answered 2xx. */
  sent: Tally
  /** Given up after WEBHOOK_RETRY_S of failed attempts. */
  failed: Tally
  /** Sent again after a failed attempt (same event id). */
  retried: Tally
  /** Dropped, oldest first, past WEBHOOK_QUEUE_MAX. */
  dropped: Tally
  /** Pre-publish hook calls without a valid answer in time. */
  hookFailures: Tally
  /** The queue's depth, read on scrape; the webhooks register how to read it (`from`) when they make their queue. */
  depth: { read(): number; from(read: () => number): void }
  /** From an event emitted to the application answering 2xx for it. */
  latency: Histogram
}

/** Push (src/push): one count per device and outcome. */
export interface PushMetrics {
  /** Pushes handed to a provider, by provider and result. */
  sent: Counter<'provider' | 'result'>
  /** Dropped, oldest first, past the queue bound. */
  dropped: Tally
}

/** Every metric of the server, on a registry of its own. Label children are made once. */
export function createMetrics(): Metrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })

  const connections = new Gauge({ name: 'chat_connections', help: 'Open WebSocket connections', registers: [registry] })
  const rooms = new Gauge({ name: 'chat_rooms', help: 'Rooms with at least one member on this node', registers: [registry] })
  /** Counted per message: plain numbers, read by prom-client on scrape. */
  const tally = (name: string, help: string) => {
    const t = new Tally()
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset()
        this.inc(t.n)
      },
    })
    return t
  }
  const tallyBy = <V extends string>(name: string, help: string, label: string, values: readonly V[]) => {
    const ts = Object.fromEntries(values.map((v) => [v, new Tally()])) as Record<V, Tally>
    new Counter({
      name,
      help,
      labelNames: [label],
      registers: [registry],
      collect() {
        this.reset()
        // A label value shows once it was counted, as with prom-client's own children.
        for (const v of values) if (ts[v].n > 0) this.labels({ [label]: v }).inc(ts[v].n)
      },
    })
    return ts
  }
  // The schemas' types, not a copy: hub/dispatch.ts counts each decoded frame by its type outside any
  // try, so a type missing here would throw there. `invalid`: a frame that decodes to none.
  const inTypes = [...CLIENT_FRAME_TYPES, 'invalid'] as const
  const outTypes = [
    'welcome',
    'chat',
    'dm',
    'ack',
    'joined',
    'left',
    'history',
    'presence',
    'typing',
    'read',
    'rooms',
    'pins',
    'search',
    'pong',
    'error',
    'threads',
    'scheduled',
  ] as const
  const framesIn = tallyBy('chat_frames_in_total', 'Client frames received, by type', 'type', inTypes)
  const framesOut = tallyBy('chat_frames_out_total', 'Frames sent or published by this node, by type', 'type', outTypes)
  const published = tally('chat_messages_published_total', 'Chat messages accepted and published')
  const delivered = tally('chat_messages_delivered_total', 'Chat and DM frames handed to local subscribers')
  const dropped = new Counter({
    name: 'chat_messages_dropped_total',
    help: 'Frames a slow subscriber could not take (it is then closed with 4008)',
    registers: [registry],
  })
  const codes: ErrorCode[] = [
    'bad_request',
    'unauthorized',
    'forbidden',
    'rate_limited',
    'too_large',
    'unavailable',
    'internal',
    'not_found',
    'limit',
    'rejected',
    'closed',
    'slow_mode',
  ]
  const errors = new Counter({ name: 'chat_errors_total', help: 'Error frames sent, by code', labelNames: ['code'], registers: [registry] })
  const rateLimited = new Counter({ name: 'chat_rate_limited_total', help: 'Frames refused by the rate limit', registers: [registry] })
  const slowConsumers = new Counter({
    name: 'chat_slow_consumer_closes_total',
    help: 'Connections closed with 4008',
    registers: [registry],
  })
  const authRefused = new Counter({
    name: 'chat_auth_refused_total',
    help: 'Upgrades refused by authentication, by reason',
    labelNames: ['reason'],
    registers: [registry],
  })
  const connRefused = new Counter({
    name: 'chat_connections_refused_total',
    help: 'Upgrades refused by a connection limit, by reason',
    labelNames: ['reason'],
    registers: [registry],
  })
  const connectSeconds = new Histogram({
    name: 'chat_connect_seconds',
    help: 'From the upgrade request to the first frame of the session (welcome; Pusher: pusher:connection_established), by transport',
    labelNames: ['transport'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  })
  const roomsEvicted = new Counter({
    name: 'chat_rooms_evicted_total',
    help: 'Idle rooms the memory engine forgot (HISTORY_TTL_S, MAX_ROOMS)',
    registers: [registry],
  })
  const brokerErrors = new Counter({
    name: 'chat_broker_errors_total',
    help: 'Broker (Redis) operations that failed',
    registers: [registry],
  })
  const uncaught = new Counter({
    name: 'chat_uncaught_errors_total',
    help: 'Errors no handler caught (logged; the node serves on)',
    registers: [registry],
  })
  const storeErrors = new Counter({
    name: 'chat_store_errors_total',
    help: 'Store (PostgreSQL) operations that failed',
    registers: [registry],
  })
  const latencyBuckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]
  const publishLatency = new TallyHistogram(latencyBuckets)
  new Histogram({
    name: 'chat_publish_latency_seconds',
    help: 'From a chat frame received to its publish to the room',
    buckets: latencyBuckets,
    registers: [registry],
    collect() {
      // prom-client has no bulk setter: its one unlabelled series is written as observe() would.
      this.zero({})
      const series = Object.values(
        (this as unknown as { hashMap: Record<string, { bucketValues: Record<number, number>; sum: number; count: number }> }).hashMap,
      )[0]!
      latencyBuckets.forEach((b, i) => {
        series.bucketValues[b] = publishLatency.counts[i]!
      })
      series.sum = publishLatency.sum
      series.count = publishLatency.n
    },
  })

  /** Webhooks (src/webhooks): per event; the depth is read from the queue on scrape (webhook.depth.from). */
  let readWebhookDepth = () => 0
  const webhookDepth = {
    read: () => readWebhookDepth(),
    /** How to read the queue's depth: the webhooks register it when they make their queue. */
    from(read: () => number) {
      readWebhookDepth = read
    },
  }
  const webhook = {
    sent: tally('chat_webhook_events_sent_total', 'Webhook events delivered (the application answered 2xx)'),
    failed: tally('chat_webhook_events_failed_total', 'Webhook events given up after WEBHOOK_RETRY_S of failed attempts'),
    retried: tally('chat_webhook_events_retried_total', 'Webhook events sent again after a failed attempt (same event id)'),
    dropped: tally('chat_webhook_events_dropped_total', 'Webhook events dropped, oldest first, past WEBHOOK_QUEUE_MAX'),
    hookFailures: tally('chat_hook_failures_total', 'Pre-publish hook calls without a valid answer in time (then HOOK_FAIL applies)'),
    depth: webhookDepth,
    latency: new Histogram({
      name: 'chat_webhook_delivery_seconds',
      help: 'From an event emitted to the application answering 2xx for it',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers: [registry],
    }),
  }
  new Gauge({
    name: 'chat_webhook_queue_depth',
    help: 'Webhook events waiting or in flight (with Redis: in the cluster-wide stream)',
    registers: [registry],
    collect() {
      this.set(webhookDepth.read())
    },
  })

  /** Push (src/push): one count per device and outcome. */
  const push = {
    sent: new Counter({
      name: 'chat_push_sent_total',
      help: 'Pushes handed to a provider, by provider and result (ok, retry, gone: the device was removed, failed, expired: given up)',
      labelNames: ['provider', 'result'],
      registers: [registry],
    }),
    dropped: tally('chat_push_dropped_total', 'Pushes dropped, oldest first, past the queue bound'),
  }

  const previews = new Counter({
    name: 'chat_link_previews_total',
    help: 'Messages with a link (LINK_PREVIEWS) by result: fetched, cached (no fetch), none (not html, no title, a status), refused (the outbound rule), failed (timeout, network), dropped (queue full), gone (the message went first)',
    labelNames: ['result'],
    registers: [registry],
  })

  const byType = <L extends string>(c: Counter<L>, label: L, values: readonly string[]) =>
    Object.fromEntries(values.map((v) => [v, c.labels({ [label]: v } as Record<L, string>)]))

  return {
    registry,
    connections,
    rooms,
    framesIn,
    framesOut,
    published,
    delivered,
    dropped,
    errors: byType(errors, 'code', codes) as Record<ErrorCode, Counter.Internal>,
    rateLimited,
    slowConsumers,
    authRefused,
    connRefused,
    /** Label children made once: observed once per connection. */
    connect: {
      ws: connectSeconds.labels({ transport: 'ws' }),
      sse: connectSeconds.labels({ transport: 'sse' }),
      pusher: connectSeconds.labels({ transport: 'pusher' }),
    },
    brokerErrors,
    roomsEvicted,
    storeErrors,
    uncaught,
    publishLatency,
    webhook,
    push,
    previews,
    outbox: tallyBy('chat_outbox_rows_total', 'Outbox rows taken by this node, by result', 'result', [
      'delivered',
      'duplicate',
      'failed',
    ] as const),
  }
}
