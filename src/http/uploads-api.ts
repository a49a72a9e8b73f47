import { Elysia } from 'elysia'
import type { Broker } from '../broker/types'
import type { Config } from '../config'
import type { Authenticate } from '../auth/anonymous'
import { USER_ID_PATTERN } from '../auth/anonymous'
import { safeEqual } from '../auth/compare'
import type { Members } from '../members/types'
import { isDirect } from '../members/types'
import { log } from '../log'
import { UploadError, attachmentOf } from '../uploads/service'
import type { Upload, Uploads } from '../uploads/service'
import { json } from './route-spec'
import { contentDisposition } from '../uploads/download-name'

/**
 * Every download: the type we sniffed, never sniffed again by the browser; no page or script
 * of an upload ever runs on this origin (sandbox, nothing loads).
 */
const downloadHeaders = (u: Upload) => ({
  'content-type': u.type.startsWith('text/') ? `${u.type}; charset=utf-8` : u.type,
  'content-length': String(u.size),
  'content-disposition': contentDisposition(u.type, u.name),
  'x-content-type-options': 'nosniff',
  'content-security-policy': "default-src 'none'; sandbox",
  'cache-control': 'private, max-age=300',
  'referrer-policy': 'no-referrer',
})

type Who = { user: string; anonymous?: boolean } | Response

const AttachmentSchema = {
  type: 'object',
  required: ['id', 'name', 'type', 'size', 'url'],
  properties: {
    id: { type: 'string' },
    name: { type: 'string', description: 'the file name as uploaded, without any path' },
    type: { type: 'string', description: 'the MIME type sniffed from the content' },
    size: { type: 'integer', description: 'bytes' },
    url: { type: 'string', description: 'the stable path to GET it: `/api/uploads/{id}`' },
    width: { type: 'integer', description: 'images whose header gives it' },
    height: { type: 'integer' },
  },
} as const
const ErrorSchema = { type: 'object', required: ['error'], properties: { error: { type: 'string' }, reason: { type: 'string' } } } as const
const err = (description: string) => ({ description, content: { 'application/json': { schema: ErrorSchema } } })
const AUTH =
  "Authenticated as on `/ws`: the user's token (`Authorization: Bearer <token>` or `?token=`), or `?user=` when auth is off; or the API key (`Authorization: Bearer <API_KEY>`) with `?user=` naming the user."
const idParam = { name: 'id', in: 'path', required: true, schema: { type: 'string' } }

/**
 * POST /api/uploads and GET /api/uploads/:id: attachments' files. The body of an upload is
 * read as a stream (never parsed by the framework), see uploads/receive.ts.
 */
