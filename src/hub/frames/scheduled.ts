import { FrameError } from '../../core/errors'
import type { FrameOf } from '../../protocol/client-frames'
import { frames } from '../../protocol/server-frames'
import type { Conn } from '../connection'
import { acked, answering } from '../context'
import type { HubContext, Handlers } from '../context'
import type { Scheduler } from '../scheduled'

/**
 * Scheduled messages (PROTOCOL-v4): a `chat` or `dm` with `send_at` is kept for its time instead
 * of sent (every other one goes to `base`, the message frames' own handlers); `scheduled` lists
 * the user's pending ones, `unschedule` drops one.
 */
export function scheduledFrames(
  h: HubContext,
  scheduler: Scheduler,
  base: Handlers<'chat' | 'dm'>,
  defaultRoom: string,
): Handlers<'chat' | 'dm' | 'scheduled' | 'unschedule'> {
  async function chat(c: Conn, f: FrameOf<'chat'>) {
    if (f.send_at === undefined) return base.chat.run(c, f)
    const room = f.room ?? defaultRoom
    if (room === '') throw new FrameError('bad_request', 'room: required (this server has no default room)')
    // Scheduled where the user may write now; the rules are checked again at send_at.
    await h.live(c, room)
    // The word filter now (a refusal is answered at once) and again at send_at (its list may change).
    const r = await scheduler.schedule(c, { ...f, room, body: h.words.filterText(f.body), send_at: f.send_at }, c.member.has(room))
    if (f.id) h.send(c, frames.scheduledAck(f.id, r.scheduled, r.send_at), 'ack')
  }

  async function dm(c: Conn, f: FrameOf<'dm'>) {
    if (f.send_at === undefined) return base.dm.run(c, f)
    if (c.identity.ephemeral)
      throw new FrameError('forbidden', 'dm: an anonymous user has no conversations (connect with ?user= or a token)')
    const r = await scheduler.schedule(c, { ...f, body: h.words.filterText(f.body), send_at: f.send_at }, false)
    if (f.id) h.send(c, frames.scheduledAck(f.id, r.scheduled, r.send_at), 'ack')
  }

  async function list(c: Conn, f: FrameOf<'scheduled'>) {
    h.send(c, frames.scheduled(await scheduler.list(c.identity.user.id, f.room), f.id), 'scheduled')
  }

  async function unschedule(c: Conn, f: FrameOf<'unschedule'>) {
    await scheduler.unschedule(c.identity.user.id, f.scheduled)
  }

  return {
    chat: answering(chat),
    dm: answering(dm),
    scheduled: answering(list),
    unschedule: acked(unschedule),
  }
}
