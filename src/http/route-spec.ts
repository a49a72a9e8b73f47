import { status } from 'elysia'
import type { ValidationError } from 'elysia'
import { z } from 'zod'
import type { Config } from '../config'
import { ROOM_PATTERN } from '../config'
import { safeEqual } from '../auth/compare'
import { FrameError } from '../core/errors'

/**
 * One route of the bearer-key API, declared once: its zod schemas validate the request and
 * describe it in /openapi.json, with the error bodies it can answer and the bearer security.
 *
 *   new Elysia({ prefix: '/api' })
 *     .onTransform(requireApiKey(config))
 *     .get('/x/:id', handler, apiRoute({ summary, tags: ['x'], params, response, errors: [400, 503] }))
 *
 * Bad input answers `{"error":"bad_request","reason":"field: message"}` (see `validationReason`),
 * a missing key 401, an unset API_KEY 403, before the body is even looked at.
 */

/** A JSON answer with a status (the error bodies below, or an already-encoded page). */
export const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } })

/** The HTTP status of a frame error code, for routes that call the hub. */
const STATUS: Record<string, number> = {
  bad_request: 400,
  forbidden: 403,
  not_found: 404,
  limit: 409,
  closed: 409,
  slow_mode: 429,
  unavailable: 503,
}

/** A FrameError from the hub as the API answers it: its code and reason, with the matching status. */
export const frameErrorResponse = (err: FrameError) => json(STATUS[err.code] ?? 400, { error: err.code, reason: err.message })

/**
 * Runs a route's work: a FrameError from the hub becomes its JSON error with the matching
 * status; anything else while a dependency (`problem()`) is down becomes 503.
 */
export const answerWith =
  (problem: () => string | undefined) =>
  async <T>(work: () => Promise<T>) => {
    try {
      return await work()
    } catch (err) {
      if (err instanceof FrameError) return frameErrorResponse(err)
      const down = problem()
      if (down) return json(503, { error: 'unavailable', reason: down })
      throw err
    }
  }

/** An id or name in a path or body: 1..64 characters, no control characters. */
export const idText = (what: string) =>
  z
    .string()
    .min(1, 'must not be empty')
    .max(64, 'must be at most 64 characters')
    .refine((s) => !/[\u0000-\u001f]/.test(s), 'must hold no control characters')
    .meta({ description: what })

/** A room name, as rooms are named everywhere. */
export const roomName = z.string().regex(ROOM_PATTERN, 'must be 1..64 of A-Z a-z 0-9 _ . : -')

/** Every 4xx/5xx body of the API. */
export const ErrorBody = z
  .object({
    error: z.string().meta({ description: 'a stable code: bad_request, unauthorized, api_disabled, unavailable, …' }),
    reason: z.string().optional().meta({ description: 'what exactly is wrong, e.g. `body: must not be empty`' }),
  })
  .meta({ examples: [{ error: 'bad_request', reason: 'body: must not be empty' }] })

const ERRORS = {
  400: 'Bad input: `reason` names the field and what is wrong with it',
  401: 'No or wrong bearer key (`{"error":"unauthorized","reason":"bad_api_key"}`)',
  403: 'The API is off: API_KEY is not set (`{"error":"api_disabled"}`)',
  404: 'Not found',
  409: 'Conflict with the current state',
  503: 'A dependency (Redis, PostgreSQL) is down or the node cannot take the request now: `reason` says which',
} as const
export type ErrorStatus = keyof typeof ERRORS

/** Set when the body could not be read as JSON: answered 400 after the key check, not before. */
const NOT_JSON = Symbol('not JSON')

/** Reads any body as JSON (whatever its content-type, as the API always did); never throws. */
async function jsonBody({ request }: { request: Request }) {
  const text = await request.text()
  if (!text.trim()) return null // no body: the route's schema says whether that is fine
  try {
    return JSON.parse(text)
  } catch {
    return { [NOT_JSON]: true }
  }
}

