import type { Position } from '../broker/types'
import { roomTopic } from '../broker/types'
import { frames } from '../protocol/server-frames'
import type { Control } from '../protocol/server-frames'
import type { HubContext } from './context'
import type { Delivery } from './delivery'

/**
 * Commands for the connections of this node that come from elsewhere: a user's control frames
 * (join, leave, close) from any node, and a room's restart from the broker.
 */

/** A command for every local connection of a user (see Control), from any node; `except` is left out. */
export function control(h: HubContext, delivery: Pick<Delivery, 'local' | 'closeConn'>, topic: string, frame: string, except?: string) {
  const set = delivery.local.get(topic)
  if (!set) return
  const cmd = JSON.parse(frame) as Control
  for (const c of [...set]) {
    if (c.id === except || c.closing) continue
    void (async () => {
      if (c.loading) await c.loading
      if (cmd.ctl === 'join') await h.memberJoin(c, cmd.room, cmd.since, cmd.since)
      else if (cmd.ctl === 'leave') {
        c.member.delete(cmd.room)
        if (c.rooms.has(cmd.room) || c.joining.has(cmd.room)) {
          h.rooms.leave(c, cmd.room)
          h.send(c, frames.left(cmd.room, undefined, cmd.reason), 'left')
        }
      } else delivery.closeConn(c, cmd.code, cmd.reason)
    })().catch((err) => h.sendError(c, err.code ?? 'unavailable', err.message))
  }
}

/** A room's sequence restarted (Redis came back empty): its members start over from `pos`. */
export function reset(
  h: HubContext,
  delivery: Pick<Delivery, 'local'>,
  room: string,
  pos: Position,
  publish: (topic: string, frame: string) => void,
) {
  const topic = roomTopic(room)
  for (const c of delivery.local.get(topic) ?? []) c.rooms.set(room, pos.seq)
  h.metrics.framesOut.joined.inc()
  publish(topic, frames.joined(room, pos.seq, pos.epoch, false))
}
