import { Elysia, status } from 'elysia'
import { z } from 'zod'
import type { Broker } from '../broker/types'
import type { Store } from '../store/types'
import type { Config } from '../config'
import type { Hub } from '../hub/hub'
import { dedupeKey } from '../hub/hub'
import { FrameError } from '../core/errors'
import { log } from '../log'
import { PRESENCE_CURSOR, messageFields } from '../protocol/client-frames'
import { apiRoute, frameErrorResponse, json, requireApiKey } from './route-spec'
import { SYSTEM_USER } from '../auth/system'
import { deeperThan } from '../protocol/json-depth'

const API_USER = SYSTEM_USER

export const User = z.object({
  id: z.string(),
  name: z.string(),
  system: z.literal(true).optional().meta({ description: "only on the server's own messages" }),
})
/** A message frame of a room's log: `chat`, or `dm` in a direct room (with `to`). */
export const ChatFrame = z.object({
  type: z.enum(['chat', 'dm']),
  seq: z.number().int(),
  id: z.string(),
  room: z.string(),
  from: User,
  to: z.string().optional().meta({ description: 'dm only: the recipient' }),
  reply_to: z.string().optional().meta({ description: 'the message this one replies to' }),
  body: z.string().optional().meta({ description: 'absent when deleted' }),
  data: z.json().optional(),
  ts: z.string().meta({ description: 'ISO 8601 time the message was accepted' }),
  edited_at: z.string().optional().meta({ description: "history only: when last edited (body and data are the edit's)" }),
  deleted: z.literal(true).optional().meta({ description: 'history only: the message was deleted' }),
  reactions: z
    .array(z.object({ reaction: z.string(), count: z.number().int(), me: z.boolean() }))
    .optional()
    .meta({ description: 'history only' }),
})

/** The server-side API: publish, history, presence. Behind `Authorization: Bearer <API_KEY>`. */
export function apiRoutes(deps: { config: Config; hub: Hub; broker: Broker; store?: Store }) {
  const { config, hub, broker } = deps
  const { room, body, data } = messageFields(config.MAX_BODY_CHARS)
  const publishBody = z
    .object({ room: room.optional().meta({ description: `the room (default: DEFAULT_ROOM, here ${config.DEFAULT_ROOM})` }), body, data })
    .meta({ examples: [{ room: config.DEFAULT_ROOM, body: 'Hello from the server', data: { kind: 'notice' } }] })
  const int = (min: number, max: number) =>
    z.coerce.number().int('must be a whole number').min(min, `must be ${min}..${max}`).max(max, `must be ${min}..${max}`)
  const pageQuery = z.object({
    before: int(1, Number.MAX_SAFE_INTEGER).optional().meta({ description: 'only messages with a smaller seq (default: the newest)' }),
    limit: int(1, 100).default(50),
  })
  const roomParams = z.object({ room })
  const presenceQuery = z.object({
    limit: int(1, 1000).default(1000),
    cursor: z.string().regex(PRESENCE_CURSOR, "expected a previous answer's next").optional(),
  })
  const idempotency = z.looseObject({
    'idempotency-key': z
      .string()
      .optional()
      .meta({ description: 'a retry with the same key (within 2 minutes) publishes nothing new and answers the first id and seq' }),
  })

  /** A dependency that is down answers 503 with the reason, not a bare 500. */
  const orUnavailable = async <T>(read: () => Promise<T>) => {
    try {
      return await read()
    } catch (err) {
      const down = broker.problem() ?? deps.store?.problem()
      if (down) return json(503, { error: 'unavailable', reason: down })
      throw err
    }
  }

  return new Elysia({ prefix: '/api' })
    .onTransform(requireApiKey(config))
    .post(
      '/publish',
      async ({ body, headers }) => {
        const target = body.room ?? config.DEFAULT_ROOM
        if (target === '') return status(400, { error: 'bad_request', reason: 'room: required (this server has no default room)' })
        const key = headers['idempotency-key']
        try {
          const a = await hub.publish(target, API_USER, body.body, body.data, key ? dedupeKey('api', target, key.slice(0, 128)) : undefined)
          log.info('api publish', { room: target, msg: a.id, seq: a.seq })
          hub.audit({ event: 'api_publish', room: target, detail: { msg: a.id, seq: a.seq } })
          return { id: a.id, room: target, seq: a.seq }
        } catch (err) {
          if (err instanceof FrameError) return frameErrorResponse(err)
          throw err
        }
      },
      {
        // Before the schema: zod's z.json() recurses and overflows the stack on ~10 000 levels.
        transform: ({ body }: { body: unknown }) => {
          if (deeperThan((body as { data?: unknown } | null)?.data, config.MAX_JSON_DEPTH))
            throw status(400, { error: 'bad_request', reason: `data: nested deeper than ${config.MAX_JSON_DEPTH} levels` })
        },
        ...apiRoute({
          summary: 'Publish a chat message to a room',
          description:
            'Sent as the user `server` (`from.system: true`, which no connection can carry); members of the room on every node receive it as a `chat` frame.',
          tags: ['messages'],
          body: publishBody,
          headers: idempotency,
          response: z.object({ id: z.string(), room: z.string(), seq: z.number().int() }),
          errors: [400, 503],
        }),
      },
    )
    .get(
      '/rooms/:room/messages',
      ({ params, query }) =>
        orUnavailable(async () => {
          const page = await hub.changes.present(params.room, await hub.page(params.room, query.before, query.limit), '')
          return new Response(`{"room":${JSON.stringify(params.room)},"messages":[${page.frames.join(',')}],"more":${page.more}}`, {
            headers: { 'content-type': 'application/json' },
          })
        }),
      apiRoute({
        summary: "A page of a room's history, oldest first",
        tags: ['messages'],
        params: roomParams,
        query: pageQuery,
        response: z.object({
          room: z.string(),
          messages: z.array(ChatFrame),
          more: z.boolean().meta({ description: 'older messages exist' }),
        }),
        errors: [400, 503],
      }),
    )
    .get(
      '/rooms/:room/presence',
      ({ params, query }) =>
        orUnavailable(async () => {
          const [page, count] = await Promise.all([
            broker.presence.page(params.room, query.cursor, query.limit),
            broker.presence.count(params.room),
          ])
          return { room: params.room, users: page.users, count, ...(page.next ? { next: page.next } : {}) }
        }),
      apiRoute({
        summary: 'Who is in a room, cluster-wide',
        description: 'One page of the present users (`limit`, default 1000); `next`, when present, is the `cursor` of the following page.',
        tags: ['rooms'],
        params: roomParams,
        query: presenceQuery,
        response: z.object({
          room: z.string(),
          users: z.array(User),
          count: z.number().int().meta({ description: 'present users, cluster-wide' }),
          next: z.string().optional().meta({ description: 'the cursor of the next page (absent: this is the last)' }),
        }),
        errors: [400, 503],
      }),
    )
}
