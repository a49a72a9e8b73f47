import type { ServerWebSocket } from 'bun'
import type { Liveness } from './admission'
import type { Bucket, Strikes } from './rate-limit'

export type { Identity } from '../core/identity'
import type { Identity } from '../core/identity'
import { roomMatches } from '../core/room'

export interface Joining {
  /** Frames that arrived for the room while its replay was being read. */
  buffer: string[]
  done: Promise<void>
}

/**
 * One client socket, with its rate-limit bucket in the same record (one object a socket fewer).
 * Every field is set when it is made, so that it keeps the shape it was allocated with.
 */
export interface Conn extends Bucket, Strikes, Liveness {
  id: string
  ws: ServerWebSocket<unknown>
  identity: Identity
  /** `identity.user` encoded as in frames, made once (and again on refresh), not per message. */
  fromJson: string
  /** Rooms this connection is live in, with the seq its live stream started after. */
  rooms: Map<string, number>
  /** Joins in progress; `NO_JOINS` (shared, empty) while there are none. */
  joining: Map<string, Joining>
  /** Rooms the user is a member of, as this connection knows (its own marker moves as it sends). */
  member: Set<string>
  /** Set until the connection's `welcome` is out (memberships loaded, rooms joined): frames wait for it. */
  loading: Promise<void> | undefined
  closing: boolean
  /** Mutes of this user, by room, as last read or seen pass (`at` = the room's live boundary then). */
  muted: Map<string, { until?: number; loading?: Promise<number>; at: number | undefined }> | undefined
}

/** The `joining` of a connection without joins in progress: one empty map for all of them. */
export const NO_JOINS: Map<string, Joining> = new (class extends Map<string, Joining> {
  override set(): never {
    throw new Error('NO_JOINS is shared: give the connection its own map first')
  }
})()

export function allowed(identity: Identity, room: string): boolean {
  return !identity.rooms || roomMatches(identity.rooms, room)
}
