import type { Book } from '../cluster/ledger'
import { listAll } from '../cluster/ledger'
import type { User } from '../protocol/server-frames'

/**
 * Who is in a room, cluster-wide: counted by connection, reported by user. The hub calls `add` once when a connection goes live in a room and `remove` once when it leaves.
 */
export interface Presence {
  /** True when this is the user's first connection in the room (a `join` event is due). */
  add(room: string, user: User, conn: string): Promise<boolean>
  /** True when this was the user's last connection in the room (a `leave` event is due). */
  remove(room: string, userId: string, conn: string): Promise<boolean>
  /** Every user present (for the callers that want them all: Pusher presence channels, capped small). */
  list(room: string): Promise<User[]>
  /** How many users are present, cluster-wide. */
  count(room: string): Promise<number>
  /** At most `limit` users; `next` (absent at the end) is the `cursor` of the following page: the ledger's cursor, a dot, how many of that ledger page were given already. */
  page(room: string, cursor?: string, limit?: number): Promise<PresencePage>
  /**
   * Where the joins and leaves that no call of this node returned go (a dead node's users reaped
   * here, Redis back without presence): the hub's announcer, so that they are batched like the
   * others in a big room. Until one is set, the engine relays each as its own event.
   */
  onEdge(listener: PresenceEdge): void
}

export type PresenceEdge = (room: string, event: 'join' | 'leave', user: User) => void

export interface PresencePage {
  users: User[]
  next?: string
}

/** Ledger pages read per presence page at most (a ledger page may be empty, never endless). */
const STEPS = 1000
/** The ledger page asked for, whatever the caller's limit: the same cursor then gives the same page, so a cursor's skip stays true. */
const LEDGER_PAGE = 1000

/**
 * Presence as a book of the cluster's ledger: per room, each user counted by connection, with
 * the user's name. The hub pairs every `add` with one `remove` (rooms.ts, the Pusher face), so
 * the connections themselves need not be kept: a count per user and node is enough.
 */
export function ledgerPresence(book: Book): Presence {
  const asUser = (f: { member: string; info: string }): User => ({ id: f.member, name: f.info || f.member })
  return {
    add: (room, user) => book.up(room, user.id, user.name),
    remove: (room, userId) => book.down(room, userId),
    async list(room) {
      return (await listAll(book, room)).map(asUser)
    },
    count: (room) => book.count(room),
    onEdge() {}, // a book without edges of its own (one node): every change is a call's
    // A ledger page's size is a hint (Redis's HSCAN may give more): the cursor says how many of
    // the ledger page at `at` were given, so that a page never exceeds `limit` and none is skipped.
    async page(room, cursor, limit = 1000) {
      const dot = cursor?.lastIndexOf('.') ?? -1
      let at: string | undefined = cursor && dot > 0 ? cursor.slice(0, dot) : undefined
      let skip = cursor && dot >= 0 ? Number(cursor.slice(dot + 1)) : 0
      const users: User[] = []
      for (let i = 0; i < STEPS; i++) {
        const p = await book.list(room, at, LEDGER_PAGE)
        const rest = p.facts.slice(skip)
        const wanted = limit - users.length
        if (rest.length > wanted) {
          users.push(...rest.slice(0, wanted).map(asUser))
          return { users, next: `${at ?? ''}.${skip + wanted}` }
        }
        users.push(...rest.map(asUser))
        skip = 0
        if (!(at = p.cursor)) return { users }
        if (users.length === limit) return { users, next: `${at}.0` }
      }
      return { users, next: `${at ?? ''}.${skip}` }
    },
  }
}
