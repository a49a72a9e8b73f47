import { FrameError } from '../core/errors'
import type { Members } from '../members/types'
import type { SearchCursor, SearchQuery, Store } from '../store/types'
import type { Broker } from '../broker/types'
import { current, messageIdOf } from '../broker/message-rules'
import type { MessageState } from '../broker/message-rules'

export const SEARCH_DEFAULT_LIMIT = 20

/** What a search frame or GET /api/search asks (checked by their schemas). */
export interface SearchInput {
  q: string
  room?: string
  from?: string
  before?: string
  cursor?: string
  limit?: number
}

/** An ISO 8601 time (a date, optionally with a time): anything else in `before` is a message id. */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/

/** The cursor is opaque to clients: base64url of [room, seq] of the page's last result. */
export const encodeCursor = (c: SearchCursor) => Buffer.from(JSON.stringify([c.room, c.seq])).toString('base64url')
export function decodeCursor(text: string): SearchCursor {
  try {
    const v = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'))
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && Number.isSafeInteger(v[1]) && v[1] >= 0)
      return { room: v[0], seq: v[1] }
  } catch {}
  throw new FrameError('bad_request', 'cursor: not a cursor this server gave (pass the `cursor` of the previous answer as it is)')
}

/** Search of a user's messages (see createSearch). */
export interface Search {
  /** A page of the user's matching messages, as they stand, and the cursor of the next page. */
  search(user: string, input: SearchInput): Promise<{ results: string[]; cursor?: string }>
}

/**
 * Search of a user's messages (docs/search.md): the store runs it in PostgreSQL, scoped to the
 * user's memberships (joined in SQL when they are in the same database, else the members
 * engine's list as a parameter); results are shown as they stand (edits, reactions), as history shows them.
 */
export function createSearch(deps: { store?: Store; members: Members; broker: Pick<Broker, 'messages'> }): Search {
  const { store, members, broker } = deps

  async function search(user: string, input: SearchInput): Promise<{ results: string[]; cursor?: string }> {
    if (!store?.search) throw new FrameError('unavailable', 'search: search needs PostgreSQL (POSTGRES_DSN)')
    const q = input.q.trim()
    if (!q) throw new FrameError('bad_request', 'q: must not be empty')
    if (input.room !== undefined && !(await members.get(input.room, user)))
      throw new FrameError('forbidden', `room: not a member of ${input.room}`)
    let before: SearchQuery['before']
    if (input.before !== undefined) {
      if (ISO_TIME.test(input.before)) {
        if (Number.isNaN(Date.parse(input.before))) throw new FrameError('bad_request', `before: ${input.before} is not a valid time`)
        before = { ts: new Date(input.before).toISOString() }
      } else before = { msg: input.before }
    }
    const rooms = members.kind === 'postgres' ? undefined : (await members.of(user)).map((m) => m.room)
    if (rooms && rooms.length === 0) return { results: [] }
    const page = await store.search({
      user,
      q,
      rooms,
      room: input.room,
      from: input.from,
      before,
      cursor: input.cursor === undefined ? undefined : decodeCursor(input.cursor),
      limit: input.limit ?? SEARCH_DEFAULT_LIMIT,
    })
    // As they stand, as history shows them: the broker's state of a message first (with Redis
    // it may be ahead of the archive), else the state the search read with the row.
    const byRoom = new Map<string, number[]>()
    page.results.forEach((r, i) => {
      byRoom.set(r.room, [...(byRoom.get(r.room) ?? []), i])
    })
    const shown: string[] = page.results.map((r) => r.frame)
    await Promise.all(
      [...byRoom].map(async ([room, idx]) => {
        const ids = idx.map((i) => messageIdOf(page.results[i]!.frame)!)
        const live = broker.messages ? await broker.messages(room, ids) : new Map<string, MessageState>()
        // What the broker no longer holds, the store's full state (with its thread) says.
        const missing = ids.filter((id) => !live.has(id))
        const kept = missing.length ? await store.messages(room, missing) : new Map<string, MessageState>()
        idx.forEach((i, k) => {
          shown[i] = current(page.results[i]!.frame, live.get(ids[k]!) ?? kept.get(ids[k]!) ?? page.results[i]!.state, user)
        })
      }),
    )
    return { results: shown, cursor: page.cursor && encodeCursor(page.cursor) }
  }

  return { search }
}
