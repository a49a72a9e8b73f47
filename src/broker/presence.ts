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

