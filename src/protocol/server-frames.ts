/**
 * Encoders of the frames the server sends. Each returns the JSON text once, so a frame is
 * encoded once per message and handed as-is to every recipient, on every node.
 */

export type { User } from '../core/identity'
import type { User } from '../core/identity'

const q = JSON.stringify
const opt = (key: string, value: unknown) => (value === undefined ? '' : `,"${key}":${q(value)}`)

/**
 * Every event of a room's log (chat, dm, and the events that change a message or a room) is
 * stored and fanned out as text. It is encoded in two halves around its `seq`, because the
 * seq is only known to the sequencer (this process, or a Redis script): the head
 * `{"type":"<type>","seq":` and the tail after the number. Any holder of the text reads the
 * seq back cheaply (`eventSeq`), whatever the event's type.
 */
export type EventType =
  | 'chat'
  | 'dm'
  | 'edit'
  | 'delete'
  | 'react'
  | 'moderation'
  | 'pinned'
  | 'unpinned'
  // Link previews (PROTOCOL-v4): the server's, one per message whose first URL has one.
  | 'preview'
  // v4: polls and slow mode
  | 'vote'
  | 'poll_closed'
  | 'settings'

/** The key of an event's actor (`RoomEvent.from`) in its frame: who wrote, edited, reacted, moderated. */
export const actorKey = (type: EventType) =>
  type === 'chat' || type === 'dm' ? 'from' : type === 'react' || type === 'vote' ? 'user' : 'by'

/** An anonymous poll's vote names no user in its frame (the store keeps who voted, for the rules). */
const hidesActor = (e: RoomEvent) => e.type === 'vote' && e.extra?.anonymous === true

/**
 * Where a `vote` or `poll_closed` frame's tallies go: the hub encodes the event with
 * `tallies: null` and the sequencer, which alone knows them, puts them in its place
 * (`withTallies`; the same in append.lua) in the step that appends it.
 */
export const TALLIES_SLOT = ',"tallies":null'
export const withTallies = (tail: string, tallies: number[]) => {
  const i = tail.indexOf(TALLIES_SLOT)
  return i < 0 ? tail : `${tail.slice(0, i)},"tallies":[${tallies.join(',')}]${tail.slice(i + TALLIES_SLOT.length)}`
}

export const eventHead = (type: EventType) => `{"type":"${type}","seq":`
export const CHAT_HEAD = eventHead('chat')
export const DM_HEAD = eventHead('dm')

/** Events that count as messages: they are unread until read, and a conversation's `last`. */
export const isMessageFrame = (frame: string) => frame.startsWith(CHAT_HEAD) || frame.startsWith(DM_HEAD)

/** A room event as it is kept: its type, its actor (`from`), and the fields of its frame. */
export interface RoomEvent {
  type: EventType
  id: string
  room: string
  from: User
  body?: string
  data?: unknown
  ts: string
  /** Type-specific fields (`to` of a dm), in the order they appear in the frame. */
  extra?: Record<string, unknown>
}

/**
 * The tail of an event's frame, in one canonical field order, so that a frame made live and
 * one made again from the store are the same bytes: id, room, from, the type's own fields,
 * body, data, ts.
 */
export function eventTail(e: RoomEvent): string {
  let extra = ''
  if (e.extra) for (const k in e.extra) extra += opt(k, e.extra[k])
  const actor = hidesActor(e) ? '' : `,"${actorKey(e.type)}":${user(e.from)}`
  return `,"id":${q(e.id)},"room":${q(e.room)}${actor}${extra}${opt('body', e.body)}${opt('data', e.data)},"ts":${q(e.ts)}}`
}

export function chatTail(m: { id: string; room: string; from: User; body: string; data?: unknown; ts: string; reply_to?: string }): string {
  const { reply_to, ...rest } = m
  return eventTail({ type: 'chat', ...rest, ...(reply_to === undefined ? {} : { extra: { reply_to } }) })
}

/**
 * chatTail for a message made here: `id` from Bun.randomUUIDv7() (hex digits and `-`) and `ts`
 * from Date#toISOString() (digits, `-`, `:`, `.`, `T`, `Z`) hold nothing JSON must escape, so
 * they are quoted without JSON.stringify; `fromJson` is userJson(from). Same bytes as chatTail.
 */
export function chatTailOfOwn(
  id: string,
  room: string,
  fromJson: string,
  body: string,
  data: unknown,
  ts: string,
  replyTo?: string,
  attachments?: unknown[],
  poll?: unknown,
): string {
  return `,"id":"${id}","room":${q(room)},"from":${fromJson}${opt('reply_to', replyTo)}${opt('attachments', attachments)}${opt('poll', poll)},"body":${q(body)}${opt('data', data)},"ts":"${ts}"}`
}

