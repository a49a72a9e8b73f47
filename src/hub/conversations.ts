import type { Broker } from '../broker/types'
import { userTopic } from '../broker/types'
import type { Config } from '../config'
import type { Members } from '../members/types'
import { directRoom, isDirect } from '../members/types'
import { control, conversation } from '../protocol/server-frames'
import type { Control, User } from '../protocol/server-frames'
import { allowed } from './connection'
import type { Identity } from './connection'
import { FrameError } from '../core/errors'
import type { Rooms } from './rooms'

export interface ConversationsDeps {
  config: Config
  broker: Broker
  members: Members
  rooms: Pick<Rooms, 'summary'>
  /** A room's frames in their current state for a viewer (edited, deleted, reactions): the list's `last`. */
  present?: (room: string, frames: string[], viewer: string) => Promise<string[]>
  /** Webhook events (member.added, member.removed), when configured. */
  emit?: (e: { type: 'member.added' | 'member.removed'; room: string; user: User }) => void
}

/** Memberships as a user sees them (see createConversations). */
export interface Conversations {
  /** May this identity use (join, read, list) the room? Direct rooms: only their two users. */
  mayUse(identity: Identity, room: string): Promise<boolean>
  /** Makes `user` a member of `room` and brings every connection of the user but `except` into it. */
  grant(room: string, user: User, opts?: { read?: number; except?: string }): Promise<{ status: 'added' | 'exists'; read: number }>
  /** Ends a membership: every connection of the user but `except` leaves the room. True if it was one. */
  revoke(room: string, user: string, opts?: { except?: string; reason?: string }): Promise<boolean>
  /** The direct room of two users (both made members on first use). */
  direct(from: User, to: string, except: string): Promise<string>
  /** The user's conversations, most recently active first: a page after the cursor `before`. */
  list(user: string, before: string | undefined, limit: number): Promise<ConversationPage>
}

/** A page of the conversation list: encoded `conversation` objects and the next cursor. */
export interface ConversationPage {
  conversations: string[]
  more: boolean
  next: string | undefined
}

/** The sort key of a conversation: its last message's time, then its name. */
type Key = [ts: string, room: string]
const tsOf = (frame: string | undefined) => {
  if (!frame) return ''
  const i = frame.lastIndexOf('"ts":"')
  return i < 0 ? '' : frame.slice(i + 6, frame.indexOf('"', i + 6))
}
const newerFirst = (a: Key, b: Key) => (a[0] !== b[0] ? (a[0] > b[0] ? -1 : 1) : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0)
const cursorOf = (k: Key) => Buffer.from(JSON.stringify(k)).toString('base64url')
function keyOf(cursor: string): Key {
  try {
    const k = JSON.parse(Buffer.from(cursor, 'base64url').toString())
    if (Array.isArray(k) && k.length === 2 && typeof k[0] === 'string' && typeof k[1] === 'string') return k as Key
  } catch {}
  throw new FrameError('bad_request', 'before: not a cursor this server gave')
}

/**
 * Memberships as a user sees them: who may use a room, joining and leaving as a member on
 * every connection of the user (through control frames on the user's topic), direct rooms,
 * and the conversation list with read markers and unread counts.
 */
export function createConversations(deps: ConversationsDeps): Conversations {
  const { config, broker, members, rooms } = deps

  const tell = (user: string, c: Control, except?: string) => broker.relay(userTopic(user), control(c), except)

  /** May this identity use (join, read, list) the room? Direct rooms: only their two users. */
  async function mayUse(identity: Identity, room: string): Promise<boolean> {
    if (!isDirect(room)) return allowed(identity, room)
    const pair = await members.pair(room)
    return !!pair && (pair[0].id === identity.user.id || pair[1].id === identity.user.id)
  }

  /**
   * Makes `user` a member of `room` (marker at the room's seq, or `read`) and brings every
   * connection of the user but `except` into it. Throws `limit` past MAX_MEMBERSHIPS.
   */
  async function grant(room: string, user: User, opts: { read?: number; except?: string } = {}) {
    if ((await members.standing(room, user.id)).banned) throw new FrameError('forbidden', `member: ${user.id} is banned from ${room}`)
    const read = opts.read ?? (await broker.position(room)).seq
    const r = await members.add(room, user, read, config.MAX_MEMBERSHIPS)
    if (r.status === 'limit')
      throw new FrameError('limit', `memberships: ${user.id} is a member of ${config.MAX_MEMBERSHIPS} rooms already (MAX_MEMBERSHIPS)`)
    if (r.status === 'added') {
      deps.emit?.({ type: 'member.added', room, user })
      await tell(user.id, { ctl: 'join', room, since: read }, opts.except)
    }
    return r
  }

  /** Ends a membership: every connection of the user but `except` leaves the room. */
  async function revoke(room: string, user: string, opts: { except?: string; reason?: string } = {}) {
    const removed = await members.remove(room, user)
    if (removed) {
      deps.emit?.({ type: 'member.removed', room, user: (await members.user(user)) ?? { id: user, name: user } })
      await tell(user, { ctl: 'leave', room, ...(opts.reason ? { reason: opts.reason } : {}) }, opts.except)
    }
    return removed
  }

  /** The direct room of two users, registered (and both made members) on first use. */
  async function direct(from: User, to: string, except: string) {
    const room = directRoom(from.id, to)
    const self = to === from.id
    const [mine, theirs] = await Promise.all([members.get(room, from.id), self ? undefined : members.get(room, to)])
    // The server's own user (the outbox's dms) is never a member: it has no connections, and as
    // a member of every direct room it wrote to it would soon pass MAX_MEMBERSHIPS.
    const sender = mine || from.system
    // Both are members already (every dm after the first): nothing to register, no write.
    if (sender && (theirs || self)) return room
    const other = self ? from : ((await members.user(to)) ?? { id: to, name: to })
    await members.setPair(room, from.id <= to ? [from, other] : [other, from])
    // The recipient's marker stays before this message: it is unread until they read it.
    const since = (await broker.position(room)).seq
    if (!sender) await grant(room, from, { read: since, except })
    if (!theirs && !self) await grant(room, other, { read: since })
    return room
  }

  /** The user's conversations, most recently active first, a page after the cursor `before`. */
  async function list(user: string, before: string | undefined, limit: number) {
    const after = before === undefined ? undefined : keyOf(before)
    const mine = await members.of(user)
    const all = await Promise.all(
      mine.map(async (m) => {
        const [s, pair] = await Promise.all([rooms.summary(m.room, m.read, user), isDirect(m.room) ? members.pair(m.room) : undefined])
        const direct = pair ? (pair[0].id === user ? pair[1] : pair[0]) : undefined
        return {
          key: [tsOf(s.last), m.room] as Key,
          text: (last = s.last) => conversation({ room: m.room, direct, seq: s.seq, epoch: s.epoch, read: m.read, unread: s.unread, last }),
          room: m.room,
          last: s.last,
        }
      }),
    )
    const sorted = all.filter((c) => !after || newerFirst(c.key, after) > 0).sort((a, b) => newerFirst(a.key, b.key))
    const page = sorted.slice(0, limit)
    const more = sorted.length > limit
    // The last message as it stands now (an edit's body, a deleted one without its body), for the page only.
    const present = deps.present
    const lasts = present
      ? await Promise.all(page.map(async (c) => (c.last ? (await present(c.room, [c.last], user))[0] : undefined)))
      : page.map((c) => c.last)
    return { conversations: page.map((c, i) => c.text(lasts[i])), more, next: more ? cursorOf(page.at(-1)!.key) : undefined }
  }

  return { mayUse, grant, revoke, direct, list }
}
