import { Elysia } from 'elysia'
import { z } from 'zod'
import type { Config } from '../config'
import type { NodeStats } from '../broker/node-stats'
import { webBundle, webFile } from './demo-assets' with { type: 'macro' }
import { packageFile } from './package-assets' with { type: 'macro' }
import { apiRoute, requireApiKey } from './route-spec'

// Inlined at build time (see demo-assets.ts): the page, its script with uPlot bundled in, their styles.
const html = webFile('admin.html')
const css = `${webFile('admin.css')}\n${packageFile('uplot/dist/uPlot.min.css')}`
const js = webBundle('admin.ts')

/** The page may load only its own script and style and talk only to this origin (uPlot sizes its canvas by inline style). */
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

const asset =
  (body: string, type: string, extra: Record<string, string> = {}) =>
  () =>
    new Response(body, { headers: { 'content-type': type, 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff', ...extra } })

const scope = {
  scope: z
    .enum(['cluster', 'node'])
    .meta({ description: '`cluster`: every live node, through Redis; `node`: this node only (memory engine, or Redis failing)' }),
  problem: z.string().optional().meta({ description: 'why the view is of this node only although Redis is configured' }),
}
const dependency = z.string().meta({ description: '`ok`, `off` (not configured) or what is wrong' })
const NodeStat = z.object({
  id: z.string(),
  version: z.string(),
  startedAt: z.string(),
  uptimeS: z.number().int(),
  connections: z.number().int(),
  rooms: z.number().int().meta({ description: 'rooms with members on this node' }),
  msgInPerS: z.number().meta({ description: 'chat messages this node accepted per second' }),
  msgOutPerS: z.number().meta({ description: 'chat and DM frames this node delivered per second' }),
  rssBytes: z.number().int(),
  heapUsedBytes: z.number().int(),
  redis: dependency,
  postgres: dependency,
  draining: z.boolean(),
  at: z.number().int().meta({ description: 'when measured, ms since the epoch' }),
})
const RoomStat = z.object({
  room: z.string(),
  members: z.number().int().meta({ description: 'connections in the room, summed over the nodes that report it among their busiest' }),
  nodes: z.number().int(),
})
const Sample = z.object({ t: z.number().int(), connections: z.number().int(), msgInPerS: z.number(), msgOutPerS: z.number() })

/** The admin API (`/api/admin/*`, same bearer key as the rest of the API) and, when API_KEY is set, the page at /admin. */
export function adminRoutes(deps: { config: Config; stats: NodeStats }) {
  const { config, stats } = deps
  const api = new Elysia({ prefix: '/api/admin' })
    .onTransform(requireApiKey(config))
    .get(
      '/nodes',
      () => stats.nodes(),
      apiRoute({
        summary: 'Every live node of the cluster with its counts, rates, memory and dependencies',
        tags: ['admin'],
        response: z.object({ ...scope, nodes: z.array(NodeStat) }),
      }),
    )
    .get('/rooms', ({ query }) => stats.rooms(query.limit), {
      ...apiRoute({
        summary: 'The busiest rooms, by connections',
        tags: ['admin'],
        query: z.object({
          limit: z.coerce.number().int('must be a whole number').min(1, 'must be 1..100').max(100, 'must be 1..100').default(20),
        }),
        response: z.object({ ...scope, rooms: z.array(RoomStat) }),
        errors: [400],
      }),
    })
    .get(
      '/series',
      () => stats.series(),
      apiRoute({
        summary: 'Connections and message rates over the last ten minutes, summed over the nodes',
        tags: ['admin'],
        response: z.object({ ...scope, intervalMs: z.number().int(), points: z.array(Sample) }),
      }),
    )
  const app = new Elysia({ name: 'admin' }).use(api)
  if (!config.API_KEY) return app
  return app
    .get('/admin', asset(html, 'text/html; charset=utf-8', { 'content-security-policy': CSP, 'referrer-policy': 'no-referrer' }), {
      detail: { hide: true },
    })
    .get('/admin/app.js', asset(js, 'text/javascript; charset=utf-8'), { detail: { hide: true } })
    .get('/admin/style.css', asset(css, 'text/css; charset=utf-8'), { detail: { hide: true } })
}