export function uploadsRoutes(deps: { config: Config; uploads: Uploads; authenticate: Authenticate; members: Members; broker: Broker }) {
  const { config, uploads, authenticate, members, broker } = deps

  /** Who is asking: the API key naming a user, else as the upgrade of /ws authenticates. */
  async function who(request: Request, query: Record<string, string | undefined>): Promise<Who> {
    const authorization = request.headers.get('authorization') ?? undefined
    if (config.API_KEY && authorization?.startsWith('Bearer ') && safeEqual(authorization.slice(7), config.API_KEY)) {
      if (!query.user || !USER_ID_PATTERN.test(query.user))
        return json(400, { error: 'bad_request', reason: 'user: required with the API key (1..64 of A-Z a-z 0-9 _ . : @ -)' })
      return { user: query.user }
    }
    const r = await authenticate({ query, headers: { authorization } })
    if ('reason' in r)
      return r.status && r.status !== 401
        ? json(r.status, { error: 'bad_request', reason: r.reason })
        : json(401, { error: 'unauthorized', reason: r.reason })
    return { user: r.user.id, anonymous: r.ephemeral }
  }

  /** Member of the room (durably, or live in it now), or one of a direct room's pair. */
  async function member(room: string, user: string): Promise<boolean> {
    if (await members.get(room, user)) return true
    if (isDirect(room)) {
      const pair = await members.pair(room)
      return !!pair && (pair[0].id === user || pair[1].id === user)
    }
    return (await broker.presence.list(room)).some((u) => u.id === user)
  }

  /** The upload `user` may read, or the refusal. */
  async function readable(id: string, user: string): Promise<Upload | Response> {
    const u = await uploads.get(id)
    if (!u) return json(404, { error: 'not_found', reason: `upload: no upload ${id}` })
    if (!(await uploads.mayRead(u, user, member)))
      return json(403, { error: 'forbidden', reason: 'upload: only its uploader and members of a room where it was sent may read it' })
    return u
  }

  const uploadError = (e: unknown) => {
    if (e instanceof UploadError) return json(e.status, { error: e.code, reason: e.message })
    log.error('upload failed', { err: e })
    return json(503, { error: 'unavailable', reason: 'upload: could not be stored' })
  }

  return new Elysia({ prefix: '/api/uploads' })
    .post(
      '',
      async ({ request, query }) => {
        const w = await who(request, query)
        if (w instanceof Response) return w
        if (w.anonymous)
          return json(401, { error: 'unauthorized', reason: 'user: an anonymous user cannot upload (give ?user= or a token)' })
        try {
          const u = await uploads.accept(request, w.user)
          log.info('upload', { upload: u.id, user: w.user, type: u.type, size: u.size })
          return json(201, { upload: attachmentOf(u) })
        } catch (e) {
          return uploadError(e)
        }
      },
      {
        // The body is read as a stream by receive(), never parsed (and buffered) by Elysia.
        parse: 'none',
        detail: {
          summary: 'Upload a file to attach to messages',
          description: `${AUTH} Multipart body with the field \`file\`. Its type is sniffed from its content and must match the declared one and UPLOAD_TYPES; its size is checked while it streams in (UPLOAD_MAX_BYTES). An upload no message carries is removed after UPLOAD_ORPHAN_TTL_S.`,
          tags: ['uploads'],
          security: [{ bearer: [] }],
          requestBody: {
            required: true,
            content: {
              'multipart/form-data': {
                schema: { type: 'object', required: ['file'], properties: { file: { type: 'string', format: 'binary' } } },
              },
            },
          },
          responses: {
            201: {
              description: 'Stored',
              content: {
                'application/json': { schema: { type: 'object', required: ['upload'], properties: { upload: AttachmentSchema } } },
              },
            },
            400: err('Not a multipart body with a field `file`, or `user` missing with the API key'),
            401: err('No or bad credentials, or an anonymous user'),
            403: err('Not used by this route'),
            413: err('`too_large`: past UPLOAD_MAX_BYTES (cut while streaming)'),
            415: err('`unsupported_type`: the content is not an allowed type, or not the type declared'),
            503: err('The storage or the metadata engine is down'),
          },
        } as never,
      },
    )
    .get(
      '/:id',
      async ({ request, query, params }) => {
        let user: string
        if (query.sig !== undefined) {
          const v = uploads.verify(params.id, query)
          if ('reason' in v) return json(403, { error: 'forbidden', reason: v.reason })
          user = v.user
        } else {
          const w = await who(request, query)
          if (w instanceof Response) return w
          user = w.user
        }
        const u = await readable(params.id, user)
        if (u instanceof Response) return u
        const body = await uploads.open(u.id)
        if (!body) return json(404, { error: 'not_found', reason: `upload: ${u.id} is no longer stored` })
        return new Response(body, { headers: downloadHeaders(u) })
      },
      {
        detail: {
          summary: 'Download an upload',
          description: `${AUTH} Or a signed URL (\`?as=&exp=&sig=\`, from POST /api/uploads/{id}/link) with no other credential. Allowed to its uploader and to members of a room where it was sent; else 403. Images, video and audio are served inline, anything else as a download, under a name whose extension follows the served type (\`evil.html\` served as text/plain is saved as \`evil.html.txt\`); always \`X-Content-Type-Options: nosniff\` and \`Content-Security-Policy: sandbox\`.`,
          tags: ['uploads'],
          security: [{ bearer: [] }],
          parameters: [idParam],
          responses: {
            200: {
              description: 'The file, with its sniffed type as Content-Type',
              content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } },
            },
            400: err('`user` missing with the API key'),
            401: err('No or bad credentials'),
            403: err('Not its uploader nor a member of a room where it was sent; or a bad or expired signed URL'),
            404: err('No such upload'),
          },
        } as never,
      },
    )
    .post(
      '/:id/link',
      async ({ request, query, params }) => {
        const w = await who(request, query)
        if (w instanceof Response) return w
        const u = await readable(params.id, w.user)
        if (u instanceof Response) return u
        return uploads.signedUrl(u.id, w.user)
      },
      {
        parse: 'none',
        detail: {
          summary: 'A signed, short-lived download URL',
          description: `${AUTH} Answers a URL that reads the upload as this user, with no other credential, until \`expires\` (UPLOAD_URL_TTL_S): for an \`<img src>\`, which cannot send a token. Access is checked again when it is used.`,
          tags: ['uploads'],
          security: [{ bearer: [] }],
          parameters: [idParam],
          responses: {
            200: {
              description: 'The signed URL',
              content: {
                'application/json': {
                  schema: {
                    type: 'object',
                    required: ['url', 'expires'],
                    properties: { url: { type: 'string' }, expires: { type: 'string', description: 'ISO 8601' } },
                  },
                },
              },
            },
            400: err('`user` missing with the API key'),
            401: err('No or bad credentials'),
            403: err('Not allowed to read it'),
            404: err('No such upload'),
          },
        } as never,
      },
    )
}
