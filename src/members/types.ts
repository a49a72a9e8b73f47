import type { User } from '../core/identity'

/** A user's membership of a room: durable, and the user's read marker in it. */
export interface Membership {
  room: string
  /** The last seq the user has read. */
  read: number
}

export interface MemberEntry extends User {
  read: number
}

export type AddResult = { status: 'added' | 'exists'; read: number } | { status: 'limit'; read?: undefined }

/**
 * Memberships, read markers, the users of direct rooms and the users the server knows. One
 * engine per deployment: memory (one node), Redis (a cluster without PostgreSQL), PostgreSQL
 * (durable, whatever the broker). Counted, never per message: a message costs no write here
 * except the sender's own marker.
 */
export interface Members extends PushPrefs {
  readonly kind: 'memory' | 'redis' | 'postgres'
  /** The user's memberships. */
  of(user: string): Promise<Membership[]>
  get(room: string, user: string): Promise<Membership | undefined>
  /** Makes `user` a member with its marker at `read`, unless it is one or holds `cap` memberships. */
  add(room: string, user: User, read: number, cap: number): Promise<AddResult>
  /** Ends a membership; false when there was none. */
  remove(room: string, user: string): Promise<boolean>
  /** A page of a room's members, by user id, after `after`. */
  list(room: string, after: string | undefined, limit: number): Promise<{ members: MemberEntry[]; more: boolean }>
  /** Moves the marker up to `seq` (never back): the marker now, or undefined when not a member. */
  read(room: string, user: string, seq: number): Promise<number | undefined>
  /** `read` without waiting or answering: a sender's marker follows its own message. */
  touch(room: string, user: string, seq: number): void
  /** The two users of a direct room, once it is registered. */
  pair(room: string): Promise<[User, User] | undefined>
  setPair(room: string, pair: [User, User]): Promise<void>
  /** A user the server has seen (connected, or named through the API). */
  user(id: string): Promise<User | undefined>
  seen(user: User): Promise<void>
  /** A user's role and sanctions in a room (empty when none). */
  standing(room: string, user: string): Promise<Standing>
  /** Changes some of it; a field set to null is cleared. */
  setStanding(room: string, user: string, patch: StandingPatch): Promise<void>
}

export { ROLES } from '../core/identity'
export type { Role } from '../core/identity'
import type { Role } from '../core/identity'

/** Per room per user: the role given by the API, and the moderation that holds. */
export interface Standing {
  role?: Role
  /** Epoch ms the mute ends. */
  mutedUntil?: number
  banned?: boolean
}
export type StandingPatch = { [K in keyof Standing]?: Standing[K] | null }

/** Applies a patch (null clears a field); pure, shared by the engines. */
export function patched(s: Standing, p: StandingPatch): Standing {
  const out: Record<string, unknown> = { ...s }
  for (const [k, v] of Object.entries(p)) {
    if (v === null) delete out[k]
    else if (v !== undefined) out[k] = v
  }
  return out as Standing
}

/** Direct rooms are named from their pair, the same whichever user writes first. */
export const DIRECT_PREFIX = 'dm:'
export const isDirect = (room: string) => room.startsWith(DIRECT_PREFIX)
export function directRoom(a: string, b: string): string {
  const pair = a <= b ? [a, b] : [b, a]
  return DIRECT_PREFIX + new Bun.CryptoHasher('sha256').update(JSON.stringify(pair)).digest('hex').slice(0, 40)
}

/** The push providers a device can use (PROTOCOL-v3, Push notifications). */
export const PUSH_KINDS = ['webpush', 'fcm', 'apns'] as const
export type PushKind = (typeof PUSH_KINDS)[number]

/** A Web Push subscription as the browser's PushManager gives it. */
export interface WebPushSubscription {
  endpoint: string
  keys: { p256dh: string; auth: string }
}

/** One of a user's devices: a provider and its address (`token` for FCM and APNs, `subscription` for Web Push). */
export interface Device {
  device: string
  kind: PushKind
  token?: string
  subscription?: WebPushSubscription
  /** ISO time of the last PUT. */
  updated: string
}

export const NOTIFY_LEVELS = ['all', 'mentions', 'none'] as const
export type NotifyLevel = (typeof NOTIFY_LEVELS)[number]

/**
 * Push devices, notify levels and blocks, kept by the memberships engine beside the
 * memberships (one engine per deployment: cluster-wide with Redis or PostgreSQL).
 */
export interface PushPrefs {
  devices(user: string): Promise<Device[]>
  /** Adds or replaces a device; `limit` when the user holds `cap` other devices already. */
  putDevice(user: string, device: Device, cap: number): Promise<'added' | 'updated' | 'limit'>
  removeDevice(user: string, device: string): Promise<boolean>
  /**
   * The members of `room` with at least one device: the only ones a push can reach. Kept so
   * that a room's messages never scan its members (memory: the smaller side of the two
   * indexes; Redis: a per-room set; PostgreSQL: one indexed join).
   */
  pushable(room: string): Promise<string[]>
  /** The levels set in `room` by these users (a user absent from the map: `all`). */
  notifyLevels(room: string, users: string[]): Promise<Map<string, NotifyLevel>>
  setNotify(room: string, user: string, level: NotifyLevel): Promise<void>
  /** `user` blocks `other`; false when it did already. */
  block(user: string, other: string): Promise<boolean>
  unblock(user: string, other: string): Promise<boolean>
  /** The users `user` blocks. */
  blocks(user: string): Promise<string[]>
  /** Which of `users` block `sender`. */
  blocking(sender: string, users: string[]): Promise<Set<string>>
}
