import { UNREAD_CAP } from '../broker/read-model'

/** A reply accepted by a room's log, as the thread lists need it. */
export interface ThreadReply {
  room: string
  /** The thread's root: the message replied to. */
  msg: string
  rootSeq: number
  rootAuthor: string
  /** The reply's own seq, author and time. */
  seq: number
  from: string
  ts: string
}

/** One thread of a user's list. */
export interface ThreadEntry {
  room: string
  msg: string
  rootSeq: number
  count: number
  last_ts: string
  /** Replies by others above the user's thread marker (up to UNREAD_CAP). */
  unread: number
}

export interface ThreadPage {
  threads: ThreadEntry[]
  more: boolean
}

/**
 * The users' threads (PROTOCOL-v4): the threads each user started or replied in, most recently
 * active first, and each user's marker in a thread. A thread's marker is its own: the room's
 * marker never moves it and it never moves the room's. One engine per deployment, beside the
 * memberships: memory (one node), Redis (a cluster without PostgreSQL), PostgreSQL (durable).
 * The summary shown on the root message (count, last_ts, participants) is the sequencer's
 * (message state); this engine is the per-user side.
 */
export interface Threads {
  readonly kind: 'memory' | 'redis' | 'postgres'
  /** Records a reply: the thread joins the lists of its author and the root's author; the author's marker follows it. */
  replied(r: ThreadReply): Promise<void>
  /** Moves the user's marker in the thread up to `seq` (never back); the marker now. */
  read(room: string, msg: string, user: string, seq: number): Promise<number>
  /** A page of the user's threads (of one room when given), last activity before `before` (ms), newest first. */
  list(user: string, opts: { room?: string; before?: number; limit: number }): Promise<ThreadPage>
}

/** The key of a thread in maps and Redis members: room names never hold a newline. */
export const threadKey = (room: string, msg: string) => `${room}\n${msg}`
export const splitThreadKey = (k: string): [string, string] => {
  const i = k.indexOf('\n')
  return [k.slice(0, i), k.slice(i + 1)]
}

/** Threads in this process: one node, lost on restart (like the memory memberships). */
export function memoryThreads(): Threads {
  type Thread = { room: string; msg: string; rootSeq: number; count: number; last_ts: string; lastMs: number; replies: [number, string][] }
  const threads = new Map<string, Thread>()
  /** user → thread key → [in the list, marker]. */
  const users = new Map<string, Map<string, { involved: boolean; read: number }>>()
  const entry = (user: string, k: string) => {
    let m = users.get(user)
    if (!m) users.set(user, (m = new Map()))
    let e = m.get(k)
    if (!e) m.set(k, (e = { involved: false, read: 0 }))
    return e
  }
  return {
    kind: 'memory',
    async replied(r) {
      const k = threadKey(r.room, r.msg)
      let t = threads.get(k)
      if (!t) threads.set(k, (t = { room: r.room, msg: r.msg, rootSeq: r.rootSeq, count: 0, last_ts: r.ts, lastMs: 0, replies: [] }))
      t.count++
      t.replies.push([r.seq, r.from])
      const ms = Date.parse(r.ts)
      if (ms >= t.lastMs) {
        t.lastMs = ms
        t.last_ts = r.ts
      }
      entry(r.rootAuthor, k).involved = true
      const mine = entry(r.from, k)
      mine.involved = true
      mine.read = Math.max(mine.read, r.seq)
    },
    async read(room, msg, user, seq) {
      const e = entry(user, threadKey(room, msg))
      e.read = Math.max(e.read, seq)
      return e.read
    },
    async list(user, { room, before, limit }) {
      const mine = [...(users.get(user) ?? [])].filter(([, e]) => e.involved)
      const rows: ThreadEntry[] = []
      for (const [k, e] of mine) {
        const t = threads.get(k)
        if (!t || (room !== undefined && t.room !== room) || (before !== undefined && t.lastMs >= before)) continue
        let unread = 0
        for (const [seq, from] of t.replies) if (seq > e.read && from !== user && unread < UNREAD_CAP) unread++
        rows.push({ room: t.room, msg: t.msg, rootSeq: t.rootSeq, count: t.count, last_ts: t.last_ts, unread })
      }
      rows.sort(newestFirst)
      return { threads: rows.slice(0, limit), more: rows.length > limit }
    },
  }
}

/** The order of a thread list: last activity, newest first; then by room and message, for a stable page. */
export function newestFirst(a: ThreadEntry, b: ThreadEntry): number {
  const d = Date.parse(b.last_ts) - Date.parse(a.last_ts)
  return d !== 0 ? d : a.room < b.room ? -1 : a.room > b.room ? 1 : a.msg < b.msg ? -1 : a.msg > b.msg ? 1 : 0
}
