import { Elysia } from 'elysia'
import { z } from 'zod'
import type { Broker } from '../broker/types'
import { SERVER_ID } from '../broker/message-rules'
import type { Config } from '../config'
import type { Hub } from '../hub/hub'
import { FrameError } from '../core/errors'
import { ACTIONS } from '../hub/moderation'
import type { Action } from '../hub/moderation'
import type { Members, Role } from '../members/types'
import { ROLES, isDirect } from '../members/types'
import { messageFields } from '../protocol/client-frames'
import type { Store } from '../store/types'
import { answerWith, apiRoute, idText, json, requireApiKey, roomName } from './route-spec'

const SERVER = { id: SERVER_ID, name: 'server' }

const id = idText
const room = roomName
const reaction = z
  .string()
  .min(1, 'must be 1..32 characters')
  .max(32, 'must be 1..32 characters')
  .refine((s) => !s.includes('\0'), 'must not contain NUL characters')
const Changed = z.object({
  room: z.string(),
  msg: z.string(),
  seq: z.number().int().optional().meta({ description: "the event's seq; absent when nothing changed" }),
})

/**
 * Message lifecycle and moderation for the app's backend: edits, deletes and reactions on
 * behalf of users, roles, mute/ban/kick, disconnect, and the audit log.
 */
