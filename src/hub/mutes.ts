import type { Members } from '../members/types'
import { log } from '../log'
import type { Conn } from './connection'

/** Past this a chat does not wait for a mute to be read (PostgreSQL slow): it goes on. */
const MUTE_READ_WAIT_MS = 250

/** Each connection's knowledge of its user's mutes (see createMutes). */
export interface Mutes {
  /** A mute or unmute passing by: the muted user's connections among `conns` know at once. */
  note(frame: string, conns: Iterable<Conn> | undefined): void
  /** When the user's mute in the room ends (0 = not muted); a promise while it is read. */
  until(c: Conn, room: string): number | Promise<number>
  /** True when the connection knows, without waiting, that its user is not muted in the room now. */
  knownFree(c: Conn, room: string): boolean
}

/**
 * Each connection's knowledge of its user's mutes, so that a chat costs a map lookup: read once
 * per live join (a rejoin is a new live boundary and reads again), then kept by the moderation
 * events passing by. The sequencer enforces mutes anyway; this answers the muted user at once.
 */
export function createMutes(members: Members): Mutes {
  /** A mute or unmute passing by: the muted user's connections among `conns` know at once. */
  function note(frame: string, conns: Iterable<Conn> | undefined) {
    const m = JSON.parse(frame) as { room: string; action: string; user: { id: string }; until?: string }
    if (m.action !== 'mute' && m.action !== 'unmute') return
    const until = m.action === 'mute' && m.until ? Date.parse(m.until) : 0
    for (const c of conns ?? [])
      if (c.identity.user.id === m.user.id) (c.muted ??= new Map()).set(m.room, { until, at: c.rooms.get(m.room) })
  }

  /**
   * When the user's mute in the room ends (0 = not muted). Chats that arrive while it is read
   * all wait on the same promise, so they keep their order.
   */
  function until(c: Conn, room: string): number | Promise<number> {
    const at = c.rooms.get(room)
    const hit = c.muted?.get(room)
    if (hit && hit.at === at) return hit.until ?? Promise.race([hit.loading!, Bun.sleep(MUTE_READ_WAIT_MS).then(() => hit.until ?? 0)])
    const entry: { until?: number; loading?: Promise<number>; at: number | undefined } = { at }
    entry.loading = members.standing(room, c.identity.user.id).then(
      (s) => (entry.until = s.mutedUntil ?? 0),
      // Chat goes on while PostgreSQL (the members engine) is down: a mute set before this join
      // that cannot be read is not enforced (mutes made from now on still are: see note).
      (err) => {
        log.warn('mute not read; chat allowed', { conn: c.id, room, err })
        return (entry.until = 0)
      },
    )
    // Nor does chat wait long for it: past MUTE_READ_WAIT_MS the chat goes on (timers fire in
    // order, so the connection's chats keep theirs).
    const bounded = Promise.race([entry.loading, Bun.sleep(MUTE_READ_WAIT_MS).then(() => entry.until ?? 0)])
    ;(c.muted ??= new Map()).set(room, entry)
    return bounded
  }

  /** True when the connection knows, without waiting, that its user is not muted in the room now. */
  function knownFree(c: Conn, room: string): boolean {
    const mute = c.muted?.get(room)
    return !!mute && mute.at === c.rooms.get(room) && mute.until !== undefined && mute.until <= Date.now()
  }

  return { note, until, knownFree }
}
