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
  list(room: string): Promise<User[]>
}

/**
 * Presence as a book of the cluster's ledger: per room, each user counted by connection, with
 * the user's name. The hub pairs every `add` with one `remove` (rooms.ts, the Pusher face), so
 * the connections themselves need not be kept: a count per user and node is enough.
 */
export function ledgerPresence(book: Book): Presence {
  return {
    add: (room, user) => book.up(room, user.id, user.name),
    remove: (room, userId) => book.down(room, userId),
    async list(room) {
      return (await listAll(book, room)).map((f) => ({ id: f.member, name: f.info || f.member }))
    },
  }
}
