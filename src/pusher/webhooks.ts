import pkg from '../../package.json'
import type { Config } from '../config'
import { log } from '../log'
import type { Metrics } from '../metrics'
import { memorySource, startDeliverer } from '../webhooks/queue'
import { hmac } from './protocol'

/** A Pusher webhook event (pusher.com/docs/channels/server_api/webhooks). */
export type PusherHookEvent =
  | { name: 'channel_occupied' | 'channel_vacated'; channel: string }
  | { name: 'member_added' | 'member_removed'; channel: string; user_id: string }
  | { name: 'client_event'; channel: string; event: string; data: string; socket_id: string; user_id?: string }

export interface PusherHooks {
  emit(e: PusherHookEvent): void
  stop(graceMs: number): Promise<void>
}

/**
 * Pusher-format webhooks to PUSHER_WEBHOOK_URL: `{time_ms, events:[…]}` signed with
 * X-Pusher-Key and X-Pusher-Signature (hex HMAC-SHA256 of the body with the secret).
 *
 * Sent by the webhook queue's own parts (src/webhooks/queue.ts): a bounded memory source and
 * the same deliverer (batches, retry with backoff within WEBHOOK_RETRY_S, the same metrics).
 * Not the chat-server queue itself: that one has one URL, one body and one signature, and its
 * Redis stream is shared by the cluster; a second target there would need a second stream.
 * Each node sends the events it saw (whether a channel became occupied is decided cluster-wide
 * before, in Redis), so a node's own memory queue is enough; what waits is lost if the node dies.
 */
export function pusherHooks(opts: { config: Config; metrics: Metrics; nodeId: string }): PusherHooks | undefined {
  const { config, metrics } = opts
  const url = config.PUSHER_WEBHOOK_URL
  if (!url) return undefined
  const key = config.PUSHER_KEY!
  const secret = config.PUSHER_SECRET!
  const userAgent = `chat-server/${pkg.version} (${opts.nodeId})`
  const source = memorySource({ bound: config.WEBHOOK_QUEUE_MAX, onDrop: (n) => metrics.webhook.dropped.inc(n) })
  let n = 0
  const post = async (events: string): Promise<string | undefined> => {
    // The deliverer hands `{"events":[…]}`; Pusher's body starts with the time it was sent.
    const body = `{"time_ms":${Date.now()},${events.slice(1)}`
    try {
      const res = await fetch(url, {
        method: 'POST',
        body,
        headers: {
          'content-type': 'application/json',
          'x-pusher-key': key,
          'x-pusher-signature': hmac(secret, body),
          'user-agent': userAgent,
        },
        signal: AbortSignal.timeout(config.WEBHOOK_TIMEOUT_MS),
      })
      await res.arrayBuffer().catch(() => {})
      return res.ok ? undefined : `status ${res.status}`
    } catch (err) {
      return (err as Error).name === 'TimeoutError' ? `no answer in ${config.WEBHOOK_TIMEOUT_MS} ms` : (err as Error).message
    }
  }
  const deliverer = startDeliverer({
    source,
    post,
    batchMax: config.WEBHOOK_BATCH_MAX,
    batchMs: config.WEBHOOK_BATCH_MS,
    retryMs: config.WEBHOOK_RETRY_S * 1000,
    renewMs: 10_000,
    metrics: metrics.webhook,
  })
  return {
    emit(e) {
      source.push([{ id: `p${++n}`, at: Date.now(), json: JSON.stringify(e) }])
    },
    async stop(graceMs) {
      await deliverer.stop(graceMs).catch((err) => log.warn('pusher webhooks not stopped', { err }))
    },
  }
}
