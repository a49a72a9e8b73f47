import { Elysia } from 'elysia'
import { z } from 'zod'
import type { Config } from '../config'
import type { Hub } from '../hub/hub'
import { searchFields } from '../protocol/client-frames'
import type { Store } from '../store/types'
import type { Broker } from '../broker/types'
import { ChatFrame } from './api'
import { answerWith, apiRoute, idText, requireApiKey } from './route-spec'

/** GET /api/search: a user's search as the `search` frame answers it (docs/search.md). */
export function searchRoutes(deps: { config: Config; hub: Hub; broker: Broker; store?: Store }) {
  const { config, hub } = deps
  const answer = answerWith(() => deps.store?.problem())
  const f = searchFields()
  const query = z.object({
    user: idText('the user searching: only rooms this user is a member of are searched'),
    q: f.q.meta({ description: 'words (each a prefix of a word of the message) or a substring: partial words, URLs, file names' }),
    room: f.room.meta({ description: 'only this room (the user must be a member: else 403)' }),
    from: f.from.meta({ description: 'only messages sent by this user id' }),
    before: f.before.meta({ description: 'only messages older than this ISO 8601 time, or than the message with this id' }),
    cursor: f.cursor.meta({ description: 'the `cursor` of the previous page' }),
    limit: z.coerce
      .number()
      .int('must be a whole number')
      .min(1, 'must be 1..100')
      .max(100, 'must be 1..100')
      .optional()
      .meta({ description: 'results per page (default 20)' }),
  })
  return new Elysia({ prefix: '/api' }).onTransform(requireApiKey(config)).get(
    '/search',
    ({ query }) =>
      answer(async () => {
        const { user, ...input } = query
        const r = await hub.search.search(user, input)
        return new Response(
          `{"type":"search","results":[${r.results.join(',')}]${r.cursor ? `,"cursor":${JSON.stringify(r.cursor)}` : ''}}`,
          { headers: { 'content-type': 'application/json' } },
        )
      }),
    apiRoute({
      summary: "Search a user's messages",
      description:
        'Newest first, in the rooms the user is a member of; deleted messages never match, edited ones match and show as they stand. Needs PostgreSQL (503 `unavailable` without it). The same answer as the `search` frame.',
      tags: ['search'],
      query,
      response: z.object({
        type: z.literal('search'),
        results: z.array(ChatFrame),
        cursor: z.string().optional().meta({ description: 'present when there may be more: pass it back for the next page' }),
      }),
      errors: [400, 503],
    }),
  )
}
