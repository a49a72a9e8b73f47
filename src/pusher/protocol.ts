import { createHash, createHmac } from 'node:crypto'
import { safeEqual } from '../auth/compare'
import { ROOM_PATTERN } from '../core/room'
import { isDirect } from '../members/types'

/**
 * The Pusher Channels protocol (v7) as chat-server speaks it: its frames, channel kinds and
 * signatures. Every frame is `{"event":…,"channel"?:…,"data":…}`; the protocol's own events'
 * `data` is a JSON string (pusher-js parses it), an app event's `data` is what was sent.
 */

const q = JSON.stringify

/** Close codes and `pusher:error` codes of the protocol (pusher.com/docs/channels/library_auth_reference/pusher-websockets-protocol). */
export const CODE = {
  appKey: 4001,
  protocol: 4007,
  unauthorized: 4009,
  overCapacity: 4100,
  reconnect: 4200,
  pongNotReceived: 4201,
  clientEventRejected: 4301,
  /** A socket closed for flooding frames past RATE_LIMIT_PER_SEC (Pusher: "rejected due to rate limit"; pusher-js does not reconnect by itself). */
  rateLimited: 4301,
} as const

/** Pusher's own limits where chat-server has none of its own (its documented ones). */
export const LIMITS = {
  /** An event's `data`, in bytes (HTTP API and client events). */
  eventBytes: 10_240,
  /** Client events a connection may send per second (Pusher: 10). */
  clientEventsPerSec: 10,
  /** Channels of one HTTP API event. */
  channelsPerEvent: 100,
  /** Events of one batch_events request. */
  batchEvents: 10,
  /** An event name. */
  eventName: 200,
  /** A presence member's user_id. */
  userId: 128,
  /** A presence channel's channel_data / a signin's user_data, in bytes. */
  userData: 1024,
  /** Seconds a client has at most to answer the server's pusher:ping (less when activity_timeout is shorter). */
  pongTimeoutS: 30,
} as const

export type ChannelKind = 'public' | 'private' | 'presence' | 'encrypted'

export function channelKind(name: string): ChannelKind {
  if (name.startsWith('private-encrypted-')) return 'encrypted'
  if (name.startsWith('private-')) return 'private'
  if (name.startsWith('presence-')) return 'presence'
  return 'public'
}

/** Why a channel name cannot be a room (undefined: it can). A Pusher channel X is the room X. */
export function channelProblem(name: unknown): string | undefined {
  if (typeof name !== 'string' || name === '') return 'channel: a channel name is required'
  if (!ROOM_PATTERN.test(name))
    return `channel: ${JSON.stringify(name.slice(0, 80))} is not a room name here (1..64 of A-Z a-z 0-9 _ . : -)`
  // A direct room holds two users' dms: never readable through a channel name.
  if (isDirect(name)) return `channel: ${name} is a direct conversation`
  return undefined
}

/** The user channel of a signed-in connection (Pusher's server-to-user events, sendToUser). */
export const USER_CHANNEL_PREFIX = '#server-to-user-'

export const hmac = (secret: string, text: string) => createHmac('sha256', secret).update(text).digest('hex')
export const md5 = (text: string) => createHash('md5').update(text, 'utf8').digest('hex')

/**
 * Checks an `auth` value (`<key>:<hex HMAC-SHA256(secret, signed)>`) in constant time: the
 * string signed is `socket_id:channel[:channel_data]` for a subscription and
 * `socket_id::user::user_data` for a signin.
 */
export function validAuth(auth: unknown, key: string, secret: string, signed: string): boolean {
  if (typeof auth !== 'string') return false
  return safeEqual(auth, `${key}:${hmac(secret, signed)}`)
}

/** Pusher's socket ids are two numbers (the server SDKs check `^\d+\.\d+$`). */
export const SOCKET_ID = /^\d+\.\d+$/

export const pusherFrames = {
  established: (socketId: string, activityTimeout: number) =>
    `{"event":"pusher:connection_established","data":${q(`{"socket_id":"${socketId}","activity_timeout":${activityTimeout}}`)}}`,
  error: (code: number | null, message: string) => `{"event":"pusher:error","data":{"code":${code},"message":${q(message)}}}`,
  pong: '{"event":"pusher:pong","data":{}}',
  ping: '{"event":"pusher:ping","data":{}}',
  succeeded: (channel: string, data: string) =>
    `{"event":"pusher_internal:subscription_succeeded","channel":${q(channel)},"data":${q(data)}}`,
  subscriptionError: (channel: string, message: string, status: number) =>
    `{"event":"pusher:subscription_error","channel":${q(channel)},"data":{"type":"AuthError","error":${q(message)},"status":${status}}}`,
  signinSuccess: (userData: string) => `{"event":"pusher:signin_success","data":${q(JSON.stringify({ user_data: userData }))}}`,
  /** An app event; `dataJson` is the event's data already encoded (a JSON string or object). */
  event: (channel: string, event: string, dataJson: string, userId?: string) =>
    `{"event":${q(event)},"channel":${q(channel)},"data":${dataJson}${userId === undefined ? '' : `,"user_id":${q(userId)}`}}`,
  member: (channel: string, what: 'added' | 'removed', userId: string, name: string) =>
    `{"event":"pusher_internal:member_${what}","channel":${q(channel)},"data":${q(what === 'added' ? JSON.stringify({ user_id: userId, user_info: { name } }) : JSON.stringify({ user_id: userId }))}}`,
}

/** The hash of a presence channel's subscription_succeeded. */
export function presenceData(members: { id: string; name: string }[]): string {
  // No prototype: a member whose user_id is `__proto__` is a key like any other.
  const hash: Record<string, { name: string }> = Object.create(null)
  for (const m of members) hash[m.id] = { name: m.name }
  return JSON.stringify({ presence: { ids: Object.keys(hash), hash, count: Object.keys(hash).length } })
}
