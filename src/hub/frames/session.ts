import { FrameError } from '../../core/errors'
import { flat } from '../../core/small'
import { isDirect } from '../../members/types'
import type { FrameOf } from '../../protocol/client-frames'
import { frames, userJson } from '../../protocol/server-frames'
import { allowed } from '../connection'
import type { Conn } from '../connection'
import { acked, answering } from '../context'
import type { HubContext, Handlers } from '../context'

/** refresh and ping: the connection itself. */
export function sessionFrames(h: HubContext): Handlers<'refresh' | 'ping'> {
  async function refresh(c: Conn, f: FrameOf<'refresh'>) {
    if (!h.refresh) throw new FrameError('bad_request', 'refresh: authentication is off on this server')
    const next = await h.refresh(f.token)
    if (next.user.id !== c.identity.user.id) throw new FrameError('forbidden', 'token: belongs to another user')
    // A refresh renews an expiry; it never lifts one: a token without `exp` cannot follow one
    // that had it (else one such token, once issued, would keep a socket open forever).
    if (c.identity.exp !== undefined && next.exp === undefined) throw new FrameError('unauthorized', 'token: missing_exp')
    c.identity = { ...next, user: { ...next.user } }
    c.fromJson = flat(userJson(c.identity.user))
    for (const room of new Set([...c.rooms.keys(), ...c.joining.keys()]))
      if (!isDirect(room) && !allowed(c.identity, room)) {
        h.rooms.leave(c, room)
        h.send(c, frames.left(room), 'left')
      }
  }

  return {
    refresh: acked(refresh),
    ping: answering((c, f) => h.send(c, frames.pong(f.id), 'pong')),
  }
}