interface RouteSpec<B, Q, P, H, R> {
  summary: string
  description?: string
  tags: string[]
  body?: B
  query?: Q
  params?: P
  headers?: H
  /** The 200 answer. */
  response: R
  /** Error statuses beyond 401 and 403 (which every bearer route has). */
  errors?: ErrorStatus[]
}

const errorResponse = (code: ErrorStatus) => ErrorBody.meta({ description: ERRORS[code] })

/** Elysia route options (schemas, parser, OpenAPI detail) for one bearer-key API route. */
export function apiRoute<
  B extends z.ZodType | undefined = undefined,
  Q extends z.ZodType | undefined = undefined,
  P extends z.ZodType | undefined = undefined,
  H extends z.ZodType | undefined = undefined,
  R extends z.ZodType = z.ZodType,
>(spec: RouteSpec<B, Q, P, H, R>) {
  const errors = [...new Set<ErrorStatus>([...(spec.errors ?? []), 401, 403])].sort()
  return {
    // jsonBody reads every body; 'json' after it is never reached, it names the content type in the spec.
    ...(spec.body ? { parse: [jsonBody, 'json' as const] } : {}),
    body: spec.body as B,
    query: spec.query as Q,
    params: spec.params as P,
    headers: spec.headers as H,
    response: { 200: spec.response, ...Object.fromEntries(errors.map((c) => [c, errorResponse(c)])) } as { 200: R } & Record<
      number,
      z.ZodType
    >,
    detail: { summary: spec.summary, description: spec.description, tags: spec.tags, security: [{ bearer: [] }] },
  }
}

/**
 * The bearer-key check, as a transform hook: it runs before validation, so a caller without
 * the key learns nothing about the body it sent. Also answers a body that was not JSON.
 */
export function requireApiKey(config: Pick<Config, 'API_KEY'>) {
  return ({ headers, body }: { headers: Record<string, string | undefined>; body: unknown }) => {
    if (!config.API_KEY) throw status(403, { error: 'api_disabled' })
    const auth = headers.authorization ?? ''
    const key = auth.startsWith('Bearer ') ? auth.slice(7) : ''
    if (!safeEqual(key, config.API_KEY)) throw status(401, { error: 'unauthorized', reason: 'bad_api_key' })
    if (body && typeof body === 'object' && NOT_JSON in body) throw status(400, { error: 'bad_request', reason: 'body: not valid JSON' })
  }
}

/** `field: message` of the first problem Elysia's validation found (zod issue or TypeBox error). */
export function validationReason(error: Pick<ValidationError, 'valueError' | 'type'>): string {
  const issue = error.valueError as { path?: unknown; message?: string } | undefined
  const path = Array.isArray(issue?.path)
    ? issue.path.map((p) => (typeof p === 'object' && p && 'key' in p ? String(p.key) : String(p))).join('.')
    : typeof issue?.path === 'string'
      ? issue.path.replace(/^\//, '').replaceAll('/', '.')
      : ''
  return `${path || error.type || 'body'}: ${issue?.message ?? 'invalid'}`.slice(0, 300)
}

/** The bearer scheme every API route names, for the spec's components. */
export const bearerScheme = { bearer: { type: 'http', scheme: 'bearer', description: 'the API_KEY of the server' } } as const

/**
 * zod → the JSON Schema put in the spec: the request's shape (`io: 'input'`: a field with a
 * default is optional), without `$schema`, and a recursive definition (any JSON value, as
 * `data` is) written as an open schema, since a `$defs` reference cannot resolve inside
 * the OpenAPI document.
 */
export function zodToOpenApi(schema: z.ZodType): Record<string, unknown> {
  const out = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>
  delete out.$schema
  const defs = out.$defs as Record<string, unknown> | undefined
  delete out.$defs
  if (!defs) return out
  const inline = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(inline)
    if (!v || typeof v !== 'object') return v
    const o = v as Record<string, unknown>
    if (typeof o.$ref === 'string' && o.$ref.startsWith('#/$defs/')) return { description: 'any JSON value' }
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, inline(x)]))
  }
  return inline(out) as Record<string, unknown>
}