export const chatFrame = (seq: number, tail: string) => CHAT_HEAD + seq + tail
export const eventFrame = (type: EventType, seq: number, tail: string) => eventHead(type) + seq + tail

/** The seq of an encoded room event (`{"type":"<t>","seq":<n>…`), or -1 when the text is not one. */
export function eventSeq(frame: string): number {
  if (!frame.startsWith('{"type":"')) return -1
  const q = frame.indexOf('"', 9)
  if (q < 0 || !frame.startsWith(',"seq":', q + 1)) return -1
  const n = parseInt(frame.slice(q + 8, q + 28), 10)
  return Number.isFinite(n) ? n : -1
}

/** The event of a frame read back (a Redis stream entry the store lacks). */
export function eventOf(frame: string): RoomEvent & { seq: number } {
  const parsed = JSON.parse(frame)
  const key = actorKey(parsed.type)
  const { type, seq, id, room, [key]: from, body, data, ts, ...extra } = parsed
  // An anonymous vote's frame names nobody: read back, it is nobody's (its voter is in the rules' state).
  return { type, seq, id, room, from: from ?? { id: '', name: '' }, body, data, ts, ...(Object.keys(extra).length ? { extra } : {}) }
}

const user = (u: User) => `{"id":${q(u.id)},"name":${q(u.name)}${u.system ? ',"system":true' : ''}}`
/** A user as it appears in frames (`from`, `user`): encode it once and keep it with the connection. */
export const userJson = user

/** What a member's `joined` adds: the user's read marker and unread count in the room. */
export interface MemberState {
  read: number
  unread: number
}

/** Every `pusher` frame starts so (src/pusher tells them from the room's other frames by it). */
export const PUSHER_HEAD = '{"type":"pusher",'

export const frames = {
  welcome: (conn: string, u: User, node: string, rooms: string[], unread: number) =>
    `{"type":"welcome","conn":${q(conn)},"user":${user(u)},"node":${q(node)},"rooms":${q(rooms)},"unread":${unread}}`,
  ack: (id: string, msg?: string, seq?: number, room?: string) =>
    `{"type":"ack","id":${q(id)}${opt('msg', msg)}${opt('seq', seq)}${opt('room', room)}}`,
  joined: (
    room: string,
    seq: number,
    epoch: string,
    recovered: boolean,
    id?: string,
    member?: MemberState,
    role?: string,
    settings?: { slow_mode_s: number },
  ) =>
    `{"type":"joined","room":${q(room)},"seq":${seq},"epoch":${q(epoch)},"recovered":${recovered}${member ? `,"member":true,"read":${member.read},"unread":${member.unread}` : ''}${opt('role', role)}${opt('settings', settings)}${opt('id', id)}}`,
  left: (room: string, id?: string, reason?: string) => `{"type":"left","room":${q(room)}${opt('reason', reason)}${opt('id', id)}}`,
  /** `messages` are already-encoded frames, spliced in without re-encoding. */
  history: (room: string, messages: string[], more: boolean, id?: string) =>
    `{"type":"history","room":${q(room)},"messages":[${messages.join(',')}],"more":${more}${opt('id', id)}}`,
  presenceList: (room: string, users: User[], count: number, next?: string, id?: string) =>
    `{"type":"presence","room":${q(room)},"users":[${users.map(user).join(',')}],"count":${count}${opt('next', next)}${opt('id', id)}}`,
  /** A window's joins and leaves of a room above PRESENCE_EVENTS_MAX (hub/presence-events.ts). */
  presenceBatch: (room: string, joined: User[], left: User[], count: number, truncated: boolean) =>
    `{"type":"presence","room":${q(room)},"event":"batch","joined":[${joined.map(user).join(',')}],"left":[${left.map(user).join(',')}],"count":${count}${truncated ? ',"truncated":true' : ''}}`,
  presenceEvent: (room: string, event: 'join' | 'leave', u: User) =>
    `{"type":"presence","room":${q(room)},"event":"${event}","user":${user(u)}}`,
  typing: (room: string, u: User) => `{"type":"typing","room":${q(room)},"user":${user(u)}}`,
  read: (room: string, u: User, seq: number) => `{"type":"read","room":${q(room)},"user":${user(u)},"seq":${seq}}`,
  /** `conversations` are already-encoded Conversation objects. */
  rooms: (conversations: string[], more: boolean, next?: string, id?: string) =>
    `{"type":"rooms","rooms":[${conversations.join(',')}],"more":${more}${opt('next', next)}${opt('id', id)}}`,
  /** `pins` are already-encoded pin objects (see pinJson). */
  pins: (room: string, pins: string[], id?: string) => `{"type":"pins","room":${q(room)},"pins":[${pins.join(',')}]${opt('id', id)}}`,
  /** `results` are already-encoded message frames, spliced in. */
  search: (results: string[], cursor?: string, id?: string) =>
    `{"type":"search","results":[${results.join(',')}]${opt('cursor', cursor)}${opt('id', id)}}`,
  pong: (id?: string) => `{"type":"pong"${opt('id', id)}}`,
  /** A scheduled message kept (PROTOCOL-v4): the answer to a `chat` or `dm` with `send_at`. */
  scheduledAck: (id: string, scheduled: string, sendAt: string) =>
    `{"type":"ack","id":${q(id)},"scheduled":${q(scheduled)},"send_at":${q(sendAt)}}`,
  /** `messages` are already-encoded scheduled messages (see scheduledJson). */
  scheduled: (messages: string[], id?: string) => `{"type":"scheduled","messages":[${messages.join(',')}]${opt('id', id)}}`,
  /** A scheduled message refused at its time, to its author's connections. */
  scheduledError: (code: ErrorCode, message: string, scheduled: string) =>
    `{"type":"error","code":"${code}","message":${q(message)},"scheduled":${q(scheduled)}}`,
  /** `threads` are already-encoded thread objects (see threadJson). */
  threads: (threads: string[], more: boolean, next?: string, id?: string) =>
    `{"type":"threads","threads":[${threads.join(',')}],"more":${more}${opt('next', next)}${opt('id', id)}}`,
  /**
   * A Pusher event of the room (a Pusher client's `client-*` event or one of the Pusher HTTP
   * API, src/pusher), as chat-server clients get it; `data` is the event's data already encoded.
   */
  pusher: (room: string, event: string, dataJson: string, userId?: string) =>
    `${PUSHER_HEAD}"room":${q(room)},"event":${q(event)},"data":${dataJson}${opt('user_id', userId)}}`,
  error: (code: ErrorCode, message: string, id?: string, retryAfter?: number) =>
    `{"type":"error","code":"${code}","message":${q(message)}${opt('retry_after', retryAfter)}${opt('id', id)}}`,
}

