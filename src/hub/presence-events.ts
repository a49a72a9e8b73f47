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
  broker: Pick<Broker, 'relay' | 'presence' | 'windows'>
  /** PRESENCE_EVENTS_MAX: at most this many present users, each change is its own event at once. */
  max: number
  /** PRESENCE_BATCH_MS: the window a big room's changes are held in. */
  windowMs: number
  /** Present users per `windowMs` of a window (default WINDOW_USERS): past it a room's window is longer in proportion. */
  windowUsers?: number
  onError: (room: string, err: unknown) => void
}

interface Change {
  event: 'join' | 'leave'
  user: User
}

/**
 * A room's window is `windowMs` up to this many present users, and longer in proportion above it
 * (`windowMs * count / WINDOW_USERS`): every member gets each batch, so a window of fixed length
 * would cost the cluster `count / windowMs` frames a second during a wave of connects, growing
 * with the room. Measured (WORKERS=6 + Redis, 2-s windows): at 60 000 sockets the batches made
 * connects 8x dearer than at 20 000 and the kernel's loopback work was 3/4 of the machine.
 */
export const WINDOW_USERS = 10_000

/** A change as the engine's window holds it: `[j|l, id, name]`. */
const encode = (c: Change) => JSON.stringify([c.event === 'join' ? 'j' : 'l', c.user.id, c.user.name])
const decode = (s: string): Change => {
  const [e, id, name] = JSON.parse(s) as [string, string, string]
  return { event: e === 'j' ? 'join' : 'leave', user: { id, name } }
}

/**
 * Each node announces the changes its own connections made (the ledger's first and last
 * returned here), so every change is announced by exactly one node. A room at or below `max`
 * present users (the ledger's count, cluster-wide, after the change) hears each change at once,
 * as before. Above it, the change is held in the room's window, which is the engine's and so the
 * cluster's (broker/presence-windows.ts): the node whose hold opened it ends it after `windowMs`
 * and relays every node's changes as one `batch` frame, encoded once: a member gets at most one
 * frame per window however many nodes there are, and a connect costs no frame per member. When
 * the window ends the count is read again: a room that fell to `max` or below hears the held
 * changes one by one instead, so a batch never reaches a small room. Per room, this node's
 * changes and window ends are handled one after the other (a promise chain), so a user's join is
 * never announced after its leave.
 *
 * Pusher presence channels (`presence-` rooms) keep per-member events: Pusher clients expect
 * `member_added`/`member_removed` per member (and Pusher caps such a channel at 100 anyway).
 */
export function presenceEvents(deps: PresenceEventsDeps): PresenceEvents {
  const { broker, max, windowMs, onError } = deps
  const windowUsers = deps.windowUsers ?? WINDOW_USERS
  /** The windows this node opened: their token and timer. */
  const opened = new Map<string, { token: string; timer: ReturnType<typeof setTimeout> }>()
  /** Rooms seen above `max`, until when that is trusted (a change there is held without reading the count) and their window's length. */
  const big = new Map<string, { until: number; span: number }>()
  /** `count` present users were read: the room is big for a window of its length. */
  function trustBig(room: string, count: number) {
    const span = Math.round(windowMs * Math.max(1, count / windowUsers))
    const known = { until: Date.now() + span, span }
    big.set(room, known)
    return known
  }
  /** The tail of each room's chain of pending steps. */
  const tails = new Map<string, Promise<void>>()
  /** Holds sent and not answered yet. */
  const holds = new Set<Promise<void>>()
  const me = crypto.randomUUID()
  let tokens = 0
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

  /** Ends the room's window: the one this node opened (`token`), or with none whatever is held. */
  async function close(room: string, token?: string) {
    const mine = opened.get(room)
    if (mine && (token === undefined || mine.token === token)) {
      opened.delete(room)
      clearTimeout(mine.timer)
    }
    const held = (await broker.windows.take(room, token)).map(decode)
    if (held.length === 0) return
    const count = await broker.presence.count(room)
    if (count <= max) {
      big.delete(room)
      for (const c of held) await single(room, c)
      return
    }
    trustBig(room, count)
    // Net change per user: one who joined and left within the window is in neither list.
    const net = new Map<string, { user: User; by: number }>()
    for (const c of held) {
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

  /**
   * Holds a change in the room's window. Not awaited by the room's chain: the hold is sent at
   * once, in order, on the engine's connection, so a busy room's changes cost no round trip
   * each one after the other (they would fall behind, and the window's end behind them).
   */
  function hold(room: string, change: Change, span: number) {
    const token = `${me}.${++tokens}`
    const held: Promise<void> = broker.windows
      .hold(room, encode(change), token, span)
      .then((first) => {
        // A draining node's windows would be lost with it: it ends the room's window at once, whoever opened it.
        if (draining) return void inOrder(room, () => close(room))
        if (!first) return
        const timer = setTimeout(() => void inOrder(room, () => close(room, token)), span)
        opened.set(room, { token, timer })
      })
      .catch((err) => onError(room, err))
      .finally(() => holds.delete(held))
    holds.add(held)
  }

  function announce(room: string, event: 'join' | 'leave', user: User) {
    const change = { event, user }
    if (room.startsWith('presence-')) return void single(room, change).catch((err) => onError(room, err))
    void inOrder(room, async () => {
      let known = big.get(room)
      if (!known || known.until <= Date.now()) {
        const count = await broker.presence.count(room)
        if (count <= max) return single(room, change)
        known = trustBig(room, count)
      }
      hold(room, change, known.span)
    })
  }

  /**
   * Ends the windows of the rooms with steps under way or a window this node opened, after those
   * steps and the holds in flight (a change still reading the count may open a window). The token
   * is read when the room's turn comes: a step ahead of it may open the window.
   */
  async function endAll(tokenOf: (room: string) => string | undefined) {
    await Promise.all([...tails.values()])
    await Promise.all([...holds])
    const rooms = new Set([...tails.keys(), ...opened.keys()])
    await Promise.all([...rooms].map((room) => inOrder(room, () => close(room, tokenOf(room)))))
  }

  /** This node's own windows only: a room it opened no window of takes nothing from another node's. */
  const flush = () => endAll((room) => opened.get(room)?.token ?? `${me}.none`)

  /** From now on a window ends at once, whoever opened it: the leaves of the sockets still closing go out before the node does. */
  function drain() {
    draining = true
    return endAll(() => undefined)
  }

  return { announce, flush, drain }
}
