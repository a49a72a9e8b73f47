import type { FanOut } from './fanout'
import type { Presence } from './presence'
import type { PresenceWindows } from './presence-windows'
import type { ReadModel } from './read-model'
import type { RoomLog } from './log'
export * from './fanout'
export * from './log'
export * from './presence'
export * from './presence-windows'
export * from './read-model'
import { freshEpoch } from '../core/room-log'
import type { Origin, Page, Position } from '../core/room-log'
export { freshEpoch }
export type { Origin, Page, Position }

/**
 * Where a room's sequence starts when the broker has no state for it: the store's last
 * seq and epoch when persistence is on, else a fresh epoch from 0.
 */
export type RoomOrigin = (room: string) => Promise<Origin>

export const freshOrigin: RoomOrigin = async () => ({ seq: 0, epoch: freshEpoch() })

/**
 * Sequencing, the recent log and cross-node fan-out of every room. `memory` serves one
 * node; `redis` makes many nodes one. The hub does not know which one runs.
 */
export interface Broker extends RoomLog, FanOut, ReadModel {
  readonly kind: 'memory' | 'redis'
  presence: Presence
  /** Big rooms' presence windows, shared by every node on this engine (one `batch` frame per window). */
  windows: PresenceWindows
  /** Undefined when healthy, else what is wrong (for /readyz). */
  problem(): string | undefined
  close(): Promise<void>
}
