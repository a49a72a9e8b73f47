/**
 * CORS for the SSE face: a page served from another origin reads its stream with `fetch` and
 * posts its frames, which a browser allows only when the answers name its origin. The rule is
 * the door's (ALLOWED_ORIGINS; unset: any origin): an origin `/ws` admits may use `/sse`, and
 * no other. No credentials are allowed (no cookies: the token is in the Authorization header
 * or the query, and the session id is the POST's capability), so naming the asking origin
 * gives a page nothing it did not hold already.
 */

/** The headers a browser's preflight may ask for: the token (GET /sse), the body's type (POST). */
const ALLOW_HEADERS = 'authorization, content-type'
/** How long a browser may keep a preflight's answer. */
const MAX_AGE_S = '600'

/** True when `origin` may use the face: any origin when `origins` is unset. */
export const originAllowed = (origin: string, origins: readonly string[] | undefined): boolean =>
  origins === undefined || origins.includes(origin)

/** The answer's CORS headers added for an allowed `Origin` (none without one: not a cross-origin request). */
export function withCors(req: Request, res: Response, origins: readonly string[] | undefined): Response {
  const origin = req.headers.get('origin')
  if (origin === null || !originAllowed(origin, origins)) return res
  res.headers.set('access-control-allow-origin', origin)
  res.headers.append('vary', 'Origin')
  return res
}

/** `OPTIONS /sse`, `OPTIONS /sse/:session`: the preflight of a GET with a token, or of a POST with a JSON type. */
export function preflight(req: Request, origins: readonly string[] | undefined): Response {
  const origin = req.headers.get('origin')
  if (origin === null || !originAllowed(origin, origins))
    return Response.json({ error: 'forbidden', reason: 'origin_not_allowed' }, { status: 403, headers: { vary: 'Origin' } })
  return new Response(null, {
    status: 204,
    headers: {
      'access-control-allow-origin': origin,
      'access-control-allow-methods': 'GET, POST, OPTIONS',
      'access-control-allow-headers': ALLOW_HEADERS,
      'access-control-max-age': MAX_AGE_S,
      vary: 'Origin',
    },
  })
}
