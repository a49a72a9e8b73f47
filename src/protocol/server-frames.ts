/**
 * Encoders of the frames the server sends. Each returns the JSON text once, so a frame is
 * encoded once per message and handed as-is to every recipient, on every node.
 */

export interface User {
  id: string
  name: string
  /** Only on the server's own messages (src/auth/system.ts); never on a connection. */
  system?: true
}

const q = JSON.stringify
const opt = (key: string, value: unknown) => (value === undefined ? '' : `,"${key}":${q(value)}`)

/**
 * A chat frame is stored and fanned out as text. It is encoded in two halves around its
 * `seq`, because the seq is only known to the sequencer (this process, or a Redis script).
 * `seq` comes first so that any holder of the text can read it back cheaply (`chatSeq`).
 */
export const CHAT_HEAD = '{"type":"chat","seq":'

export function chatTail(m: { id: string; room: string; from: User; body: string; data?: unknown; ts: string }): string {
  return `,"id":${q(m.id)},"room":${q(m.room)},"from":${user(m.from)},"body":${q(m.body)}${opt('data', m.data)},"ts":${q(m.ts)}}`
}

/**
 * chatTail for a message made here: `id` from Bun.randomUUIDv7() (hex digits and `-`) and `ts`
 * from Date#toISOString() (digits, `-`, `:`, `.`, `T`, `Z`) hold nothing JSON must escape, so
 * they are quoted without JSON.stringify; `fromJson` is userJson(from). Same bytes as chatTail.
 */
export function chatTailOfOwn(id: string, room: string, fromJson: string, body: string, data: unknown, ts: string): string {
  return `,"id":"${id}","room":${q(room)},"from":${fromJson},"body":${q(body)}${opt('data', data)},"ts":"${ts}"}`
}

export const chatFrame = (seq: number, tail: string) => CHAT_HEAD + seq + tail

/** The seq of an encoded chat frame, or -1 when the text is not one. */
export function chatSeq(frame: string): number {
  if (!frame.startsWith(CHAT_HEAD)) return -1
  const n = parseInt(frame.slice(CHAT_HEAD.length, CHAT_HEAD.length + 20), 10)
  return Number.isFinite(n) ? n : -1
}

const user = (u: User) => `{"id":${q(u.id)},"name":${q(u.name)}${u.system ? ',"system":true' : ''}}`
/** A user as it appears in frames (`from`, `user`): encode it once and keep it with the connection. */
export const userJson = user

export const frames = {
  welcome: (conn: string, u: User, node: string, rooms: string[]) =>
    `{"type":"welcome","conn":${q(conn)},"user":${user(u)},"node":${q(node)},"rooms":${q(rooms)}}`,
  dm: (m: { id: string; from: User; to: string; body: string; data?: unknown; ts: string }) =>
    `{"type":"dm","id":${q(m.id)},"from":${user(m.from)},"to":${q(m.to)},"body":${q(m.body)}${opt('data', m.data)},"ts":${q(m.ts)}}`,
  ack: (id: string, msg?: string, seq?: number) => `{"type":"ack","id":${q(id)}${opt('msg', msg)}${opt('seq', seq)}}`,
  joined: (room: string, seq: number, epoch: string, recovered: boolean, id?: string) =>
    `{"type":"joined","room":${q(room)},"seq":${seq},"epoch":${q(epoch)},"recovered":${recovered}${opt('id', id)}}`,
  left: (room: string, id?: string) => `{"type":"left","room":${q(room)}${opt('id', id)}}`,
  /** `messages` are already-encoded chat frames, spliced in without re-encoding. */
  history: (room: string, messages: string[], more: boolean, id?: string) =>
    `{"type":"history","room":${q(room)},"messages":[${messages.join(',')}],"more":${more}${opt('id', id)}}`,
  presenceList: (room: string, users: User[], id?: string) =>
    `{"type":"presence","room":${q(room)},"users":[${users.map(user).join(',')}]${opt('id', id)}}`,
  presenceEvent: (room: string, event: 'join' | 'leave', u: User) =>
    `{"type":"presence","room":${q(room)},"event":"${event}","user":${user(u)}}`,
  typing: (room: string, u: User) => `{"type":"typing","room":${q(room)},"user":${user(u)}}`,
  pong: (id?: string) => `{"type":"pong"${opt('id', id)}}`,
  error: (code: ErrorCode, message: string, id?: string) =>
    `{"type":"error","code":"${code}","message":${q(message)}${opt('id', id)}}`,
}

export type ErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'rate_limited'
  | 'too_large'
  | 'unavailable'
  | 'internal'

export const CLOSE = {
  goingAway: 1001,
  policy: 1008,
  tooBig: 1009,
  tokenExpired: 4001,
  slowConsumer: 4008,
} as const
