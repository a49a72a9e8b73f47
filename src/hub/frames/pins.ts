import { FrameError } from '../../core/errors'
import type { FrameOf } from '../../protocol/client-frames'
import { frames } from '../../protocol/server-frames'
import type { Conn } from '../connection'
import { answering } from '../context'
import type { HubContext, Handlers } from '../context'
import type { Pins } from '../pins'
import type { Search } from '../search'

/** pin, unpin, pins (room events of the log, see hub/pins.ts) and search (hub/search.ts). */
export function pinFrames(h: HubContext, pins: Pins, search: Search): Handlers<'pin' | 'unpin' | 'pins' | 'search'> {
  async function change(c: Conn, f: FrameOf<'pin'> | FrameOf<'unpin'>) {
    await h.live(c, f.room)
    const verb = f.type
    if (!(await h.moderation.moderates(c.identity, c.identity.user.id, f.room)))
      throw new FrameError('forbidden', `room: only a moderator or owner of ${f.room} may ${verb}`)
    const a = await (verb === 'pin' ? pins.pin : pins.unpin)(f.room, c.identity.user, f.msg, true)
    if (f.id) h.send(c, frames.ack(f.id, f.msg, a.noop ? undefined : a.seq), 'ack')
  }

  async function list(c: Conn, f: FrameOf<'pins'>) {
    await h.mayUse(c, f.room, 'read')
    if (!(await h.members.get(f.room, c.identity.user.id))) throw new FrameError('forbidden', `room: not a member of ${f.room}`)
    h.send(c, frames.pins(f.room, await pins.list(f.room, c.identity.user.id), f.id), 'pins')
  }

  async function find(c: Conn, f: FrameOf<'search'>) {
    const { type: _, id, ...input } = f
    const r = await search.search(c.identity.user.id, input)
    h.send(c, frames.search(r.results, r.cursor, id), 'search')
  }

  return { pin: answering(change), unpin: answering(change), pins: answering(list), search: answering(find) }
}
