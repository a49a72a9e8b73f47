import { FrameError } from '../../core/errors'
import type { FrameOf } from '../../protocol/client-frames'
import { frames } from '../../protocol/server-frames'
import type { Conn } from '../connection'
import { answering } from '../context'
import type { HubContext, Handlers } from '../context'
import type { Polls } from '../polls'

/** vote, close_poll and settings (v4): room events of the log, see hub/polls.ts. */
export function pollFrames(h: HubContext, polls: Polls): Handlers<'vote' | 'close_poll' | 'settings'> {
  const { moderation } = h
  const acked = (c: Conn, id: string | undefined, msg: string | undefined, a: { seq: number; noop?: boolean }) => {
    if (id) h.send(c, frames.ack(id, msg, a.noop ? undefined : a.seq), 'ack')
  }

  async function vote(c: Conn, f: FrameOf<'vote'>) {
    await h.live(c, f.room)
    acked(c, f.id, f.msg, await polls.vote(f.room, c.identity.user, f.msg, f.options))
  }

  async function close(c: Conn, f: FrameOf<'close_poll'>) {
    await h.live(c, f.room)
    const moderator = await moderation.moderates(c.identity, c.identity.user.id, f.room)
    acked(c, f.id, f.msg, await polls.close(f.room, c.identity.user, f.msg, moderator))
  }

  async function settings(c: Conn, f: FrameOf<'settings'>) {
    await h.live(c, f.room)
    if (!(await moderation.moderates(c.identity, c.identity.user.id, f.room)))
      throw new FrameError('forbidden', `room: only a moderator or owner of ${f.room} may change its settings`)
    acked(c, f.id, undefined, await polls.settings(f.room, c.identity.user, f.slow_mode_s, true))
  }

  return { vote: answering(vote), close_poll: answering(close), settings: answering(settings) }
}
