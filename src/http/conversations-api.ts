import { Elysia } from 'elysia'
import { z } from 'zod'
import type { Broker } from '../broker/types'
import { userTopic } from '../broker/types'
import { SERVER_ID } from '../broker/message-rules'
import { control } from '../protocol/server-frames'
import type { Config } from '../config'
import type { Hub } from '../hub/hub'
import type { Members } from '../members/types'
import { isDirect } from '../members/types'
import type { Store } from '../store/types'
import { ChatFrame, User } from './api'
import { answerWith, apiRoute, idText, json, requireApiKey, roomName } from './route-spec'

const text = idText
const room = roomName
const int = (min: number, max: number) =>
  z.coerce.number().int('must be a whole number').min(min, `must be ${min}..${max}`).max(max, `must be ${min}..${max}`)

const Conversation = z.object({
  room: z.string(),
  kind: z.enum(['room', 'direct']),
  with: User.optional().meta({ description: 'direct rooms: the other user' }),
  seq: z.number().int(),
  epoch: z.string(),
  read: z.number().int().meta({ description: "the user's read marker" }),
  unread: z.number().int().meta({ description: 'messages by others after the marker; 1000 means 1000 or more' }),
  last: ChatFrame.optional(),
})
const Member = z.object({ id: z.string(), name: z.string(), read: z.number().int() })

/** Memberships and conversation lists for the app's backend: `/api/users/:user/rooms`, `/api/rooms/:room/members`; disconnecting a user. */
export function conversationsRoutes(deps: { config: Config; hub: Hub; broker: Broker; members: Members; store?: Store }) {
  const { config, hub, members } = deps
  const userParams = z.object({ user: text('a user id') })
  const memberParams = z.object({ room, user: text('a user id') })

  /** FrameErrors answer with their code; a dependency that is down answers 503; nothing else is hidden. */
  const answer = answerWith(() => deps.broker.problem() ?? deps.store?.problem())

  const unknownUser = (id: string) =>
    json(404, {
      error: 'not_found',
      reason: `user: ${id} is not known here (never connected; PUT a membership with {"name"} to name them)`,
    })

  /** A direct room takes only its own two users. */
  async function directRefuses(r: string, user: string) {
    if (!isDirect(r)) return undefined
    const pair = await members.pair(r)
    if (!pair) return json(404, { error: 'not_found', reason: `room: no direct room ${r}` })
    if (pair[0].id !== user && pair[1].id !== user)
      return json(403, { error: 'forbidden', reason: `room: ${r} is the direct room of two other users` })
    return undefined
  }

  return new Elysia({ prefix: '/api' })
    .onTransform(requireApiKey(config))
    .get(
      '/users/:user/rooms',
      ({ params, query }) =>
        answer(async () => {
          if (!(await members.user(params.user)) && (await members.of(params.user)).length === 0) return unknownUser(params.user)
          const r = await hub.conversations.list(params.user, query.before, query.limit)
          return new Response(
            `{"user":${JSON.stringify(params.user)},"rooms":[${r.conversations.join(',')}],"more":${r.more}${r.next ? `,"next":${JSON.stringify(r.next)}` : ''}}`,
            {
              headers: { 'content-type': 'application/json' },
            },
          )
        }),
      apiRoute({
        summary: "A user's conversation list, most recently active first",
        tags: ['conversations'],
        params: userParams,
        query: z.object({
          before: z.string().max(512).optional().meta({ description: 'the `next` of the previous page' }),
          limit: int(1, 100).default(50),
        }),
        response: z.object({ user: z.string(), rooms: z.array(Conversation), more: z.boolean(), next: z.string().optional() }),
        errors: [400, 404, 503],
      }),
    )
    .get(
      '/rooms/:room/members',
      ({ params, query }) =>
        answer(async () => {
          const page = await members.list(params.room, query.after, query.limit)
          const next = page.more ? page.members.at(-1)!.id : undefined
          return { room: params.room, members: page.members, more: page.more, ...(next ? { next } : {}) }
        }),
      apiRoute({
        summary: "A room's members, by user id",
        tags: ['conversations'],
        params: z.object({ room }),
        query: z.object({
          after: z.string().max(64).optional().meta({ description: 'the `next` of the previous page' }),
          limit: int(1, 1000).default(100),
        }),
        response: z.object({ room: z.string(), members: z.array(Member), more: z.boolean(), next: z.string().optional() }),
        errors: [400, 503],
      }),
    )
    .put(
      '/rooms/:room/members/:user',
      ({ params, body }) =>
        answer(async () => {
          const refused = await directRefuses(params.room, params.user)
          if (refused) return refused
          const known = await members.user(params.user)
          if (!known && !body?.name) return unknownUser(params.user)
          const user = { id: params.user, name: body?.name ?? known!.name }
          const result = await hub.conversations.grant(params.room, user)
          return { room: params.room, user, member: true, added: result.status === 'added', read: result.read! }
        }),
      apiRoute({
        summary: 'Make a user a member of a room',
        description: "The user's connections on every node join the room at once (an unsolicited `joined` with `member: true`).",
        tags: ['conversations'],
        params: memberParams,
        body: z
          .object({ name: text('the display name of a user the server has not seen yet').optional() })
          .strict()
          .nullish()
          .meta({ examples: [{ name: 'Alice' }] }),
        response: z.object({
          room: z.string(),
          user: User,
          member: z.literal(true),
          added: z.boolean().meta({ description: 'false: already a member' }),
          read: z.number().int(),
        }),
        errors: [400, 404, 409, 503],
      }),
    )
    .post(
      '/users/:user/disconnect',
      ({ params, body }) =>
        answer(async () => {
          const code = body?.code ?? 4000
          const reason = body?.reason ?? 'disconnected by the server'
          await deps.broker.relay(userTopic(params.user), control({ ctl: 'close', code, reason }))
          hub.audit({ event: 'moderation', user: params.user, detail: { action: 'disconnect', by: SERVER_ID, code, reason } })
          return { user: params.user, code, reason }
        }),
      apiRoute({
        summary: 'Close every connection of a user, on every node',
        description: 'Each socket of the user is closed with `code` and `reason`. A user with no connection is not an error.',
        tags: ['users'],
        params: userParams,
        body: z
          .object({
            code: z
              .number()
              .int('must be a whole number')
              .refine((n) => n === 1000 || (n >= 4000 && n <= 4999), 'must be 1000 or 4000..4999')
              .optional()
              .meta({ description: 'the close code (default 4000)' }),
            reason: z
              .string()
              .max(120, 'must be at most 120 characters')
              .optional()
              .meta({ description: 'the close reason (default "disconnected by the server")' }),
          })
          .strict()
          .nullish()
          .meta({ examples: [{ code: 4000, reason: 'account suspended' }] }),
        response: z.object({ user: z.string(), code: z.number().int(), reason: z.string() }),
        errors: [400, 503],
      }),
    )
    .delete(
      '/rooms/:room/members/:user',
      ({ params }) =>
        answer(async () => {
          if (!(await hub.conversations.revoke(params.room, params.user)))
            return json(404, { error: 'not_found', reason: `member: ${params.user} is not a member of ${params.room}` })
          return { room: params.room, user: params.user, member: false as const }
        }),
      apiRoute({
        summary: "End a user's membership",
        description: "The user's connections on every node leave the room (`left`).",
        tags: ['conversations'],
        params: memberParams,
        response: z.object({ room: z.string(), user: z.string(), member: z.literal(false) }),
        errors: [400, 404, 503],
      }),
    )
}
