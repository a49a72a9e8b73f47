import type { FrameOf } from '../../protocol/client-frames'
import { frames } from '../../protocol/server-frames'
import type { Conn } from '../connection'
import { answering } from '../context'
import type { HubContext, Handlers } from '../context'

/** threads: the user's thread list (PROTOCOL-v4). `read {thread}` is the room frames' `read`. */
export function threadFrames(h: HubContext): Handlers<'threads'> {
  async function threads(c: Conn, f: FrameOf<'threads'>) {
    if (f.room !== undefined) await h.mayUse(c, f.room, 'read')
    const page = await h.threads.list(c.identity, { room: f.room, before: f.before, limit: f.limit ?? 20 })
    h.send(c, frames.threads(page.threads, page.more, page.next, f.id), 'threads')
  }
  return { threads: answering(threads) }
}
