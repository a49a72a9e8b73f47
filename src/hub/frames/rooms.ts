import { roomTopic } from '../../broker/types'
import { FrameError } from '../../core/errors'
import { isDirect } from '../../members/types'
import type { FrameOf } from '../../protocol/client-frames'
import { frames } from '../../protocol/server-frames'
import type { Conn } from '../connection'
import { acked, answering } from '../context'
import type { HubContext, Handlers } from '../context'
import { higherRole } from '../moderation'

/** join, leave, rooms, read, history, presence, typing: being in rooms and reading them. */
export function roomFrames(h: HubContext): Handlers<'join' | 'leave' | 'rooms' | 'read' | 'history' | 'presence' | 'typing'> {
  const { broker, rooms, conversations, members, changes } = h

  async function join(c: Conn, f: FrameOf<'join'>) {
    await h.mayUse(c, f.room, 'join')
    const standing = await h.moderation.mayJoin(f.room, c.identity.user.id)
    // The answer names the user's role, read with the ban check (no extra read); direct rooms have none.
    const role = isDirect(f.room) ? undefined : higherRole(c.identity, f.room, standing)
    if (!f.member)
      return rooms.join(c, f.room, {
        since: f.since,
        epoch: f.epoch,
        id: f.id,
        role,
        member: c.member.has(f.room) ? await marker(c, f.room) : undefined,
      })
    if (c.identity.ephemeral)
      throw new FrameError('forbidden', 'member: an anonymous user cannot hold memberships (connect with ?user= or a token)')
    const r = await conversations.grant(f.room, c.identity.user, { except: c.id })
    c.member.add(f.room)
    return rooms.join(c, f.room, { since: f.since, epoch: f.epoch, id: f.id, role, member: { read: r.read } })
  }

  async function marker(c: Conn, room: string) {
    const m = await members.get(room, c.identity.user.id)
    return m && { read: m.read }
  }

  async function leave(c: Conn, f: FrameOf<'leave'>) {
    if (f.member) {
      await conversations.revoke(f.room, c.identity.user.id, { except: c.id })
      c.member.delete(f.room)
    }
    rooms.leave(c, f.room)
    h.send(c, frames.left(f.room, f.id), 'left')
  }

  async function list(c: Conn, f: FrameOf<'rooms'>) {
    const r = await conversations.list(c.identity.user.id, f.before, f.limit ?? 50)
    h.send(c, frames.rooms(r.conversations, r.more, r.next, f.id), 'rooms')
  }

  async function read(c: Conn, f: FrameOf<'read'>) {
    await h.mayUse(c, f.room, 'read')
    const pos = await broker.position(f.room)
    if (f.seq > pos.seq) throw new FrameError('bad_request', `seq: ${f.room} has no seq ${f.seq} yet (its last is ${pos.seq})`)
    // A thread's marker is its own: the room's marker stays where it is, and no read receipt goes out.
    if (f.thread !== undefined) return void (await h.threads.read(f.room, f.thread, c.identity.user.id, f.seq))
    const now = await members.read(f.room, c.identity.user.id, f.seq)
    if (now === undefined) throw new FrameError('forbidden', `room: not a member of ${f.room}`)
    await broker.relay(roomTopic(f.room), frames.read(f.room, c.identity.user, now))
  }

  async function history(c: Conn, f: FrameOf<'history'>) {
    await h.mayUse(c, f.room, 'read')
    const limit = f.limit ?? 50
    const raw =
      f.thread === undefined
        ? await rooms.page(f.room, f.before, limit)
        : await changes.thread((b, l) => rooms.page(f.room, b, l), f.thread, f.before, limit)
    const p = await changes.present(f.room, raw, c.identity.user.id)
    h.send(c, frames.history(f.room, p.frames, p.more, f.id), 'history')
  }

  async function presence(c: Conn, f: FrameOf<'presence'>) {
    await h.mayUse(c, f.room, 'see')
    const [page, count] = await Promise.all([broker.presence.page(f.room, f.cursor, f.limit), broker.presence.count(f.room)])
    h.send(c, frames.presenceList(f.room, page.users, count, page.next, f.id), 'presence')
  }

  async function typing(c: Conn, f: FrameOf<'typing'>) {
    if (!c.rooms.has(f.room)) throw new FrameError('forbidden', `room: not a member of ${f.room}`)
    await broker.relay(roomTopic(f.room), frames.typing(f.room, c.identity.user), c.id)
  }

  return {
    join: answering(join),
    leave: answering(leave),
    rooms: answering(list),
    read: acked(read),
    history: answering(history),
    presence: answering(presence),
    typing: acked(typing),
  }
}
