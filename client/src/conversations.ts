import type { Conversation, JoinedFrame, ReadFrame, RoomMessage, User } from './types'

/** A conversation as this client knows it: the server's fields, kept current from frames. */
export interface ConversationState extends Conversation {
  /**
   * Other members' read markers, as far as this client saw `read` events since it started
   * (the server does not send them on connect): read receipts, for "seen by".
   */
  readBy: { user: User; seq: number }[]
}

interface Entry {
  c: ConversationState
  /** The seq the server counted `base` up to (a `joined` or `rooms` answer). */
  boundary: number
  /** Unread messages at or below `boundary`, as the server counted them. */
  base: number
  /** Seqs of messages by others above `boundary` and the marker, seen since. */
  live: number[]
  readers: Map<string, { user: User; seq: number }>
}

const DIRECT = 'dm:'
const newerFirst = (a: ConversationState, b: ConversationState) => {
  const ta = a.last?.ts ?? ''
  const tb = b.last?.ts ?? ''
  return ta !== tb ? (ta > tb ? -1 : 1) : a.room < b.room ? -1 : a.room > b.room ? 1 : 0
}

/**
 * The user's memberships with their read markers and unread counts. The server gives a count
 * up to a seq (`joined`, `rooms`); above it the client counts the messages it receives, so the
 * badge stays right with no polling. Every change returns whether anything changed.
 */
export class ConversationBook {
  #entries = new Map<string, Entry>()

  constructor(private readonly me: () => string | undefined) {}

  get(room: string): ConversationState | undefined {
    return this.#entries.get(room)?.c
  }

  has(room: string): boolean {
    return this.#entries.has(room)
  }

  /** Most recently active first (the server's order). */
  list(): ConversationState[] {
    return [...this.#entries.values()].map((e) => e.c).sort(newerFirst)
  }

  total(): number {
    let n = 0
    for (const e of this.#entries.values()) n += e.c.unread
    return n
  }

  /** A direct conversation with `user`, when one is known. */
  directWith(user: string): ConversationState | undefined {
    for (const e of this.#entries.values()) if (e.c.kind === 'direct' && e.c.with?.id === user) return e.c
    return undefined
  }

  /** A member's `joined`: the server's count up to `seq`. */
  joined(j: JoinedFrame): boolean {
    if (!j.member) return false
    let e = this.#entries.get(j.room)
    if (!e) e = this.#create(j.room, j.seq, j.epoch)
    else if (e.c.epoch !== j.epoch) {
      // The room's sequence restarted: seqs of the old epoch mean nothing any more.
      e.live = []
      e.readers.clear()
      e.c = { ...e.c, last: undefined, readBy: [] }
    }
    e.boundary = j.seq
    e.base = j.unread ?? 0
    e.live = e.live.filter((s) => s > j.seq)
    e.c = { ...e.c, seq: Math.max(j.epoch === e.c.epoch ? e.c.seq : 0, j.seq), epoch: j.epoch, read: j.read ?? e.c.read }
    this.#recount(e)
    return true
  }

  /** An entry of a `rooms` answer. */
  listed(c: Conversation): boolean {
    let e = this.#entries.get(c.room)
    if (!e) e = this.#create(c.room, c.seq, c.epoch)
    const local = e.c
    const newer = c.epoch !== local.epoch || c.seq >= local.seq
    if (newer) {
      e.boundary = c.seq
      e.base = c.unread
      e.live = c.epoch === local.epoch ? e.live.filter((s) => s > c.seq) : []
      e.c = {
        ...local,
        kind: c.kind,
        with: c.with ?? local.with,
        seq: c.seq,
        epoch: c.epoch,
        read: c.read,
        last: c.last ?? (c.epoch === local.epoch ? local.last : undefined),
      }
      // Markers never go back: one this client moved since the server's snapshot still holds.
      if (c.epoch === local.epoch && local.read > c.read) this.#marker(e, local.read)
    } else {
      e.c = { ...local, kind: c.kind, with: c.with ?? local.with, last: local.last ?? c.last }
      if (c.read > local.read) this.#marker(e, c.read)
    }
    this.#recount(e)
    return true
  }

  /** A message of the room, new to this client, in seq order. */
  message(m: RoomMessage): boolean {
    const e = this.#entries.get(m.room)
    if (!e) return false
    const c = e.c
    const mine = m.from.id === this.me()
    e.c = {
      ...c,
      seq: Math.max(c.seq, m.seq),
      last: !c.last || m.seq >= c.last.seq ? m : c.last,
      // Until `rooms` names the other user, a message of ours gives its id (as its name too).
      with: c.with ?? (c.kind !== 'direct' ? undefined : !mine ? m.from : m.type === 'dm' ? { id: m.to, name: m.to } : undefined),
    }
    // Sending a message moves the sender's marker to it (the server sends no read event for that).
    if (mine) this.#marker(e, m.seq)
    else if (m.seq > e.boundary && m.seq > c.read && !e.live.includes(m.seq)) e.live.push(m.seq)
    this.#recount(e)
    return true
  }

  /** A read event: the user's own marker moved (any of its connections), or a receipt. */
  read(f: ReadFrame): boolean {
    const e = this.#entries.get(f.room)
    if (!e) return false
    if (f.user.id === this.me()) {
      this.#marker(e, f.seq)
      this.#recount(e)
      return true
    }
    const before = e.readers.get(f.user.id)
    if (before && before.seq >= f.seq) return false
    e.readers.set(f.user.id, { user: f.user, seq: f.seq })
    e.c = { ...e.c, readBy: [...e.readers.values()] }
    return true
  }

  /** This connection's marker reached `seq` (its own read was acknowledged, or it sent a dm). */
  marked(room: string, seq: number): boolean {
    const e = this.#entries.get(room)
    if (!e || seq <= e.c.read) return false
    this.#marker(e, seq)
    this.#recount(e)
    return true
  }

  remove(room: string): boolean {
    return this.#entries.delete(room)
  }

  /** Keeps only these rooms (the memberships a `welcome` lists); returns the ones dropped. */
  retain(rooms: Iterable<string>): string[] {
    const keep = new Set(rooms)
    const gone = [...this.#entries.keys()].filter((r) => !keep.has(r))
    for (const r of gone) this.#entries.delete(r)
    return gone
  }

  clear() {
    this.#entries.clear()
  }

  #create(room: string, seq: number, epoch: string): Entry {
    const e: Entry = {
      c: { room, kind: room.startsWith(DIRECT) ? 'direct' : 'room', seq, epoch, read: 0, unread: 0, readBy: [] },
      boundary: seq,
      base: 0,
      live: [],
      readers: new Map(),
    }
    this.#entries.set(room, e)
    return e
  }

  /** Moves the marker up to `seq`: what the client counted above it stays unread. */
  #marker(e: Entry, seq: number) {
    if (seq <= e.c.read) return
    e.c = { ...e.c, read: seq }
    e.live = e.live.filter((s) => s > seq)
    // Of the server's count, at most the messages between the new marker and its boundary remain.
    e.base = seq >= e.boundary ? 0 : Math.min(e.base, e.boundary - seq)
  }

  #recount(e: Entry) {
    const unread = e.base + e.live.length
    if (unread !== e.c.unread) e.c = { ...e.c, unread }
  }
}
