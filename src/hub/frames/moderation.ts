import { FrameError } from '../../core/errors'
import { isDirect } from '../../members/types'
import type { FrameOf } from '../../protocol/client-frames'
import { frames } from '../../protocol/server-frames'
import type { Conn } from '../connection'
import { answering } from '../context'
import type { HubContext, Handlers } from '../context'

type Action = 'mute' | 'unmute' | 'ban' | 'unban' | 'kick'

/** mute, unmute, ban, unban, kick: moderators and owners of the room only. */
export function moderationFrames(h: HubContext): Handlers<Action> {
  async function moderate(c: Conn, f: FrameOf<Action>) {
    if (isDirect(f.room) || !(await h.moderation.moderates(c.identity, c.identity.user.id, f.room)))
      throw new FrameError('forbidden', `${f.type}: not a moderator of ${f.room}`)
    const target = { id: f.user, name: (await h.members.user(f.user))?.name ?? f.user }
    const seq = await h.moderation.act(f.room, c.identity.user, f.type, target, {
      seconds: 'seconds' in f ? f.seconds : undefined,
      reason: 'reason' in f ? f.reason : undefined,
    })
    if (f.id) h.send(c, frames.ack(f.id, undefined, seq), 'ack')
  }
  const handler = answering(moderate)
  return { mute: handler, unmute: handler, ban: handler, unban: handler, kick: handler }
}
