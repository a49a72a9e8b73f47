import { SYSTEM_USER } from '../core/identity'
import { eventHead, eventTail } from '../protocol/server-frames'
import type { EventType } from '../protocol/server-frames'

/** The event types that are messages (counted as unread, shown as a conversation's last). */
export const MESSAGE_TYPES = ['chat', 'dm']

/** A row of `messages` as the readers select it, and the frame it makes again (message-reads.ts, search.ts). */
export interface Row {
  seq: string
  type: EventType
  id: string
  user_id: string
  user_name: string
  body: string | null
  data: unknown
  /** SQL NULL (no `data`), as opposed to a JSON null. */
  no_data: boolean
  extra: Record<string, unknown> | null
  created_at: Date
}

/** No connection can be the server (src/auth/system.ts): its rows read back with `system`. */
const fromOf = (r: Row) => (r.user_id === SYSTEM_USER.id ? { ...SYSTEM_USER, name: r.user_name } : { id: r.user_id, name: r.user_name })
export const frameOf = (room: string, r: Row) =>
  eventHead(r.type) +
  r.seq +
  eventTail({
    type: r.type,
    id: r.id,
    room,
    from: fromOf(r),
    body: r.body ?? undefined,
    data: r.no_data ? undefined : r.data,
    ts: r.created_at.toISOString(),
    ...(r.extra ? { extra: r.extra } : {}),
  })
