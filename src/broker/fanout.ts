import type { Position } from '../core/room-log'

/**
 * Hands an encoded frame to this node's subscribers of `topic`. `except` names a connection
 * (by id, cluster-wide) that must not receive it: the sender of a DM or a typing event.
 */
export type Deliver = (topic: string, frame: string, except?: string) => void

/** Topic names: one Bun topic (and one Redis channel) per room and per user, spelled in core/topic.ts. */
export { roomTopic, userTopic } from '../core/topic'

/** Fan-out: a room's (or user's) frames reach every node that has a connection in it. */
export interface FanOut {
  /** `reset` is told when a room's sequence restarted under this node (its members must resync). */
  start(deliver: Deliver, reset?: (room: string, pos: Position) => void): Promise<void>
  /** Delivers a frame that is not sequenced (DM, typing, presence event) to every node. */
  relay(topic: string, frame: string, except?: string): Promise<void>
  /** This node wants (or no longer wants) the topic's traffic. Counted: N watches need N unwatches. */
  watch(topic: string): Promise<void>
  unwatch(topic: string): void
}
