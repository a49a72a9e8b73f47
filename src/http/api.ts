import { Elysia } from 'elysia'
import { z } from 'zod'
import type { Broker } from '../broker/types'
import type { Store } from '../store/types'
import type { Config } from '../config'
import type { Hub } from '../hub/hub'
import { FrameError, dedupeKey } from '../hub/hub'
import { log } from '../log'
import { messageFields } from '../protocol/client-frames'
import { apiKeyGuard, json } from './api-key'

const API_USER = { id: 'server', name: 'server' }

/** The server-side API: publish, history, presence. Behind `Authorization: Bearer <API_KEY>`. */
export function apiRoutes(deps: { config: Config; hub: Hub; broker: Broker; store?: Store }) {
  const { config, hub, broker } = deps
  const { room, body, data } = messageFields(config.MAX_BODY_CHARS)
  const publishBody = z.object({ room: room.optional(), body, data })
  const int = (min: number, max: number) => z.coerce.number().int('must be a whole number').min(min, `must be ${min}..${max}`).max(max, `must be ${min}..${max}`)
  const pageQuery = z.object({ before: int(1, Number.MAX_SAFE_INTEGER).optional(), limit: int(1, 100).default(50) })

  const invalid = (error: z.ZodError) => {
    const issue = error.issues[0]!
    return json(400, { error: 'bad_request', reason: `${issue.path.join('.') || 'body'}: ${issue.message}` })
  }

  /** A dependency that is down answers 503 with the reason, not a bare 500. */
  const orUnavailable = async (read: () => Promise<Response | object>) => {
    try {
      return await read()
    } catch (err) {
      const down = broker.problem() ?? deps.store?.problem()
      if (down) return json(503, { error: 'unavailable', reason: down })
      throw err
    }
  }

  return new Elysia({ prefix: '/api' })
    .onBeforeHandle(apiKeyGuard(config))
    .post(
      '/publish',
      async ({ body, headers }) => {
        let input: unknown
        try {
          input = JSON.parse(String(body))
        } catch {
          return json(400, { error: 'bad_request', reason: 'body: not valid JSON' })
        }
        const parsed = publishBody.safeParse(input)
        if (!parsed.success) return invalid(parsed.error)
        const target = parsed.data.room ?? config.DEFAULT_ROOM
        const key = headers['idempotency-key']
        try {
          const a = await hub.publish(target, API_USER, parsed.data.body, parsed.data.data, key ? dedupeKey('api', target, key.slice(0, 128)) : undefined)
          log.info('api publish', { room: target, msg: a.id, seq: a.seq })
          hub.audit({ event: 'api_publish', room: target, detail: { msg: a.id, seq: a.seq } })
          return { id: a.id, room: target, seq: a.seq }
        } catch (err) {
          if (err instanceof FrameError) return json(503, { error: err.code, reason: err.message })
          throw err
        }
      },
      { parse: 'text' },
    )
    .get('/rooms/:room/messages', async ({ params, query }) => {
      const r = room.safeParse(params.room)
      if (!r.success) return json(400, { error: 'bad_request', reason: `room: ${r.error.issues[0]!.message}` })
      const q = pageQuery.safeParse(query)
      if (!q.success) return invalid(q.error)
      return orUnavailable(async () => {
        const page = await hub.page(r.data, q.data.before, q.data.limit)
        return new Response(`{"room":${JSON.stringify(r.data)},"messages":[${page.frames.join(',')}],"more":${page.more}}`, {
          headers: { 'content-type': 'application/json' },
        })
      })
    })
    .get('/rooms/:room/presence', async ({ params }) => {
      const r = room.safeParse(params.room)
      if (!r.success) return json(400, { error: 'bad_request', reason: `room: ${r.error.issues[0]!.message}` })
      return orUnavailable(async () => ({ room: r.data, users: await broker.presence.list(r.data) }))
    })
}
