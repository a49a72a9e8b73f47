/**
 * /openapi.json is generated from the route schemas: it must parse, name every /api route the
 * app registers (with its bearer security and error bodies), and its own example for
 * /api/publish must be a request the server accepts.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createApp } from '../../src/app'
import { memoryBroker } from '../../src/broker/memory'
import { loadConfig } from '../../src/config'
import { memoryMembers } from '../../src/members/memory'
import { createMetrics } from '../../src/metrics'
import { configuredUploads } from '../../src/uploads/setup'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from '../helpers/client'
import { startServer } from '../helpers/server'
import type { RunningServer } from '../helpers/server'

const API_KEY = 'openapi-test-key-0123456789'
let s: RunningServer
let spec: any

beforeAll(async () => {
  s = await startServer({ env: { API_KEY } })
  const res = await fetch(`${s.url}/openapi.json`)
  expect(res.status).toBe(200)
  expect(res.headers.get('content-type')).toContain('application/json')
  spec = JSON.parse(await res.text())
})
afterAll(async () => {
  expect(await s.stop()).toBe(0)
})

/** Every /api route of an app built as main.ts builds it, as `METHOD /path/{param}`. */
function registeredApiRoutes(): string[] {
  const config = loadConfig({ API_KEY, LOG_LEVEL: 'silent', UPLOAD_DIR: mkdtempSync(join(tmpdir(), 'openapi-uploads-')) })
  const uploads = configuredUploads(config, {})
  const { app } = createApp({
    config,
    broker: memoryBroker({ historyLimit: 10 }),
    metrics: createMetrics(),
    nodeId: 'spec',
    members: memoryMembers(),
    uploads,
  })
  return app.routes
    .filter((r) => r.path.startsWith('/api/'))
    .map((r) => `${r.method.toUpperCase()} ${r.path.replace(/:(\w+)/g, '{$1}')}`)
    .sort()
}

const operations = () =>
  Object.entries(spec.paths as Record<string, Record<string, any>>).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, op]) => ({ key: `${method.toUpperCase()} ${path}`, op })),
  )

/** Every `$ref` in the document points at something that exists. */
function danglingRefs(node: unknown, at = '#'): string[] {
  if (Array.isArray(node)) return node.flatMap((n, i) => danglingRefs(n, `${at}/${i}`))
  if (!node || typeof node !== 'object') return []
  const out: string[] = []
  for (const [k, v] of Object.entries(node)) {
    if (k === '$ref' && typeof v === 'string') {
      let target: any = spec
      for (const part of v.replace(/^#\//, '').split('/')) target = target?.[part]
      if (!v.startsWith('#/') || target === undefined) out.push(`${at}: ${v}`)
    } else out.push(...danglingRefs(v, `${at}/${k}`))
  }
  return out
}

describe('OpenAPI', () => {
  test('the spec parses as OpenAPI 3.1 with the bearer scheme and no dangling reference', () => {
    expect(spec.openapi).toMatch(/^3\.1\./)
    expect(spec.info).toMatchObject({ title: 'chat-server API', version: expect.any(String) })
    expect(spec.components.securitySchemes.bearer).toEqual({ type: 'http', scheme: 'bearer', description: expect.any(String) })
    expect(danglingRefs(spec)).toEqual([])
  })

  test('every /api route the app registers is in the spec, and nothing else', () => {
    const registered = registeredApiRoutes()
    expect(registered).toContain('POST /api/publish')
    expect(registered).toContain('GET /api/admin/nodes')
    expect(
      operations()
        .map((o) => o.key)
        .sort(),
    ).toEqual(registered)
  })

  test('every operation names the bearer security, its 200 schema and its error bodies', () => {
    for (const { key, op } of operations()) {
      expect({ key, security: op.security }).toEqual({ key, security: [{ bearer: [] }] })
      // The success answer: 200 (201 for what a POST creates), a JSON object or, for a download, the file's bytes.
      const success = (op.responses['200'] ?? op.responses['201'])?.content
      const ok =
        success?.['application/json']?.schema?.type ??
        (success?.['application/octet-stream']?.schema?.format === 'binary' ? 'object' : undefined)
      expect({ key, ok }).toEqual({ key, ok: 'object' })
      for (const code of ['401', '403']) {
        const schema = op.responses[code]?.content?.['application/json']?.schema
        expect({ key, code, required: schema?.required }).toEqual({ key, code, required: ['error'] })
      }
      const takesInput = op.requestBody || (op.parameters ?? []).some((p: any) => p.in === 'path' || p.in === 'query')
      if (takesInput) expect({ key, has400: '400' in op.responses }).toEqual({ key, has400: true })
    }
  })

  test("a request built from the spec's example for /api/publish succeeds and answers the 200 schema", async () => {
    const op = spec.paths['/api/publish'].post
    const media = op.requestBody.content['application/json']
    const example = media.schema.examples[0]
    expect(example.body).toBeString()
    const room = example.room ?? 'general'
    const member = await connect(s.ws, { user: 'reader' })
    expect((await member.request({ type: 'join', room })).type).toBe('joined')

    const res = await fetch(`${s.url}/api/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify(example),
    })
    expect(res.status).toBe(200)
    const out: any = await res.json()
    const ok = op.responses['200'].content['application/json'].schema
    for (const field of ok.required) expect(out[field]).toBeDefined()
    expect(Object.keys(out).sort()).toEqual(Object.keys(ok.properties).sort())
    expect(await member.next({ type: 'chat', room })).toMatchObject({ id: out.id, body: example.body, from: { id: 'server' } })
    member.close()
  })

  test('an error answer has the documented error body', async () => {
    const res = await fetch(`${s.url}/api/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify({ body: 42 }),
    })
    expect(res.status).toBe(400)
    const body: any = await res.json()
    expect(body).toEqual({ error: 'bad_request', reason: 'body: must be a string' })
    const schema = spec.paths['/api/publish'].post.responses['400'].content['application/json'].schema
    expect(Object.keys(body).every((k) => k in schema.properties)).toBe(true)
  })

  test('/docs is a page that loads Swagger UI from this server only', async () => {
    const res = await fetch(`${s.url}/docs`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'")
    const html = await res.text()
    const urls = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!)
    expect(urls.length).toBeGreaterThanOrEqual(3)
    for (const u of urls) {
      expect(u.startsWith('/docs/')).toBe(true)
      expect((await fetch(s.url + u)).status).toBe(200)
    }
    expect(await (await fetch(`${s.url}/docs/init.js`)).text()).toContain("url: '/openapi.json'")
  })
})
