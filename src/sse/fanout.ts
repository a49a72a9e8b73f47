import { isSseNodeTopic } from '../core/topic'
import type { DeliveryHook } from '../hub/hub'
import { log } from '../log'
import type { Metrics } from '../metrics'
import { CLOSE, CONTROL_HEAD } from '../protocol/server-frames'
import { eventBytes } from './stream'
import type { SseStream } from './stream'

/** The SSE streams of each topic on this node, and the hub's delivery hook that writes to them. */
export interface SseFanOut {
  /** For `hub.onDeliver`: every frame the hub delivers, to the streams of its topic; a node's SSE posts (`s:`) to `posted`. */
  readonly hook: DeliveryHook
  subscribe(topic: string, s: SseStream): void
  unsubscribe(topic: string, s: SseStream): void
  /** The node's topic of relayed POSTs is watched from now on: the hook is never idle again. */
  watchPosts(): void
}

export interface SseFanOutDeps {
  metrics: Pick<Metrics, 'dropped' | 'slowConsumers'>
  /** A POST's frames relayed from another node for a stream here (the node topic's frames, as relayed). */
  posted(frame: string): void
  /** A slow consumer was cut (the audit entry /ws writes). */
  cut(s: SseStream): void
}

/**
 * Bun's topics carry WebSockets only, so SSE streams subscribe here: a Set of streams per topic.
 * Each frame the hub delivers on a topic (the broker's one encoded frame) becomes its event bytes
 * once, and every stream of the topic is handed the same bytes: never one encoding per recipient.
 * Control frames are the hub's own (commands.ts acts on the connections, SSE ones included).
 */
export function sseFanOut(d: SseFanOutDeps): SseFanOut {
  const byTopic = new Map<string, Set<SseStream>>()
  let posts = false

  function slow(s: SseStream) {
    d.metrics.dropped.inc()
    d.metrics.slowConsumers.inc()
    log.warn('slow consumer closed', {
      conn: s.conn?.id,
      user: s.conn?.identity.user.id,
      buffered: s.getBufferedAmount(),
      transport: 'sse',
    })
    d.cut(s)
    s.close(CLOSE.slowConsumer, 'slow consumer')
  }

  /** One frame to every stream of the topic here (but `except`), its bytes made once. */
  function write(topic: string, frame: string, except: string | undefined) {
    const set = byTopic.get(topic)
    if (!set) return
    const bytes = eventBytes(frame)
    for (const s of set) {
      if (except !== undefined && s.conn?.id === except) continue
      if (s.write(bytes) === 0) slow(s)
    }
  }

  const hook: DeliveryHook = {
    // Idle while no stream subscribes and no POST can be relayed here: a node without SSE
    // streams delivers as if SSE were not wired.
    idle: true,
    owns: isSseNodeTopic,
    deliver(topic, frame, except) {
      if (isSseNodeTopic(topic)) return d.posted(frame)
      if (!frame.startsWith(CONTROL_HEAD)) write(topic, frame, except)
    },
    // A room's restart (`joined` at the new epoch), which the hub hands to Bun's topic directly.
    local: (topic, frame) => write(topic, frame, undefined),
  }

  return {
    hook,
    subscribe(topic, s) {
      let set = byTopic.get(topic)
      if (!set) byTopic.set(topic, (set = new Set()))
      set.add(s)
      hook.idle = false
    },
    unsubscribe(topic, s) {
      const set = byTopic.get(topic)
      if (!set?.delete(s) || set.size > 0) return
      byTopic.delete(topic)
      if (byTopic.size === 0 && !posts) hook.idle = true
    },
    watchPosts() {
      posts = true
      hook.idle = false
    },
  }
}