/** One entry of a `pins` list; `message` is the encoded message frame as it stands (spliced in). */
export const pinJson = (p: { msg: string; by: User; ts: string }, message: string | undefined) =>
  `{"msg":${q(p.msg)},"by":${user(p.by)},"ts":${q(p.ts)}${message ? `,"message":${message}` : ''}}`

/** One entry of a `scheduled` list: what will be sent, where, and when. */
export const scheduledJson = (m: { scheduled: string; room?: string; to?: string; body: string; data?: unknown; send_at: string }) =>
  JSON.stringify({
    scheduled: m.scheduled,
    ...(m.room !== undefined ? { room: m.room } : { to: m.to }),
    body: m.body,
    ...(m.data !== undefined ? { data: m.data } : {}),
    send_at: m.send_at,
  })

/** One entry of a `threads` list; `root` is the encoded root message frame as it stands (spliced in). */
export const threadJson = (t: { room: string; msg: string; root: string; count: number; last_ts: string; unread: number }) =>
  `{"room":${q(t.room)},"msg":${q(t.msg)},"root":${t.root},"count":${t.count},"last_ts":${q(t.last_ts)},"unread":${t.unread}}`

/** A conversation of the `rooms` list; `last` is an encoded message frame, spliced in. */
export function conversation(c: {
  room: string
  direct?: User
  seq: number
  epoch: string
  read: number
  unread: number
  last?: string
}): string {
  return `{"room":${q(c.room)},"kind":"${c.direct ? 'direct' : 'room'}"${c.direct ? `,"with":${user(c.direct)}` : ''},"seq":${c.seq},"epoch":${q(c.epoch)},"read":${c.read},"unread":${c.unread}${c.last ? `,"last":${c.last}` : ''}}`
}

/**
 * Commands between nodes on a user's topic, never sent to a client: make the user's
 * connections join a room (from `since`), leave it, or close.
 */
export type Control =
  | { ctl: 'join'; room: string; since: number }
  | { ctl: 'leave'; room: string; reason?: string }
  | { ctl: 'close'; code: number; reason: string }
export const CONTROL_HEAD = '{"ctl":'
export const control = (c: Control) => JSON.stringify(c)

export type { ErrorCode } from '../core/errors'
import type { ErrorCode } from '../core/errors'

export const CLOSE = {
  goingAway: 1001,
  policy: 1008,
  tooBig: 1009,
  tokenExpired: 4001,
  slowConsumer: 4008,
} as const
