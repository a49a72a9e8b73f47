import type { FrameOf } from '../../protocol/client-frames'
import { frames } from '../../protocol/server-frames'
import type { Conn } from '../connection'
import { answering } from '../context'
import type { HubContext, Handlers } from '../context'

/** edit, delete, react, unreact: each an event of the room's log, checked by its sequencer. */
export function changeFrames(h: HubContext): Handlers<'edit' | 'delete' | 'react' | 'unreact'> {
  const { changes, moderation } = h

  function changed(c: Conn, id: string | undefined, msg: string, a: { seq: number; noop?: boolean }) {
    if (id) h.send(c, frames.ack(id, msg, a.noop ? undefined : a.seq), 'ack')
  }

  async function edit(c: Conn, f: FrameOf<'edit'>) {
    await h.live(c, f.room)
    changed(c, f.id, f.msg, await changes.edit(f.room, c.identity.user, f.msg, h.words.filterText(f.body), f.data))
  }

  async function del(c: Conn, f: FrameOf<'delete'>) {
    await h.live(c, f.room)
    changed(
      c,
      f.id,
      f.msg,
      await changes.remove(f.room, c.identity.user, f.msg, await moderation.moderates(c.identity, c.identity.user.id, f.room)),
    )
  }

  async function react(c: Conn, f: FrameOf<'react'> | FrameOf<'unreact'>) {
    await h.live(c, f.room)
    changed(c, f.id, f.msg, await changes.react(f.room, c.identity.user, f.msg, f.reaction, f.type === 'react' ? 'add' : 'remove'))
  }

  return { edit: answering(edit), delete: answering(del), react: answering(react), unreact: answering(react) }
}
