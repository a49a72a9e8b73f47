import type { User } from '../core/identity'
import type { PushJob } from './types'

/** A message of a room's window: what a push may be made of. */
export interface Message {
  from: User
  seq: number
  msg: string
  body: string
  type: 'chat' | 'dm'
}

/** The longest body a push carries (providers cap payloads at 4 KiB; a lock screen shows far less). */
export const BODY_MAX = 200

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/**
 * Does `body` mention the user? `@` then the user's id or display name, case-insensitive,
 * not inside a longer word: `@bob` and `@Bob,` mention bob; `@bobby` and `mail@bob` do not.
 */
export function mentions(body: string, id: string, name: string): boolean {
  if (!body.includes('@')) return false
  const names = [id, name].filter(Boolean).map(escapeRegExp).join('|')
  return new RegExp(`(?:^|[^\\p{L}\\p{N}_])@(?:${names})(?![\\p{L}\\p{N}_])`, 'iu').test(body)
}

/** At most `max` characters (whole code points), with an ellipsis when cut. */
export function trimmed(body: string, max = BODY_MAX): string {
  const chars = [...body]
  return chars.length <= max ? body : `${chars.slice(0, max - 1).join('')}…`
}

/** What every device of one user gets for one window of a room: the newest message, how many there were, the badge. */
export function notification(room: string, m: Message, count: number, badge: number): Omit<PushJob, 'user' | 'device'> {
  const title = m.type === 'dm' ? m.from.name : `${m.from.name} in ${room}`
  const more = count > 1 ? ` (+${count - 1} more)` : ''
  return {
    room,
    seq: m.seq,
    msg: m.msg,
    type: m.type,
    from: { id: m.from.id, name: m.from.name },
    title,
    body: trimmed(m.body, BODY_MAX - more.length) + more,
    badge,
    count,
  }
}
