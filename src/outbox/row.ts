import { z } from 'zod'
import { FrameError } from '../core/errors'
import { SYSTEM_USER } from '../core/identity'
import type { User } from '../core/identity'
import { messageFields } from '../protocol/client-frames'
import { deeperThan } from '../protocol/json-depth'

/** A row of the outbox table as the node reads it (`id` is a bigint, kept as its text). */
export interface OutboxRow {
  id: string
  room: string | null
  to_user: string | null
  body: string | null
  data: unknown
  from_user: string | null
  idempotency_key: string | null
}

/** What a row asks for: a chat to a room, or a dm to a user; `key` is its retry key. */
export type Send =
  | { kind: 'chat'; room: string; from: User; body: string; data: unknown; key: string }
  | { kind: 'dm'; to: string; from: User; body: string; data: unknown; key: string }

/** A row that can never be delivered as it is: it goes to `<table>_failed` with this message. */
export class Undeliverable extends Error {}

export interface RowLimits {
  MAX_BODY_CHARS: number
  MAX_JSON_DEPTH: number
  MAX_FRAME_BYTES: number
}

/** A user id as a dm frame's `to` takes it (a token's `sub` may be any such string). */
const userId = z
  .string()
  .min(1, 'must not be empty')
  .max(64, 'must be at most 64 characters')
  .refine((s) => !s.includes('\0'), 'must not contain NUL characters')

/** The retry key of a row: its `idempotency_key`, else `outbox:<id>` (docs/outbox.md). */
export const retryKey = (row: Pick<OutboxRow, 'id' | 'idempotency_key'>) => row.idempotency_key ?? `outbox:${row.id}`

/**
 * A row checked by the rules /api/publish and the dm frame apply before an append (the room
 * pattern, the body's length, the data's depth and size): what fails here fails forever.
 */
export function toSend(row: OutboxRow, limits: RowLimits): Send {
  const fields = messageFields(limits.MAX_BODY_CHARS)
  const check = <T>(name: string, schema: z.ZodType<T>, v: unknown): T => {
    const r = schema.safeParse(v)
    if (!r.success) throw new Undeliverable(`${name}: ${r.error.issues[0]?.message ?? 'invalid'}`)
    return r.data
  }
  if (row.body === null) throw new Undeliverable('body: required')
  const body = check('body', fields.body, row.body)
  const data = row.data ?? undefined
  if (data !== undefined) {
    if (deeperThan(data, limits.MAX_JSON_DEPTH)) throw new Undeliverable(`data: nested deeper than ${limits.MAX_JSON_DEPTH} levels`)
    if (JSON.stringify(data).length > limits.MAX_FRAME_BYTES)
      throw new Undeliverable(`data: larger than MAX_FRAME_BYTES (${limits.MAX_FRAME_BYTES} bytes)`)
    check('data', fields.data, data)
  }
  const fromId = row.from_user === null ? SYSTEM_USER.id : check('from_user', userId, row.from_user)
  // `server` is the server's own user (`from.system: true`); any other id is that user.
  const from: User = fromId === SYSTEM_USER.id ? SYSTEM_USER : { id: fromId, name: fromId }
  const key = retryKey(row)
  if (row.to_user !== null) {
    if (row.room !== null) throw new Undeliverable('room: must be empty when to_user is set (a dm goes to the direct room of the pair)')
    const to = check('to_user', userId, row.to_user)
    if (to === SYSTEM_USER.id) throw new Undeliverable(`to_user: ${to} is the server's own user, which no connection can be`)
    return { kind: 'dm', to, from, body, data, key }
  }
  if (row.room === null) throw new Undeliverable('room: required (or to_user, for a dm)')
  return { kind: 'chat', room: check('room', fields.room, row.room), from, body, data, key }
}

/**
 * Whether an append's failure is for good: a refusal by the room's rules (banned, a closed
 * room, a blocked dm…) fails the same way on every retry. A dependency that is away
 * (`unavailable`, `rate_limited`, `internal`, anything not a FrameError) may pass: retried.
 */
export function permanent(err: unknown): boolean {
  if (err instanceof Undeliverable) return true
  if (!(err instanceof FrameError)) return false
  return err.code !== 'unavailable' && err.code !== 'rate_limited' && err.code !== 'internal'
}
