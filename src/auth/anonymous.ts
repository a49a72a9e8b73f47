import type { Identity } from '../core/identity'
import { RESERVED_USER, SYSTEM_USER } from './system'

export const USER_ID_PATTERN = /^[A-Za-z0-9_.:@-]{1,64}$/

export type Refusal = { reason: string; status?: number }

/** With auth off: `?user=<id>&name=<display>`, or a random `anon-…` id. */
export function anonymousIdentity(query: Record<string, string | undefined>): Identity | Refusal {
  const ephemeral = !query.user
  const id = query.user || `anon-${Bun.randomUUIDv7().slice(-12)}`
  if (!USER_ID_PATTERN.test(id)) return { reason: 'user: must be 1..64 of A-Z a-z 0-9 _ . : @ -', status: 400 }
  if (id === SYSTEM_USER.id) return { reason: RESERVED_USER }
  const name = query.name ?? id
  if (name.length < 1 || name.length > 64 || /[\u0000-\u001f]/.test(name))
    return { reason: 'name: must be 1..64 characters, no control characters', status: 400 }
  return ephemeral ? { user: { id, name }, ephemeral } : { user: { id, name } }
}

/** Resolves who is connecting, from the upgrade request (of its headers, `authorization` is passed). */
export type Authenticate = (req: {
  query: Record<string, string | undefined>
  headers: { authorization?: string }
}) => Promise<Identity | Refusal>
