import { safeEqual } from '../auth/compare'
import type { Config } from '../config'

export const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } })

/** The guard of every /api route: `Authorization: Bearer <API_KEY>`; no key configured, no API. */
export function apiKeyGuard(config: Config) {
  return ({ headers }: { headers: Record<string, string | undefined> }) => {
    if (!config.API_KEY) return json(403, { error: 'api_disabled' })
    const auth = headers.authorization ?? ''
    const key = auth.startsWith('Bearer ') ? auth.slice(7) : ''
    if (!safeEqual(key, config.API_KEY)) return json(401, { error: 'unauthorized', reason: 'bad_api_key' })
  }
}
