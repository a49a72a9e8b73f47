import type { Accepted, Broker, Deliver, Page, Position, Presence, Replay } from './types'
import { DEDUPE_WINDOW_MS, roomTopic } from './types'
import { chatFrame } from '../protocol/server-frames'
import type { User } from '../protocol/server-frames'

interface RoomLog {
  seq: number
  /** frames[i] has seq `first + i`. */
  first: number
  frames: string[]
}

/** One node, everything in this process. The default engine. */
export function memoryBroker(opts: { historyLimit: number }): Broker {
  const epoch = Bun.randomUUIDv7().slice(-12)
  const rooms = new Map<string, RoomLog>()
  const dedupe = new Map<string, { at: number; result: Promise<unknown> }>()
  let deliver: Deliver = () => {}

  const log = (room: string) => {
    let r = rooms.get(room)
    if (!r) rooms.set(room, (r = { seq: 0, first: 1, frames: [] }))
    return r
  }

  const sweep = setInterval(() => {
    const cutoff = Date.now() - DEDUPE_WINDOW_MS
    for (const [key, entry] of dedupe) if (entry.at < cutoff) dedupe.delete(key)
  }, 10_000)
  sweep.unref()

  return {
    kind: 'memory',
    async start(d) {
      deliver = d
    },
    async append(room, msgId, tail, key): Promise<Accepted> {
      if (key !== undefined) {
        const hit = dedupe.get(key)
        if (hit && hit.at > Date.now() - DEDUPE_WINDOW_MS) return { ...((await hit.result) as Accepted), duplicate: true }
      }
      const r = log(room)
      const seq = ++r.seq
      const frame = chatFrame(seq, tail)
      r.frames.push(frame)
      // Trim in chunks so that appends stay O(1) amortised.
      if (r.frames.length >= opts.historyLimit * 2 || r.frames.length > opts.historyLimit + 1024) {
        const drop = r.frames.length - opts.historyLimit
        r.frames.splice(0, drop)
        r.first += drop
      }
      deliver(roomTopic(room), frame)
      const accepted = { id: msgId, seq, duplicate: false }
      if (key !== undefined) dedupe.set(key, { at: Date.now(), result: Promise.resolve(accepted) })
      return accepted
    },
    async relay(topic, frame, except) {
      deliver(topic, frame, except)
    },
    once<T>(key: string, send: () => Promise<T>): Promise<T> {
      const hit = dedupe.get(key)
      if (hit && hit.at > Date.now() - DEDUPE_WINDOW_MS) return hit.result as Promise<T>
      const result = send()
      dedupe.set(key, { at: Date.now(), result })
      result.catch(() => dedupe.delete(key)) // a failed send may be retried
      return result
    },
    async watch() {},
    unwatch() {},
    async position(room): Promise<Position> {
      return { seq: rooms.get(room)?.seq ?? 0, epoch }
    },
    async since(room, since): Promise<Replay> {
      const r = rooms.get(room)
      if (!r) return { seq: 0, epoch, frames: [], complete: since === 0 }
      const kept = r.first + r.frames.length - opts.historyLimit // first seq within the promised window
      const oldest = Math.max(r.first, kept)
      if (since > r.seq || since + 1 < oldest) return { seq: r.seq, epoch, frames: [], complete: false }
      return { seq: r.seq, epoch, frames: r.frames.slice(since + 1 - r.first), complete: true }
    },
    async page(room, before, limit): Promise<Page> {
      const r = rooms.get(room)
      if (!r) return { frames: [], more: false }
      const oldest = Math.max(r.first, r.first + r.frames.length - opts.historyLimit)
      const end = Math.min(before === undefined ? r.seq + 1 : before, r.seq + 1) // exclusive
      const start = Math.max(oldest, end - limit)
      if (end <= start) return { frames: [], more: false }
      return { frames: r.frames.slice(start - r.first, end - r.first), more: start > oldest }
    },
    presence: memoryPresence(),
    problem: () => undefined,
    async close() {
      clearInterval(sweep)
    },
  }
}

export function memoryPresence(): Presence {
  const rooms = new Map<string, Map<string, { user: User; conns: Set<string> }>>()
  return {
    async add(room, user, conn) {
      let users = rooms.get(room)
      if (!users) rooms.set(room, (users = new Map()))
      const entry = users.get(user.id)
      if (entry) {
        entry.conns.add(conn)
        return false
      }
      users.set(user.id, { user, conns: new Set([conn]) })
      return true
    },
    async remove(room, userId, conn) {
      const users = rooms.get(room)
      const entry = users?.get(userId)
      if (!users || !entry || !entry.conns.delete(conn)) return false
      if (entry.conns.size > 0) return false
      users.delete(userId)
      if (users.size === 0) rooms.delete(room)
      return true
    },
    async list(room) {
      return [...(rooms.get(room)?.values() ?? [])].map((e) => e.user)
    },
  }
}
