import { Elysia } from 'elysia'
import { z } from 'zod'
import type { Broker } from '../broker/types'
import type { Config } from '../config'
import type { Hub } from '../hub/hub'
import { FrameError } from '../hub/errors'
import type { Members } from '../members/types'
import { isDirect } from '../members/types'
import { ROOM_PATTERN } from '../config'
import type { Store } from '../store/types'
import { apiKeyGuard, json } from './api-key'

const STATUS: Record<string, number> = { bad_request: 400, forbidden: 403, not_found: 404, limit: 409, unavailable: 503 }

/** Memberships and conversation lists for the app's backend: `/api/users/:user/rooms`, `/api/rooms/:room/members`. */
export function conversationsRoutes(deps: { config: Config; hub: Hub; broker: Broker; members: Members; store?: Store }) {
  const { config, hub, members } = deps
  const room = z.string().regex(ROOM_PATTERN, 'must be 1..64 of A-Z a-z 0-9 _ . : -')
  const userId = z.string().min(1, 'must not be empty').max(64, 'must be at most 64 characters').refine((s) => !/[\u0000-\u001f]/.test(s), 'must hold no control characters')
  const name = z.string().min(1, 'must not be empty').max(64, 'must be at most 64 characters').refine((s) => !/[\u0000-\u001f]/.test(s), 'must hold no control characters')
  const int = (min: number, max: number) => z.coerce.number().int('must be a whole number').min(min, `must be ${min}..${max}`).max(max, `must be ${min}..${max}`)
  const roomsQuery = z.object({ before: z.string().max(512).optional(), limit: int(1, 100).default(50) })
  const membersQuery = z.object({ after: z.string().max(64).optional(), limit: int(1, 1000).default(100) })
  const memberBody = z.object({ name: name.optional() }).strict()

  const invalid = (what: string, error: z.ZodError) => {
    const issue = error.issues[0]!
    return json(400, { error: 'bad_request', reason: `${[what, ...issue.path].filter(Boolean).join('.')}: ${issue.message}` })
  }
  const parse = <T>(what: string, schema: z.ZodType<T>, value: unknown): { ok: true; value: T } | { ok: false; res: Response } => {
    const r = schema.safeParse(value)
    return r.success ? { ok: true, value: r.data } : { ok: false, res: invalid(what, r.error) }
  }

  /** FrameErrors answer with their code; a dependency that is down answers 503; nothing else is hidden. */
  const answer = async (work: () => Promise<Response | object>) => {
    try {
      return await work()
    } catch (err) {
      if (err instanceof FrameError) return json(STATUS[err.code] ?? 400, { error: err.code, reason: err.message })
      const down = deps.broker.problem() ?? deps.store?.problem()
      if (down) return json(503, { error: 'unavailable', reason: down })
      throw err
    }
  }

  const unknownUser = (id: string) => json(404, { error: 'not_found', reason: `user: ${id} is not known here (never connected; PUT a membership with {"name"} to name them)` })

  /** A direct room takes only its own two users. */
  async function directAllows(r: string, user: string) {
    if (!isDirect(r)) return undefined
    const pair = await members.pair(r)
    if (!pair) return json(404, { error: 'not_found', reason: `room: no direct room ${r}` })
    if (pair[0].id !== user && pair[1].id !== user) return json(403, { error: 'forbidden', reason: `room: ${r} is the direct room of two other users` })
    return undefined
  }

  return new Elysia({ prefix: '/api' })
    .onBeforeHandle(apiKeyGuard(config))
    .get('/users/:user/rooms', ({ params, query }) => {
      const u = parse('user', userId, params.user)
      if (!u.ok) return u.res
      const q = parse('', roomsQuery, query)
      if (!q.ok) return q.res
      return answer(async () => {
        if (!(await members.user(u.value)) && (await members.of(u.value)).length === 0) return unknownUser(u.value)
        const r = await hub.conversations.list(u.value, q.value.before, q.value.limit)
        return new Response(`{"user":${JSON.stringify(u.value)},"rooms":[${r.conversations.join(',')}],"more":${r.more}${r.next ? `,"next":${JSON.stringify(r.next)}` : ''}}`, {
          headers: { 'content-type': 'application/json' },
        })
      })
    })
    .get('/rooms/:room/members', ({ params, query }) => {
      const r = parse('room', room, params.room)
      if (!r.ok) return r.res
      const q = parse('', membersQuery, query)
      if (!q.ok) return q.res
      return answer(async () => {
        const page = await members.list(r.value, q.value.after, q.value.limit)
        const next = page.more ? page.members.at(-1)!.id : undefined
        return { room: r.value, members: page.members, more: page.more, ...(next ? { next } : {}) }
      })
    })
    .put(
      '/rooms/:room/members/:user',
      async ({ params, body }) => {
        const r = parse('room', room, params.room)
        if (!r.ok) return r.res
        const u = parse('user', userId, params.user)
        if (!u.ok) return u.res
        let input: unknown = {}
        if (String(body ?? '').trim()) {
          try {
            input = JSON.parse(String(body))
          } catch {
            return json(400, { error: 'bad_request', reason: 'body: not valid JSON' })
          }
        }
        const b = parse('body', memberBody, input)
        if (!b.ok) return b.res
        return answer(async () => {
          const refused = await directAllows(r.value, u.value)
          if (refused) return refused
          const known = await members.user(u.value)
          if (!known && !b.value.name) return unknownUser(u.value)
          const user = { id: u.value, name: b.value.name ?? known!.name }
          const result = await hub.conversations.grant(r.value, user)
          return { room: r.value, user, member: true, added: result.status === 'added', read: result.read }
        })
      },
      { parse: 'text' },
    )
    .delete('/rooms/:room/members/:user', ({ params }) => {
      const r = parse('room', room, params.room)
      if (!r.ok) return r.res
      const u = parse('user', userId, params.user)
      if (!u.ok) return u.res
      return answer(async () => {
        if (!(await hub.conversations.revoke(r.value, u.value))) return json(404, { error: 'not_found', reason: `member: ${u.value} is not a member of ${r.value}` })
        return { room: r.value, user: u.value, member: false }
      })
    })
}
