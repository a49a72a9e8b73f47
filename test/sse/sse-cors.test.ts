/**
 * CORS on the SSE face: a page of an origin the door admits (ALLOWED_ORIGINS, unset: any) can
 * read its stream and post its frames from another origin (the answers name its origin, the
 * preflight of a GET with a token and of a POST with a JSON type is answered); a foreign
 * origin gets 403 on the preflight, the stream and the POST alike.
 */
import { afterAll, describe, expect, test } from 'bun:test'
import { startServer } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { openSse } from '../helpers/sse'

const servers: RunningServer[] = []
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop('SIGKILL')))
})
async function server(env: Record<string, string>) {
  const s = await startServer({ env: { RATE_LIMIT_PER_SEC: '0', ...env } })
  servers.push(s)
  return s
}
const PAGE = 'https://chat.example'
const EVIL = 'https://evil.example'
const preflightOf = (url: string, origin: string, method: string, headers: string) =>
  fetch(url, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': headers } })

describe('CORS of /sse with ALLOWED_ORIGINS', () => {
  test('an allowed origin: preflights answered, the stream and the POST name the origin; a foreign one: 403 everywhere', async () => {
    const s = await server({ ALLOWED_ORIGINS: `${PAGE},https://other.example` })
    const pre = await preflightOf(`${s.url}/sse`, PAGE, 'GET', 'authorization')
    expect(pre.status).toBe(204)
    expect(pre.headers.get('access-control-allow-origin')).toBe(PAGE)
    expect(pre.headers.get('access-control-allow-methods')).toContain('GET')
    expect(pre.headers.get('access-control-allow-headers')).toContain('authorization')
    expect(pre.headers.get('vary')).toContain('Origin')
    const prePost = await preflightOf(`${s.url}/sse/any.session`, PAGE, 'POST', 'content-type')
    expect(prePost.status).toBe(204)
    expect(prePost.headers.get('access-control-allow-methods')).toContain('POST')
    expect(prePost.headers.get('access-control-allow-headers')).toContain('content-type')

    const e = await openSse(s.url, { user: 'cors-a' }, { origin: PAGE })
    expect(e.res.headers.get('access-control-allow-origin')).toBe(PAGE)
    expect(e.res.headers.get('access-control-allow-credentials')).toBeNull()
    const posted = await fetch(`${s.url}/sse/${e.session}`, {
      method: 'POST',
      headers: { origin: PAGE, 'content-type': 'text/plain;charset=UTF-8' },
      body: JSON.stringify({ type: 'ping', id: 'p1' }),
    })
    expect(posted.status).toBe(202)
    expect(posted.headers.get('access-control-allow-origin')).toBe(PAGE)
    expect(await e.next({ type: 'pong', id: 'p1' })).toMatchObject({ type: 'pong' })
    // A refusal an allowed page must be able to read (here: an unknown session) names it too.
    const gone = await fetch(`${s.url}/sse/nobody.here`, { method: 'POST', headers: { origin: PAGE }, body: '{"type":"ping"}' })
    expect(gone.status).toBe(404)
    expect(gone.headers.get('access-control-allow-origin')).toBe(PAGE)

    const foreignPre = await preflightOf(`${s.url}/sse`, EVIL, 'GET', 'authorization')
    expect(foreignPre.status).toBe(403)
    expect(foreignPre.headers.get('access-control-allow-origin')).toBeNull()
    const foreignGet = await fetch(`${s.url}/sse?user=cors-b`, { headers: { origin: EVIL } })
    expect(foreignGet.status).toBe(403)
    expect(foreignGet.headers.get('access-control-allow-origin')).toBeNull()
    // A plain-text POST needs no preflight in a browser: the server refuses the foreign origin itself.
    const foreignPost = await fetch(`${s.url}/sse/${e.session}`, {
      method: 'POST',
      headers: { origin: EVIL, 'content-type': 'text/plain;charset=UTF-8' },
      body: JSON.stringify({ type: 'ping', id: 'evil' }),
    })
    expect(foreignPost.status).toBe(403)
    expect(await foreignPost.json()).toEqual({ error: 'forbidden', reason: 'origin_not_allowed' })
    expect(foreignPost.headers.get('access-control-allow-origin')).toBeNull()
    await e.request({ type: 'ping' })
    expect(e.frames.some((f) => f.id === 'evil')).toBe(false)
    // Same-origin and non-browser requests carry no Origin: no CORS headers, nothing refused.
    const plain = await fetch(`${s.url}/sse/${e.session}`, { method: 'POST', body: JSON.stringify({ type: 'ping', id: 'p2' }) })
    expect(plain.status).toBe(202)
    expect(plain.headers.get('access-control-allow-origin')).toBeNull()
    e.close()
  })

  test('ALLOWED_ORIGINS unset: any origin may use the face, as /ws admits any', async () => {
    const s = await server({})
    const pre = await preflightOf(`${s.url}/sse`, EVIL, 'GET', 'authorization')
    expect(pre.status).toBe(204)
    expect(pre.headers.get('access-control-allow-origin')).toBe(EVIL)
    const e = await openSse(s.url, { user: 'cors-c' }, { origin: EVIL })
    expect(e.res.headers.get('access-control-allow-origin')).toBe(EVIL)
    e.close()
  })
})
