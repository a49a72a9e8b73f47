import { roomTopic, userTopic } from '../broker/types'
import { log } from '../log'
import { isDirect } from '../members/types'
import { frames } from '../protocol/server-frames'
import { NO_JOINS, allowed } from './connection'
import type { Conn } from './connection'
import type { HubContext } from './context'

/**
 * The start of a connection: its memberships (and the default room) are read and their rooms
 * prepared while everything for the user is held back; then `welcome` (with the total unread),
 * one `joined` per room, and whatever was held, in that order. `since`: when its upgrade was
 * asked for (performance.now()), for chat_connect_seconds{transport}.
 */
export async function welcome(h: HubContext, nodeId: string, c: Conn, since: number | undefined, transport: 'ws' | 'sse' = 'ws') {
  ;(await prepareWelcome(h, nodeId, c, since, transport))()
}

/**
 * The asynchronous half of `welcome`: everything read and prepared, the user's frames and its
 * rooms' still held. Resolves with the synchronous half, which sends `welcome` and lets the
 * rooms go live on `c.ws`: /ws calls it in the socket's open, so that `welcome` leaves in the
 * same write as the 101 (see Session.start). Until it is called nothing for the user is lost.
 */
export async function prepareWelcome(
  h: HubContext,
  nodeId: string,
  c: Conn,
  since: number | undefined,
  transport: 'ws' | 'sse' = 'ws',
): Promise<() => void> {
  const { config, broker, metrics, members: memberships } = h
  const u = c.identity.user
  const mine = userTopic(u.id)
  const held = h.rooms.hold(mine)
  broker.watch(mine).catch((err) => log.warn('user topic not watched', { conn: c.id, err }))
  let list: { room: string; read: number }[] = []
  const home = config.DEFAULT_ROOM !== '' && allowed(c.identity, config.DEFAULT_ROOM)
  /** A new user's membership of the default room, written while its rooms are prepared. */
  let adding: Promise<unknown> = Promise.resolve()
  // The default room is nearly every user's: its channel is subscribed while the memberships
  // are read, a round trip less when this node does not watch it yet (the join's own watch
  // then finds it ready). Unwatched once the rooms are prepared, whatever they were.
  const homeTopic = home ? roomTopic(config.DEFAULT_ROOM) : undefined
  if (homeTopic) broker.watch(homeTopic).catch(() => {})
  try {
    if (!c.identity.ephemeral) {
      void memberships.seen(u).catch(() => {})
      list = (await memberships.of(u.id)).filter((m) => isDirect(m.room) || allowed(c.identity, m.room))
      // Every user is a member of the default room, from its first connection on.
      // (Not again for a user banned from it: the ban ended that membership.)
      if (home && !list.some((m) => m.room === config.DEFAULT_ROOM)) {
        // The standing and the room's position in one round trip (auto-pipelined with Redis).
        const [standing, pos] = await Promise.all([memberships.standing(config.DEFAULT_ROOM, u.id), broker.position(config.DEFAULT_ROOM)])
        if (!standing.banned) {
          // Its marker is the room's position now, so the membership need not be written before
          // the room is prepared: both go at once (a round trip less for a new user). A write
          // that fails leaves the user in the room for this connection, as a failed read does.
          adding = memberships
            .add(config.DEFAULT_ROOM, u, pos.seq, Infinity)
            .catch((err) => log.warn('default room membership not written', { conn: c.id, err }))
          list.unshift({ room: config.DEFAULT_ROOM, read: pos.seq })
        }
      }
    } else if (home) list = [{ room: config.DEFAULT_ROOM, read: (await broker.position(config.DEFAULT_ROOM)).seq }]
  } catch (err) {
    log.warn('memberships not read', { conn: c.id, err })
    if (home) list = [{ room: config.DEFAULT_ROOM, read: 0 }]
  }
  const unread: number[] = []
  const sendLater: (() => void)[] = []
  const [prepared] = await Promise.all([
    Promise.all(
      list.map((m, i) => {
        c.member.add(m.room)
        return h.rooms.prepare(c, m.room, { member: { read: m.read }, onState: (s) => (unread[i] = s.unread) }).catch((err) => {
          sendLater.push(() => h.sendError(c, err.code ?? 'internal', err.message))
          return undefined
        })
      }),
    ),
    adding,
  ])
  if (homeTopic) broker.unwatch(homeTopic)
  return () => {
    if (c.closing) {
      held.release()
      for (const p of prepared) p?.()
      return
    }
    c.ws.cork(() => {
      const joined = list.filter((_, i) => prepared[i])
      h.send(
        c,
        frames.welcome(
          c.id,
          u,
          nodeId,
          joined.map((m) => m.room),
          unread.reduce((a, b) => a + (b ?? 0), 0),
        ),
        'welcome',
      )
      for (const p of prepared) p?.()
      for (const f of held) h.send(c, f, 'chat')
      held.release()
      c.ws.subscribe(mine)
      for (const s of sendLater) s()
    })
    if (since !== undefined) metrics.connect[transport].observe((performance.now() - since) / 1000)
    // The joins of the start are done: a map that held entries would keep its grown table
    // (~220 bytes) for the socket's life.
    if (c.joining.size === 0) c.joining = NO_JOINS
  }
}
