import type { User } from '../core/identity'

/** A message a user scheduled (PROTOCOL-v4 Scheduled messages): a chat to `room` or a dm `to` a user. */
export interface ScheduledMessage {
  scheduled: string
  user: User
  /** The rooms the user's token allowed when it scheduled (undefined: every room), checked again at send_at. */
  rooms?: string[]
  room?: string
  to?: string
  body: string
  data?: unknown
  reply_to?: string
  /** ISO time. */
  send_at: string
  /** The user was a member of `room` when it scheduled: it must still be one at send_at. */
  member?: boolean
}

/**
 * The pending scheduled messages, cluster-wide: each is claimed by one node at a time when it
 * is due (a claim holds it for `leaseMs`; a node that dies holding it leaves it to another one
 * after that, and the append's retry key keeps that from sending it twice). One engine per
 * deployment: memory (one node, lost on restart: not durable), Redis (a sorted set and an
 * atomic claim script), PostgreSQL (`FOR UPDATE SKIP LOCKED`).
 */
export interface ScheduledQueue {
  readonly kind: 'memory' | 'redis' | 'postgres'
  /** Keeps a message (`exists`: one of that id is kept already, a retry); `limit` when the user has `cap` pending. */
  add(m: ScheduledMessage, cap: number): Promise<'added' | 'exists' | 'limit'>
  /** The user's pending messages (of one room when given), by send_at. */
  list(user: string, room?: string): Promise<ScheduledMessage[]>
  /** Drops one of the user's pending messages; false when the user has none of that id. */
  remove(user: string, id: string): Promise<boolean>
  /** Up to `limit` messages due at `now` (ms), each held by this caller for `leaseMs` and handed to no other claim meanwhile. */
  claim(now: number, limit: number, leaseMs: number): Promise<ScheduledMessage[]>
  /** A claimed message was sent or refused: it is gone. */
  done(m: ScheduledMessage): Promise<void>
}

const bySendAt = (a: ScheduledMessage, b: ScheduledMessage) => Date.parse(a.send_at) - Date.parse(b.send_at)
export const sortBySendAt = (ms: ScheduledMessage[]) => ms.sort(bySendAt)

/** In this process: one node, and lost when it stops (documented as not durable). */
export function memoryScheduled(): ScheduledQueue {
  const items = new Map<string, { m: ScheduledMessage; due: number }>()
  const mine = (user: string) => [...items.values()].filter((x) => x.m.user.id === user)
  return {
    kind: 'memory',
    async add(m, cap) {
      if (items.has(m.scheduled)) return 'exists'
      if (mine(m.user.id).length >= cap) return 'limit'
      items.set(m.scheduled, { m, due: Date.parse(m.send_at) })
      return 'added'
    },
    async list(user, room) {
      return sortBySendAt(
        mine(user)
          .map((x) => x.m)
          .filter((m) => room === undefined || m.room === room),
      )
    },
    async remove(user, id) {
      const x = items.get(id)
      if (!x || x.m.user.id !== user) return false
      items.delete(id)
      return true
    },
    async claim(now, limit, leaseMs) {
      const due = [...items.values()].filter((x) => x.due <= now).slice(0, limit)
      for (const x of due) x.due = now + leaseMs
      return due.map((x) => x.m)
    },
    async done(m) {
      items.delete(m.scheduled)
    },
  }
}
