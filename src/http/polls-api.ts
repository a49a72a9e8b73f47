import { Elysia } from 'elysia'
import { z } from 'zod'
import type { Broker } from '../broker/types'
import { SERVER_ID } from '../broker/message-rules'
import type { Config } from '../config'
import type { Hub } from '../hub/hub'
import type { Store } from '../store/types'
import { answerWith, apiRoute, requireApiKey, roomName } from './route-spec'

const SERVER = { id: SERVER_ID, name: 'server' }

/** PUT /api/rooms/:room/settings (v4: slow mode), as the server: a `settings` event of the room. */
export function pollsRoutes(deps: { config: Config; hub: Hub; broker: Broker; store?: Store }) {
  const { config, hub, broker } = deps
  const answer = answerWith(() => broker.problem() ?? deps.store?.problem())
  return new Elysia({ prefix: '/api' }).onTransform(requireApiKey(config)).put(
    '/rooms/:room/settings',
    ({ params, body }) =>
      answer(async () => {
        const a = await hub.polls.settings(params.room, SERVER, body.slow_mode_s, true)
        return { room: params.room, slow_mode_s: body.slow_mode_s, seq: a.seq }
      }),
    apiRoute({
      summary: "Change a room's settings",
      description:
        'As the server (an owner). A `settings` event to the room; `slow_mode_s` > 0: a member waits that long between chats (owners and moderators exempt), 0: off.',
      tags: ['moderation'],
      params: z.object({ room: roomName }),
      body: z
        .object({
          slow_mode_s: z.number('must be a number').int('must be a whole number').min(0, 'must be 0..3600').max(3600, 'must be 0..3600'),
        })
        .strict(),
      response: z.object({ room: z.string(), slow_mode_s: z.number().int(), seq: z.number().int() }),
      errors: [400, 503],
    }),
  )
}
