import type { Accepted, Broker } from '../broker/types'
import { FrameError } from '../core/errors'
import { eventHead, eventSeq, eventTail, pinJson } from '../protocol/server-frames'
import type { RoomEvent, User } from '../protocol/server-frames'
import type { Append } from './append'
import type { Changes } from './changes'
import type { Rooms } from './rooms'

/** Pinned messages of a room (see createPins). */
export interface Pins {
  pin(room: string, actor: User, msg: string, moderator: boolean): Promise<Accepted>
  unpin(room: string, actor: User, msg: string, moderator: boolean): Promise<Accepted>
  /** The room's pins, oldest first, each with its message as it stands for `viewer` (encoded). */
  list(room: string, viewer: string): Promise<string[]>
}

/**
 * Pinned messages: `pinned` / `unpinned` events of the room's log, checked by its sequencer
 * (broker/message-rules.ts `project`, append.lua): the message must exist and not be deleted, a pin
 * of a pinned message is a no-op, a room holds PINS_MAX_PER_ROOM at most. The list is the
 * engine's own state (restored from PostgreSQL after a restart).
 */
export function createPins(deps: { broker: Broker; append: Append; rooms: Pick<Rooms, 'page'>; changes: Pick<Changes, 'present'> }): Pins {
  const { broker, append, rooms, changes } = deps

  async function change(type: 'pinned' | 'unpinned', room: string, actor: User, msg: string, moderator: boolean) {
    if (!broker.pins)
      throw new FrameError('unavailable', `${type === 'pinned' ? 'pin' : 'unpin'}: this engine (${broker.kind}) keeps no pins`)
    const event: RoomEvent = { type, id: Bun.randomUUIDv7(), room, from: actor, ts: new Date().toISOString(), extra: { msg } }
    return append(room, { event, head: eventHead(type), tail: eventTail(event), moderator })
  }

  const pin = (room: string, actor: User, msg: string, moderator: boolean) => change('pinned', room, actor, msg, moderator)
  const unpin = (room: string, actor: User, msg: string, moderator: boolean) => change('unpinned', room, actor, msg, moderator)

  /** The room's pins, oldest first, each with its message frame as it stands for `viewer` (encoded). */
  async function list(room: string, viewer: string): Promise<string[]> {
    if (!broker.pins) throw new FrameError('unavailable', `pins: this engine (${broker.kind}) keeps no pins`)
    const pins = await broker.pins(room)
    const frames = await Promise.all(
      pins.map(async (p) => {
        const page = await rooms.page(room, p.seq + 1, 1)
        const f = page.frames[0]
        return f !== undefined && eventSeq(f) === p.seq ? f : undefined
      }),
    )
    const found = frames.filter((f): f is string => f !== undefined)
    const shown = (await changes.present(room, { frames: found, more: false }, viewer)).frames
    const bySeq = new Map(shown.map((f) => [eventSeq(f), f]))
    return pins.map((p) => pinJson(p, bySeq.get(p.seq)))
  }

  return { pin, unpin, list }
}
