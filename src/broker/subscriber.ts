import { RedisClient } from 'bun'
import type Redis from 'ioredis'

const BACKOFF_MAX_MS = 2_000

/**
 * The broker's pub/sub connection, whichever client carries it: every frame of every watched
 * topic arrives here, so on one Redis it is Bun's own client, whose per-message cost is a
 * fifth of ioredis's (docs/performance.md, round 3); a Redis Cluster's stays on ioredis, which
 * follows slots and keeps one connection per shard for sharded pub/sub.
 *
 * `ready` is emitted on every (re)connect: the channels are then not subscribed at Redis any
 * more, and the broker subscribes them again and repairs the rooms (pub/sub drops what was
 * sent meanwhile).
 */
export interface Subscriber {
  /** `ready` when connected; as ioredis names its states otherwise (`wait` before the first connect). */
  readonly status: string
  subscribe(channels: string[]): Promise<void>
  unsubscribe(channel: string): Promise<void>
  on(event: 'message', fn: (channel: string, payload: string) => void): void
  on(event: 'error', fn: (err: unknown) => void): void
  /** `subscribersReady`: a Redis Cluster's shard connections were (re)made. */
  on(event: 'ready' | 'close' | 'reconnecting' | 'end' | 'subscribersReady', fn: () => void): void
  connect(): Promise<void>
  /** Drops the connection(s) and makes them again (`ready` follows). */
  reconnect(): void
  disconnect(): void
}

/** A Redis Cluster's subscriber: ioredis's sharded pub/sub (SSUBSCRIBE), one connection per primary. */
export function clusterSubscriber(sub: Redis): Subscriber {
  return {
    get status() {
      return sub.status
    },
    subscribe: async (channels) => void (await sub.ssubscribe(...channels)),
    unsubscribe: async (channel) => void (await sub.sunsubscribe(channel)),
    // biome-ignore lint/suspicious/noExplicitAny: a listener of any event's arguments, as ioredis's and Bun's on() take
    on(event: string, fn: (...a: any[]) => void) {
      sub.on(event === 'message' ? 'smessage' : event, fn)
    },
    connect: () => (sub.status === 'wait' ? sub.connect() : Promise.resolve()),
    reconnect: () => sub.disconnect(true),
    disconnect: () => sub.disconnect(),
  }
}

/**
 * Bun's RedisClient as the subscriber of one Redis. Bun reconnects by itself but neither
 * subscribes again nor forgets its listeners (subscribing a channel again would call the
 * listener twice per message): on a reconnect the listeners are dropped and `ready` lets the
 * broker subscribe what it watches. A channel is handed to Bun once however often it is asked.
 */
export function bunSubscriber(url: string): Subscriber {
  const client = new RedisClient(url, { autoReconnect: true, enableOfflineQueue: true })
  // biome-ignore lint/suspicious/noExplicitAny: listeners of any event's arguments
  const handlers: Record<string, ((...a: any[]) => void)[]> = {}
  const emit = (event: string, ...a: unknown[]) => {
    for (const fn of handlers[event] ?? []) fn(...a)
  }
  /** What Bun holds a listener for. */
  const subscribed = new Set<string>()
  const listener = (message: string, channel: string) => emit('message', channel, message)
  let state: 'wait' | 'connecting' | 'ready' | 'reconnecting' | 'end' = 'wait'
  let connects = 0
  let retry = 0
  /** Set while a reconnect drops the listeners: a (un)subscribe asked meanwhile waits for it. */
  let resetting: Promise<void> | undefined
  /** The channels asked for in this tick, subscribed together at its end. */
  let gathering: { channels: string[]; done: Promise<unknown> } | undefined

  client.onconnect = () => {
    state = 'ready'
    retry = 0
    if (connects++ === 0) return emit('ready')
    // Redis forgot this connection's channels; Bun did not forget their listeners.
    subscribed.clear()
    resetting = client
      .unsubscribe()
      .catch(() => {})
      .finally(() => {
        resetting = undefined
        emit('ready')
      })
  }
  client.onclose = (err) => {
    if (state === 'end') return
    state = 'reconnecting'
    if (err) emit('error', err)
    emit('close')
    emit('reconnecting')
    // Bun gives up after its own retries: keep trying, as ioredis does.
    const wait = Math.min(100 * 2 ** retry++, BACKOFF_MAX_MS)
    setTimeout(() => {
      if (state !== 'end' && !client.connected) client.connect().catch(() => {})
    }, wait).unref?.()
  }

  return {
    get status() {
      return state === 'ready' && !client.connected ? 'reconnecting' : state
    },
    async subscribe(channels) {
      if (resetting) await resetting
      const fresh = channels.filter((c) => !subscribed.has(c))
      if (fresh.length === 0) return
      for (const c of fresh) subscribed.add(c)
      // Channels asked in one tick go in one SUBSCRIBE: Bun sends a SUBSCRIBE only once the one
      // before it is answered, and a connect asks for its user's channel and its rooms' at once
      // (two round trips were one).
      if (!gathering) {
        const batch: string[] = []
        gathering = { channels: batch, done: Promise.resolve().then(() => ((gathering = undefined), client.subscribe(batch, listener))) }
      }
      const { channels: batch, done } = gathering
      batch.push(...fresh)
      try {
        await done
      } catch (err) {
        for (const c of fresh) subscribed.delete(c)
        throw err
      }
    },
    async unsubscribe(channel) {
      if (resetting) await resetting
      if (!subscribed.delete(channel)) return
      await client.unsubscribe(channel)
    },
    // biome-ignore lint/suspicious/noExplicitAny: a listener of any event's arguments, as ioredis's and Bun's on() take
    on(event: string, fn: (...a: any[]) => void) {
      ;(handlers[event] ??= []).push(fn)
    },
    async connect() {
      if (state !== 'wait') return
      state = 'connecting'
      await client.connect()
    },
    reconnect() {
      client.close()
    },
    disconnect() {
      state = 'end'
      client.close()
      emit('end')
    },
  }
}
