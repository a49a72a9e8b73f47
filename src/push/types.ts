import type { Device, PushKind } from '../members/types'

/** One push to one device, as the queue carries it (JSON). */
export interface PushJob {
  user: string
  device: Device
  room: string
  /** The newest message the push stands for. */
  seq: number
  msg: string
  type: 'chat' | 'dm'
  from: { id: string; name: string }
  title: string
  body: string
  /** The user's total unread when the push was decided. */
  badge: number
  /** Messages of the room this push stands for (a burst coalesced into one). */
  count: number
}

/**
 * What a provider said: `ok`; `retry` (429, 5xx, no answer: tried again with backoff);
 * `gone` (the device no longer exists: removed); `failed` (refused for good: counted, reported).
 */
export type Outcome =
  | { result: 'ok' }
  | { result: 'retry'; reason: string }
  | { result: 'gone'; reason: string }
  | { result: 'failed'; reason: string }

export type Provider = {
  kind: PushKind
  send(job: PushJob): Promise<Outcome>
  close?(): void
}

/** The message fields a push carries to the app (`data` of FCM, the custom keys of APNs, the Web Push payload). */
export const dataOf = (job: PushJob) => ({
  room: job.room,
  seq: String(job.seq),
  msg: job.msg,
  type: job.type,
  from: job.from.id,
  count: String(job.count),
})

/** The collapse key of a room: providers keep one notification per key (APNs apns-collapse-id <= 64 bytes, Web Push Topic <= 32 base64url). */
export const collapseKey = (room: string) => new Bun.CryptoHasher('sha256').update(room).digest('base64url').slice(0, 32)

/** HTTP status to outcome, the part the providers share; `gone` statuses per the providers' docs. */
export function byStatus(status: number, reason: string): Outcome {
  if (status >= 200 && status < 300) return { result: 'ok' }
  if (status === 404 || status === 410) return { result: 'gone', reason }
  if (status === 429 || status >= 500 || status === 408) return { result: 'retry', reason }
  return { result: 'failed', reason }
}
