import type { Broker } from '../broker/types'
import { roomTopic } from '../broker/types'
import { frames } from '../protocol/server-frames'
import type { User } from '../protocol/server-frames'

/** Users in each list of a `batch` frame at most; past it the frame says `"truncated":true`. */
export const BATCH_LIST_MAX = 100

/** How a room hears of its joins and leaves: one event each in a small room, `batch` frames in a big one. */
export interface PresenceEvents {
  /** A user's first connection in the room (`join`) or last (`leave`), cluster-wide, as the ledger returned it here. */
  announce(room: string, event: 'join' | 'leave', user: User): void
  /** Sends what is held now, without waiting for the windows' ends. */
  flush(): Promise<void>
  /** `flush`, and every later window ends at once (the node is draining: its windows would be lost). */
  drain(): Promise<void>
}

export interface PresenceEventsDeps {
  broker: Pick<Broker, 'relay' | 'presence'>
  /** PRESENCE_EVENTS_MAX: at most this many present users, each change is its own event at once. */
  max: number
  /** PRESENCE_BATCH_MS: the window a big room's changes are held in. */
  windowMs: number
  onError: (room: string, err: unknown) => void
}

interface Change {
  event: 'join' | 'leave'
  user: User
}

interface Window {
  changes: Change[]
  timer: ReturnType<typeof setTimeout>
}

/**
 * Each node announces the changes its own connections made (the ledger's first and last
 * returned here), so every change is announced by exactly one node. A room at or below `max`
 * present users (the ledger's count, cluster-wide, after the change) hears each change at once,
 * as before; above it, this node holds the room's changes for `windowMs` and relays them as one
 * `batch` frame, encoded once and published once per node on the room's topic: a connect costs
 * no frame per member. When the window closes the count is read again: a room that fell to
 * `max` or below hears the held changes one by one instead, so a batch never reaches a small
 * room. Per room, changes and window ends are handled one after the other (a promise chain), so
 * a user's join is never announced after its leave.
 *
 * Pusher presence channels (`presence-` rooms) keep per-member events: Pusher clients expect
 * `member_added`/`member_removed` per member (and Pusher caps such a channel at 100 anyway).
 */
export function presenceEvents(deps: PresenceEventsDeps): PresenceEvents {
  const { broker, max, windowMs, onError } = deps
  const windows = new Map<string, Window>()
  /** The tail of each room's chain of pending steps. */
  const tails = new Map<string, Promise<void>>()
  let draining = false

  function inOrder(room: string, step: () => Promise<void>): Promise<void> {
    const run = (tails.get(room) ?? Promise.resolve()).then(step).catch((err) => onError(room, err))
    tails.set(room, run)
    void run.then(() => {
      if (tails.get(room) === run) tails.delete(room)
    })
    return run
  }

  const single = (room: string, c: Change) => broker.relay(roomTopic(room), frames.presenceEvent(room, c.event, c.user))

  async function close(room: string) {
    const w = windows.get(room)
    if (!w) return
    windows.delete(room)
    clearTimeout(w.timer)
    const count = await broker.presence.count(room)
    if (count <= max) {
      for (const c of w.changes) await single(room, c)
      return
    }
    // Net change per user: one who joined and left within the window is in neither list.
    const net = new Map<string, { user: User; by: number }>()
    for (const c of w.changes) {
      const n = net.get(c.user.id) ?? { user: c.user, by: 0 }
      n.by += c.event === 'join' ? 1 : -1
      n.user = c.user
      net.set(c.user.id, n)
    }
    const joined: User[] = []
    const left: User[] = []
    for (const { user, by } of net.values())
      if (by > 0) joined.push(user)
      else if (by < 0) left.push(user)
    if (joined.length === 0 && left.length === 0) return
    const truncated = joined.length > BATCH_LIST_MAX || left.length > BATCH_LIST_MAX
    const frame = frames.presenceBatch(room, joined.slice(0, BATCH_LIST_MAX), left.slice(0, BATCH_LIST_MAX), count, truncated)
    await broker.relay(roomTopic(room), frame)
  }

  function announce(room: string, event: 'join' | 'leave', user: User) {
    const change = { event, user }
    if (room.startsWith('presence-')) return void single(room, change).catch((err) => onError(room, err))
    void inOrder(room, async () => {
      const open = windows.get(room)
      if (open) return void open.changes.push(change)
      if ((await broker.presence.count(room)) <= max) return single(room, change)
      const timer = setTimeout(() => void inOrder(room, () => close(room)), draining ? 0 : windowMs)
      windows.set(room, { changes: [change], timer })
    })
  }

  /** After the steps under way (a change still reading the count may open a window). */
  async function flush() {
    const rooms = new Set([...tails.keys(), ...windows.keys()])
    await Promise.all([...rooms].map((room) => inOrder(room, () => close(room))))
  }

  /** From now on a window ends at once: the leaves of the sockets still closing go out before the node does. */
  function drain() {
    draining = true
    return flush()
  }

  return { announce, flush, drain }
}