export function moderationRoutes(deps: { config: Config; hub: Hub; broker: Broker; members: Members; store?: Store }) {
  const { config, hub, members, broker, store } = deps
  const { body: bodyField, data } = messageFields(config.MAX_BODY_CHARS)
  const msgParams = z.object({ room, msg: id('a message id') })
  const memberParams = z.object({ room, user: id('a user id') })

  const answer = answerWith(() => broker.problem() ?? store?.problem())

  const named = async (user: string) => ({ id: user, name: (await members.user(user))?.name ?? user })
  const changed = (r: string, msg: string, a: { seq: number; noop?: boolean }) => ({ room: r, msg, ...(a.noop ? {} : { seq: a.seq }) })

  let app = new Elysia({ prefix: '/api' })
    .onTransform(requireApiKey(config))
    .patch(
      '/rooms/:room/messages/:msg',
      ({ params, body }) =>
        answer(async () => {
          const actor = body.user ? await named(body.user) : SERVER
          return changed(params.room, params.msg, await hub.changes.edit(params.room, actor, params.msg, body.body, body.data, !body.user))
        }),
      apiRoute({
        summary: 'Edit a message',
        description: 'With `user`, as that user (the author only); without, as the server. An `edit` event to the room.',
        tags: ['lifecycle'],
        params: msgParams,
        body: z.object({ body: bodyField, data, user: id('edit as this user').optional() }).strict(),
        response: Changed,
        errors: [400, 404, 503],
      }),
    )
    .delete(
      '/rooms/:room/messages/:msg',
      ({ params }) => answer(async () => changed(params.room, params.msg, await hub.changes.remove(params.room, SERVER, params.msg, true))),
      apiRoute({
        summary: 'Delete a message',
        description: 'As the server (a moderator). A `delete` event to the room.',
        tags: ['lifecycle'],
        params: msgParams,
        response: Changed,
        errors: [400, 404, 503],
      }),
    )
  for (const [method, op] of [
    ['post', 'add'],
    ['delete', 'remove'],
  ] as const) {
    // One route per method, built in a loop: Elysia's chained types do not follow a computed method.
    app = (app as unknown as Record<string, (...a: unknown[]) => typeof app>)[method]!(
      '/rooms/:room/messages/:msg/reactions',
      ({ params, body }: { params: { room: string; msg: string }; body: { user: string; reaction: string } }) =>
        answer(async () =>
          changed(params.room, params.msg, await hub.changes.react(params.room, await named(body.user), params.msg, body.reaction, op)),
        ),
      apiRoute({
        summary: op === 'add' ? "Add a user's reaction" : "Remove a user's reaction",
        description: 'A `react` event to the room; nothing (no `seq`) when the user already had it (add) or did not (remove).',
        tags: ['lifecycle'],
        params: msgParams,
        body: z.object({ user: id('the reacting user'), reaction }).strict(),
        response: Changed,
        errors: [400, 404, 409, 503],
      }),
    ) as unknown as typeof app
  }
  app = app.put(
    '/rooms/:room/roles/:user',
    ({ params, body }) =>
      answer(async () => {
        if (isDirect(params.room)) throw new FrameError('forbidden', 'room: a direct room has no roles')
        await hub.moderation.setRole(params.room, params.user, body.role as Role)
        return { room: params.room, user: params.user, role: body.role }
      }),
    apiRoute({
      summary: "Set a user's role in a room",
      description: 'owner | moderator | member. A token claim `roles` can also give one; the higher counts.',
      tags: ['moderation'],
      params: memberParams,
      body: z.object({ role: z.enum(ROLES as [string, ...string[]], 'must be owner, moderator or member') }).strict(),
      response: z.object({ room: z.string(), user: z.string(), role: z.enum(ROLES as [string, ...string[]]) }),
      errors: [400, 503],
    }),
  ) as unknown as typeof app
  for (const action of ACTIONS) {
    app = app.post(
      `/rooms/:room/${action}`,
      ({ params, body }: { params: { room: string }; body: { user: string; seconds?: number; reason?: string } }) =>
        answer(async () => {
          if (isDirect(params.room)) throw new FrameError('forbidden', 'room: a direct room has no moderation')
          if (action === 'mute' && body.seconds === undefined) throw new FrameError('bad_request', 'seconds: is required')
          const seq = await hub.moderation.act(params.room, SERVER, action as Action, await named(body.user), {
            seconds: body.seconds,
            reason: body.reason,
          })
          return { room: params.room, user: body.user, action, seq }
        }),
      apiRoute({
        summary: `${action[0]!.toUpperCase()}${action.slice(1)} a user in a room`,
        description: 'A `moderation` event to the room, by the server; an audit row.',
        tags: ['moderation'],
        params: z.object({ room }),
        body: z
          .object({
            user: id('the user'),
            seconds: z
              .number()
              .int('must be a whole number')
              .min(1, 'must be 1..31536000')
              .max(31_536_000, 'must be 1..31536000')
              .optional()
              .meta({ description: 'mute only: how long' }),
            reason: z.string().max(500, 'must be at most 500 characters').optional(),
          })
          .strict(),
        response: z.object({ room: z.string(), user: z.string(), action: z.string(), seq: z.number().int() }),
        errors: [400, 503],
      }),
    ) as unknown as typeof app
  }
  return app.get(
    '/audit',
    ({ query }) =>
      answer(async () => {
        if (!store) return json(404, { error: 'not_found', reason: 'audit: the audit log needs PostgreSQL (POSTGRES_DSN is not set)' })
        const r = await store.auditList({ room: query.room, user: query.user, before: query.before, limit: query.limit ?? 50 })
        return { entries: r.rows, more: r.more, ...(r.more ? { next: r.rows.at(-1)!.id } : {}) }
      }),
    apiRoute({
      summary: 'The audit log, newest first',
      description: 'Needs PostgreSQL (404 without). Page with `before` = the `next` of the previous page.',
      tags: ['moderation'],
      query: z.object({
        room: room.optional(),
        user: id('a user id').optional(),
        before: z.coerce.number().int('must be a whole number').min(1, 'must be positive').optional(),
        limit: z.coerce.number().int('must be a whole number').min(1, 'must be 1..100').max(100, 'must be 1..100').optional(),
      }),
      response: z.object({
        entries: z.array(
          z.object({
            id: z.number(),
            at: z.string(),
            event: z.string(),
            user: z.string().optional(),
            conn: z.string().optional(),
            node: z.string().optional(),
            room: z.string().optional(),
            detail: z.unknown().optional(),
          }),
        ),
        more: z.boolean(),
        next: z.number().optional(),
      }),
      errors: [400, 404, 503],
    }),
  )
}
