import type { Accepted, Broker } from '../broker/types'
import { userTopic } from '../broker/types'
import { control, eventFrame, eventHead, eventTail } from '../protocol/server-frames'
import type { RoomEvent, User } from '../protocol/server-frames'
import type { Members, Role, Standing, StandingPatch } from '../members/types'
import { log } from '../log'
import type { Append } from './append'
import type { AuditEntry } from '../store/types'
import type { Identity } from './connection'
import { FrameError } from '../core/errors'
import { RawJson } from '../webhooks/events'
import type { EventInput } from '../webhooks/events'

export type Action = 'mute' | 'unmute' | 'ban' | 'unban' | 'kick'
export const ACTIONS: readonly Action[] = ['mute', 'unmute', 'ban', 'unban', 'kick']
export const MODERATION_HEAD = eventHead('moderation')

const RANK: Record<Role, number> = { member: 0, moderator: 1, owner: 2 }

/** The role a token gives in a room: the exact name first, else the longest matching `prefix*`. */
export function tokenRole(identity: Identity, room: string): Role | undefined {
  const roles = identity.roles
  if (!roles) return undefined
  if (Object.hasOwn(roles, room)) return roles[room]
  let best: [number, Role] | undefined
  for (const [k, r] of Object.entries(roles))
    if (k.endsWith('*') && room.startsWith(k.slice(0, -1)) && (!best || k.length > best[0])) best = [k.length, r]
  return best?.[1]
}

/** The higher of the token's role and the stored one (the API's); `member` without either. */
export function higherRole(identity: Identity | undefined, room: string, standing: Standing): Role {
  const a = (identity ? tokenRole(identity, room) : undefined) ?? 'member'
  const b = standing.role ?? 'member'
  return RANK[a] >= RANK[b] ? a : b
}

/** Roles and the moderation of rooms (see createModeration). */
export interface Moderation {
  /** The higher of the token's role and the stored one. */
  roleOf(identity: Identity | undefined, user: string, room: string): Promise<Role>
  /** Is the user a moderator (or owner) of the room? */
  moderates(identity: Identity | undefined, user: string, room: string): Promise<boolean>
  /** Applies `action` to `target` in `room` by `by`; resolves with the event's seq. */
  act(room: string, by: User, action: Action, target: User, o?: { seconds?: number; reason?: string }): Promise<number>
  setRole(room: string, user: string, role: Role, by?: string): Promise<void>
  /** Refuses a join of a banned user; else the user's standing. */
  mayJoin(room: string, user: string): Promise<Standing>
}

/**
 * Roles (token claim or API, the higher counts) and the moderation of rooms: each action is an
 * event of the room's log, a change of the target's standing (members engine) and an audit row.
 */
export function createModeration(deps: {
  broker: Broker
  append: Append
  members: Members
  audit: (e: AuditEntry) => void
  emit?: (e: EventInput) => void
}): Moderation {
  const { broker, append, members, audit } = deps

  const roleOf = async (identity: Identity | undefined, user: string, room: string): Promise<Role> =>
    higherRole(identity, room, await members.standing(room, user))

  const moderates = async (identity: Identity | undefined, user: string, room: string) =>
    RANK[await roleOf(identity, user, room)] >= RANK.moderator

  /**
   * Applies `action` to `target` in `room` by `by` (a moderator, or the API when `by` is the
   * server). Returns the event's seq.
   */
  async function act(room: string, by: User, action: Action, target: User, o: { seconds?: number; reason?: string } = {}) {
    const until = action === 'mute' ? new Date(Date.now() + o.seconds! * 1000).toISOString() : undefined
    const undo = await applyStanding(room, target, action, until)
    const event: RoomEvent = {
      type: 'moderation',
      id: Bun.randomUUIDv7(),
      room,
      from: by,
      ts: new Date().toISOString(),
      extra: { action, user: target, ...(until ? { until } : {}), ...(o.reason ? { reason: o.reason } : {}) },
    }
    const tail = eventTail(event)
    let accepted: Accepted
    try {
      accepted = await append(room, { event, head: MODERATION_HEAD, tail })
    } catch (err) {
      await undo()
      throw err
    }
    if (action === 'ban' || action === 'kick')
      await broker.relay(userTopic(target.id), control({ ctl: 'leave', room, reason: action === 'ban' ? 'banned' : 'kicked' }))
    audit({
      event: 'moderation',
      user: target.id,
      room,
      detail: { action, by: by.id, ...(until ? { until } : {}), ...(o.reason ? { reason: o.reason } : {}), seq: accepted.seq },
    })
    deps.emit?.({
      type: 'moderation',
      room,
      user: target,
      action,
      by,
      ...(until ? { until } : {}),
      ...(o.reason ? { reason: o.reason } : {}),
      message: new RawJson(eventFrame('moderation', accepted.seq, tail)),
    })
    return accepted.seq
  }

  /**
   * The target's standing (and, for a ban, membership) as the action makes it, written before
   * the event is appended; the returned undo puts back what was there when the append fails,
   * so that an action holds with its event, audit row and `leave`, or not at all.
   */
  async function applyStanding(room: string, target: User, action: Action, until: string | undefined): Promise<() => Promise<void>> {
    if (action === 'kick') return async () => {}
    const before = await members.standing(room, target.id)
    const membership = action === 'ban' ? await members.get(room, target.id) : undefined
    const patch: StandingPatch =
      action === 'mute'
        ? { mutedUntil: Date.parse(until!) }
        : action === 'unmute'
          ? { mutedUntil: null }
          : { banned: action === 'ban' ? true : null }
    const back: StandingPatch = 'mutedUntil' in patch ? { mutedUntil: before.mutedUntil ?? null } : { banned: before.banned ?? null }
    await members.setStanding(room, target.id, patch)
    if (membership) await members.remove(room, target.id)
    return async () => {
      try {
        await members.setStanding(room, target.id, back)
        if (membership) await members.add(room, target, membership.read, Infinity)
      } catch (err) {
        log.error('moderation not undone after its event failed', { room, user: target.id, action, err })
      }
    }
  }

  async function setRole(room: string, user: string, role: Role, by = 'api') {
    await members.setStanding(room, user, { role })
    audit({ event: 'role', user, room, detail: { role, by } })
  }

  /** Refuses a join of a banned user; else the user's standing (its role goes into `joined`). */
  async function mayJoin(room: string, user: string): Promise<Standing> {
    const standing = await members.standing(room, user)
    if (standing.banned) throw new FrameError('forbidden', `room: banned from ${room}`)
    return standing
  }

  return { roleOf, moderates, act, setRole, mayJoin }
}
