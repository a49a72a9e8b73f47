import type { Server, ServerWebSocket } from 'bun'
import type { Config } from '../config'
import type { ErrorCode } from '../core/errors'
import { SmallSet } from '../core/small'
import { isRoomTopic } from '../core/topic'
import { log } from '../log'
import type { Metrics } from '../metrics'
import { CLOSE, CONTROL_HEAD, frames, isMessageFrame } from '../protocol/server-frames'
import type { User } from '../protocol/server-frames'
import type { AuditEntry } from '../store/types'
import type { Conn } from './connection'
import { MODERATION_HEAD } from './moderation'

export interface DeliveryDeps {
  config: Config
  metrics: Metrics
  server: () => Server<unknown>
  /** Every connection of this node, by id. */
  conns: Map<string, Conn>
  audit: (e: AuditEntry) => void
  /** Every frame of a topic passes here before Bun publishes it (joins in progress buffer it). */
  overhear: (topic: string, frame: string) => void
  /** A command for a user's local connections (see Control). */
  control: (topic: string, frame: string, except?: string) => void
  /** A moderation event passing by, with the topic's local connections. */
  moderation: (frame: string, conns: Iterable<Conn> | undefined) => void
  /** A topic got its first (or lost its last) local connection: webhooks' online/occupied. */
  live?: (topic: string, user: User) => void
  idle?: (topic: string, user: User) => void
}

/** The way out (see createDelivery). */
export interface Delivery {
  /** Local connections of each topic (room and user topics). */
  local: Map<string, Set<Conn>>
  /** The room topics of `local`: there is a user topic per user, so counting rooms through `local` grew with the users. */
  roomTopics: ReadonlySet<string>
  /** Called by the broker for every frame of a watched topic: publishes it to Bun's topic. */
  deliver(topic: string, frame: string, except?: string): void
  /** One frame to one connection, counted by type; a connection that cannot take it is closed. */
  send(c: Conn, frame: string, type: keyof Metrics['framesOut']): void
  /** `retryAfter`: seconds, the frame's `retry_after` (slow_mode). */
  sendError(c: Conn, code: ErrorCode, message: string, id?: string, retryAfter?: number): void
  closeConn(c: Conn, code: number, reason: string): void
  /** Closes a slow consumer with 4008 (counted, logged, audited). */
  closeSlow(c: Conn): void
  /** A connection joins a topic's local set (first one: `live`). */
  addMember(topic: string, c: Conn): void
  /** A connection leaves a topic's local set (last one: `idle`). */
  removeMember(topic: string, c: Conn): void
}

/**
 * The way out: frames to Bun's topics (fan-out is Bun's: encoded once, handed to
 * `server.publish`), frames to one connection, and the slow consumers Bun reports. Nothing here
 * loops over a room's members on the way out, except to find a slow consumer after Bun said one.
 */
export function createDelivery(d: DeliveryDeps): Delivery {
  const { config, metrics } = d
  /** Local connections of each topic (room and user topics), for presence and slow-consumer checks. */
  const local = new Map<string, Set<Conn>>()
  const roomTopics = new Set<string>()

  /** Called by the broker for every frame of a watched topic. */
  function deliver(topic: string, frame: string, except?: string) {
    if (frame.startsWith(CONTROL_HEAD)) return d.control(topic, frame, except)
    if (frame.startsWith(MODERATION_HEAD)) d.moderation(frame, local.get(topic))
    d.overhear(topic, frame)
    const skip = except ? d.conns.get(except) : undefined
    const s = d.server()
    // After a TLS certificate rotation several servers share the topics (src/http/listeners.ts).
    const publishExcept = (s as { publishExcept?: (ws: ServerWebSocket<unknown>, t: string, f: string) => number }).publishExcept
    const status =
      skip && !skip.closing
        ? publishExcept
          ? publishExcept(skip.ws, topic, frame)
          : skip.ws.publish(topic, frame)
        : s.publish(topic, frame)
    // Bun's subscribers of a room topic are its live connections here (subscribed and added in
    // one step, rooms.ts), so their count is read from the set, not from Bun's topic per message.
    if (isMessageFrame(frame)) metrics.delivered.inc(local.get(topic)?.size ?? 0)
    if (status === 0) cutSlowConsumers(topic, frame.length)
  }

  /** Bun dropped a frame for someone: close, with 4008, whoever cannot take it. */
  function cutSlowConsumers(topic: string, frameBytes: number) {
    const set = local.get(topic)
    if (!set) return
    for (const c of set) {
      if (c.ws.getBufferedAmount() + frameBytes > config.MAX_BUFFERED_BYTES) {
        metrics.dropped.inc()
        closeSlow(c)
      }
    }
  }

  function closeSlow(c: Conn) {
    if (c.closing) return
    metrics.slowConsumers.inc()
    log.warn('slow consumer closed', { conn: c.id, user: c.identity.user.id, buffered: c.ws.getBufferedAmount() })
    d.audit({ event: 'slow_consumer', user: c.identity.user.id, conn: c.id })
    closeConn(c, CLOSE.slowConsumer, 'slow consumer')
  }

  function closeConn(c: Conn, code: number, reason: string) {
    if (c.closing) return
    c.closing = true
    c.ws.close(code, reason)
  }

  function send(c: Conn, frame: string, type: keyof Metrics['framesOut']) {
    if (c.closing) return
    metrics.framesOut[type]!.inc()
    if (c.ws.send(frame) === 0) closeSlow(c)
  }

  function sendError(c: Conn, code: ErrorCode, message: string, id?: string, retryAfter?: number) {
    metrics.errors[code].inc()
    send(c, frames.error(code, message, id, retryAfter), 'error')
  }

  function addMember(topic: string, c: Conn) {
    let set = local.get(topic)
    if (!set) {
      local.set(topic, (set = new SmallSet()))
      if (isRoomTopic(topic)) {
        roomTopics.add(topic)
        metrics.rooms.inc()
      }
      d.live?.(topic, c.identity.user)
    }
    set.add(c)
  }

  function removeMember(topic: string, c: Conn) {
    const set = local.get(topic)
    if (!set?.delete(c) || set.size > 0) return
    local.delete(topic)
    if (roomTopics.delete(topic)) metrics.rooms.dec()
    d.idle?.(topic, c.identity.user)
  }

  return {
    local,
    roomTopics,
    deliver,
    send,
    sendError,
    closeConn,
    closeSlow,
    addMember,
    removeMember,
  }
}
