import type { User } from '../protocol/server-frames'
import { userJson } from '../protocol/server-frames'

export { EVENT_TYPES } from '../protocol/webhook-events'
export type { EventType } from '../protocol/webhook-events'
import type { EventType } from '../protocol/webhook-events'

/**
 * Encoded JSON spliced into an event as-is (a chat frame is already text: it is not parsed
 * and encoded again for every event).
 */
export class RawJson {
  constructor(readonly json: string) {}
}

/** What a feature hands to `emit`: the type, the room/user it concerns and its own fields. */
export interface EventInput {
  type: EventType
  room?: string
  user?: User
  /** message.*: the chat frame (a RawJson of the encoded frame, or the frame as an object). */
  message?: RawJson | Record<string, unknown>
  /** message.created: members of the room with no live connection anywhere in the cluster. */
  offline?: string[]
  [field: string]: unknown
}

/** An event as the backend receives it. */
export interface WebhookEvent extends Omit<EventInput, 'message'> {
  id: string
  ts: string
  message?: Record<string, unknown>
}

/** An event encoded once, at emit; queues, Redis and PostgreSQL carry this text. */
export interface Encoded {
  id: string
  /** Epoch ms of the emit: the retry window and the latency histogram count from it. */
  at: number
  json: string
}

/** The cap of `offline` per event: past it the list is cut and `offline_truncated` is true. */
export const OFFLINE_CAP = 1000

export function encodeEvent(input: EventInput, now = Date.now()): Encoded {
  const id = Bun.randomUUIDv7()
  const { type, message, ...rest } = input
  let json = JSON.stringify({ id, type, ts: new Date(now).toISOString(), ...rest })
  if (message !== undefined) json = `${json.slice(0, -1)},"message":${message instanceof RawJson ? message.json : JSON.stringify(message)}}`
  return { id, at: now, json }
}

let lastMs = -1
let lastIso = ''
/** Date#toISOString, made once per millisecond however many events share it. */
const isoOf = (ms: number) => (ms === lastMs ? lastIso : ((lastMs = ms), (lastIso = new Date(ms).toISOString())))

/**
 * encodeEvent for `message.created`, the one event per message, spelled out by hand: the same
 * bytes as encodeEvent would make (`id` and `ts` hold nothing JSON must escape), at a fraction
 * of its cost on the chat path.
 */
export function encodeMessageCreated(
  room: string,
  from: User,
  frame: string,
  offline: string[],
  truncated: boolean,
  now = Date.now(),
): Encoded {
  const id = Bun.randomUUIDv7()
  const json =
    `{"id":"${id}","type":"message.created","ts":"${isoOf(now)}","room":${JSON.stringify(room)},"user":${userJson(from)},` +
    `"offline":${offline.length ? JSON.stringify(offline) : '[]'}${truncated ? ',"offline_truncated":true' : ''},"message":${frame}}`
  return { id, at: now, json }
}
