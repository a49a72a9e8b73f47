import { z } from 'zod'
import { ROOM_PATTERN } from '../core/room'
import { deeperThan } from './json-depth'

/** A presence page's cursor (broker/presence.ts): the ledger's cursor (digits), a dot, an offset. */
export const PRESENCE_CURSOR = /^[0-9]{0,20}\.[0-9]{1,6}$/

/** True when a JSON value holds a NUL character in any string or key (PostgreSQL cannot store it). */
export function hasNul(v: unknown): boolean {
  if (typeof v === 'string') return v.includes('\0')
  if (v === null || typeof v !== 'object') return false
  if (Array.isArray(v)) return v.some(hasNul)
  for (const k in v) if (k.includes('\0') || hasNul((v as Record<string, unknown>)[k])) return true
  return false
}

/** The fields a message is made of, shared by the frames and the publish API. */
export function messageFields(maxBodyChars: number) {
  return {
    room: z.string().regex(ROOM_PATTERN, 'must be 1..64 of A-Z a-z 0-9 _ . : -'),
    body: z
      .string('must be a string')
      .min(1, 'must not be empty')
      .max(maxBodyChars, `must be at most ${maxBodyChars} characters`)
      .refine((s) => !s.includes('\0'), 'must not contain NUL characters'),
    // NUL cannot be stored (PostgreSQL text and jsonb refuse it): refused here, for every engine alike.
    data: z
      .json()
      .refine((d) => !hasNul(d), 'must not contain NUL characters')
      .optional(),
  }
}

const b64url = (bytes: number, what: string) =>
  z
    .string(`must be a string (${what})`)
    .refine(
      (v) => /^[A-Za-z0-9_-]+={0,2}$/.test(v) && Buffer.from(v, 'base64url').length === bytes,
      `must be ${what}: ${bytes} bytes, base64url`,
    )

/** A Web Push subscription as PushManager.subscribe() gives it (the JSON of PushSubscription). */
export const webPushSubscription = z.object(
  {
    endpoint: z
      .string('must be a string')
      .max(2048, 'must be at most 2048 characters')
      // The server POSTs to it: where it may go is the outbound rule's (push refuse(): https to
      // public addresses, plain http only to OUTBOUND_ALLOW), checked with the server's config.
      .refine((v) => URL.canParse(v) && ['https:', 'http:'].includes(new URL(v).protocol), 'must be an https:// URL'),
    keys: z.object(
      {
        p256dh: b64url(65, 'the P-256 public key').refine(
          (v) => Buffer.from(v, 'base64url')[0] === 4,
          'must be an uncompressed P-256 point',
        ),
        auth: b64url(16, 'the auth secret'),
      },
      'must be an object {p256dh, auth}',
    ),
  },
  'must be an object {endpoint, keys}',
)

export const DEVICE_ID = /^[A-Za-z0-9_.:-]{1,128}$/

/** A device's provider and address: `token` for FCM (opaque) and APNs (hex), `subscription` for Web Push. */
export const deviceAddress = z
  .object({
    kind: z.enum(['webpush', 'fcm', 'apns'], 'must be webpush, fcm or apns'),
    token: z.string('must be a string').min(1, 'must not be empty').max(4096, 'must be at most 4096 characters').optional(),
    subscription: webPushSubscription.optional(),
  })
  .superRefine((d, ctx) => {
    const issue = (path: string, message: string) => ctx.addIssue({ code: 'custom', path: [path], message })
    if (d.kind === 'webpush') {
      if (!d.subscription) issue('subscription', 'is required for kind webpush ({endpoint, keys:{p256dh, auth}})')
      if (d.token !== undefined) issue('token', 'is for fcm and apns; webpush takes a subscription')
    } else {
      if (d.token === undefined) issue('token', `is required for kind ${d.kind}`)
      else if (d.kind === 'apns' && !/^[0-9a-fA-F]{64,200}$/.test(d.token))
        issue('token', 'must be an APNs device token: 64..200 hex digits')
      else if (d.kind === 'fcm' && !/^[A-Za-z0-9_:.-]+$/.test(d.token))
        issue('token', 'must be an FCM registration token (A-Z a-z 0-9 _ : . -)')
      if (d.subscription !== undefined) issue('subscription', 'is for webpush only')
    }
  })
/** The fields of a search, shared by the `search` frame and GET /api/search (docs/search.md). */
export function searchFields() {
  const text = (max: number, what: string) =>
    z
      .string(`must be ${what}`)
      .min(1, 'must not be empty')
      .max(max, `must be at most ${max} characters`)
      .refine((s) => !s.includes('\0'), 'must not contain NUL characters')
  return {
    q: text(200, 'a string').refine((s) => s.trim().length > 0, 'must not be blank'),
    room: z.string('must be a room name').regex(ROOM_PATTERN, 'must be 1..64 of A-Z a-z 0-9 _ . : -').optional(),
    from: text(64, 'a user id').optional(),
    before: text(64, 'an ISO 8601 time or a message id').optional(),
    cursor: text(512, 'the cursor of a previous answer').optional(),
    limit: z.number('must be a number').int('must be a whole number').min(1, 'must be 1..100').max(100, 'must be 1..100').optional(),
  }
}

/** The longest a poll stays open by itself (`closes_at`): a year. */
export const POLL_MAX_OPEN_MS = 366 * 24 * 3600_000

/** A poll a `chat` carries (v4): its question, 2..10 options, and how it is answered. */
export function pollFields() {
  const text = (max: number) =>
    z
      .string('must be a string')
      .min(1, `must be 1..${max} characters`)
      .max(max, `must be 1..${max} characters`)
      .refine((s) => !s.includes('\0'), 'must not contain NUL characters')
      .refine((s) => s.trim().length > 0, 'must not be blank')
  return z.object(
    {
      question: text(300),
      options: z.array(text(100), 'must be an array of 2..10 strings').min(2, 'must be 2..10 options').max(10, 'must be 2..10 options'),
      multiple: z.boolean('must be true or false').optional(),
      anonymous: z.boolean('must be true or false').optional(),
      closes_at: z
        .string('must be an ISO 8601 time')
        .max(40, 'must be an ISO 8601 time')
        .refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO 8601 time')
        .optional(),
    },
    'must be an object {question, options, multiple?, anonymous?, closes_at?}',
  )
}

/** The frames a client may send, as zod schemas built for the configured limits. */
export function clientFrameSchemas(maxBodyChars: number) {
  const id = z.string().max(64, 'must be at most 64 characters').optional()
  const { room, body, data } = messageFields(maxBodyChars)
  const seq = z.number().int('must be a whole number').min(0, 'must not be negative')
  const msg = z.string('must be a message id').min(1, 'must not be empty').max(64, 'must be at most 64 characters')
  const reaction = z
    .string('must be a string')
    .min(1, 'must be 1..32 characters')
    .max(32, 'must be 1..32 characters')
    .refine((s) => !s.includes('\0'), 'must not contain NUL characters')
  const target = z.string('must be a user id').min(1, 'must not be empty').max(64, 'must be at most 64 characters')
  const reason = z
    .string('must be a string')
    .max(500, 'must be at most 500 characters')
    .refine((s) => !s.includes('\0'), 'must not contain NUL characters')
  const limit = z.number().int('must be a whole number').min(1, 'must be 1..100').max(100, 'must be 1..100')
  /** Upload ids (POST /api/uploads) the message carries; each is checked to be the sender's. */
  const attachments = z
    .array(
      z.string('must be an upload id').min(1, 'must not be empty').max(64, 'must be at most 64 characters'),
      'must be an array of upload ids',
    )
    .max(10, 'must be at most 10 upload ids')
    .optional()

  /** When a scheduled message is sent (PROTOCOL-v4); how far ahead is checked when it is scheduled. */
  const sendAt = z
    .string('must be an ISO 8601 time')
    .max(64, 'must be an ISO 8601 time')
    .refine((s) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(s) && !Number.isNaN(Date.parse(s)), 'must be an ISO 8601 time')
    .optional()

  return {
    chat: z.object({
      type: z.literal('chat'),
      room: room.optional(),
      body,
      data,
      reply_to: msg.optional(),
      attachments,
      poll: pollFields().optional(),
      send_at: sendAt,
      id,
    }),
    edit: z.object({ type: z.literal('edit'), room, msg, body, data, id }),
    delete: z.object({ type: z.literal('delete'), room, msg, id }),
    react: z.object({ type: z.literal('react'), room, msg, reaction, id }),
    unreact: z.object({ type: z.literal('unreact'), room, msg, reaction, id }),
    mute: z.object({
      type: z.literal('mute'),
      room,
      user: target,
      seconds: z.number().int('must be a whole number').min(1, 'must be 1..31536000').max(31_536_000, 'must be 1..31536000'),
      id,
    }),
    unmute: z.object({ type: z.literal('unmute'), room, user: target, id }),
    ban: z.object({ type: z.literal('ban'), room, user: target, reason: reason.optional(), id }),
    unban: z.object({ type: z.literal('unban'), room, user: target, id }),
    kick: z.object({ type: z.literal('kick'), room, user: target, reason: reason.optional(), id }),
    join: z.object({
      type: z.literal('join'),
      room,
      since: seq.optional(),
      epoch: z.string().max(64).optional(),
      member: z.boolean('must be true or false').optional(),
      id,
    }),
    leave: z.object({ type: z.literal('leave'), room, member: z.boolean('must be true or false').optional(), id }),
    rooms: z.object({
      type: z.literal('rooms'),
      before: z.string().max(512, 'must be at most 512 characters').optional(),
      limit: limit.optional(),
      id,
    }),
    read: z.object({ type: z.literal('read'), room, seq, thread: msg.optional(), id }),
    dm: z.object({
      type: z.literal('dm'),
      to: z.string().min(1, 'must not be empty').max(64, 'must be at most 64 characters'),
      body,
      data,
      attachments,
      send_at: sendAt,
      id,
    }),
    history: z.object({
      type: z.literal('history'),
      room,
      before: seq.optional(),
      limit: limit.optional(),
      thread: msg.optional(),
      id,
    }),
    // v4: polls and slow mode
    vote: z.object({
      type: z.literal('vote'),
      room,
      msg,
      options: z
        .array(
          z.number('must be a number').int('must be a whole number').min(0, 'must not be negative'),
          'must be an array of option indexes',
        )
        .max(10, 'must be at most 10 option indexes'),
      id,
    }),
    close_poll: z.object({ type: z.literal('close_poll'), room, msg, id }),
    settings: z.object({
      type: z.literal('settings'),
      room,
      slow_mode_s: z.number('must be a number').int('must be a whole number').min(0, 'must be 0..3600').max(3600, 'must be 0..3600'),
      id,
    }),
    pin: z.object({ type: z.literal('pin'), room, msg, id }),
    unpin: z.object({ type: z.literal('unpin'), room, msg, id }),
    pins: z.object({ type: z.literal('pins'), room, id }),
    search: z.object({ type: z.literal('search'), ...searchFields(), id }),
    presence: z.object({
      type: z.literal('presence'),
      room,
      limit: z.number('must be a number').int('must be a whole number').min(1, 'must be 1..1000').max(1000, 'must be 1..1000').optional(),
      cursor: z.string('must be a string').regex(PRESENCE_CURSOR, "must be a previous answer's next").optional(),
      id,
    }),
    typing: z.object({ type: z.literal('typing'), room, id }),
    refresh: z.object({ type: z.literal('refresh'), token: z.string().min(1, 'must not be empty'), id }),
    ping: z.object({ type: z.literal('ping'), id }),
    device: z
      .object({
        type: z.literal('device'),
        device: z.string('must be a string').regex(DEVICE_ID, 'must be 1..128 of A-Z a-z 0-9 _ . : -'),
        remove: z.literal(true, 'must be true (or absent)').optional(),
        kind: z.enum(['webpush', 'fcm', 'apns'], 'must be webpush, fcm or apns').optional(),
        token: z.unknown().optional(),
        subscription: z.unknown().optional(),
        id,
      })
      .superRefine((f, ctx) => {
        // Removing names the device only; adding checks the address as the API does.
        if (f.remove) return
        const r = deviceAddress.safeParse({ kind: f.kind, token: f.token, subscription: f.subscription })
        if (!r.success)
          for (const i of r.error.issues)
            ctx.addIssue({
              code: 'custom',
              path: i.path,
              message:
                i.code === 'invalid_value' && i.path[0] === 'kind' && f.kind === undefined
                  ? 'is required (webpush, fcm or apns), or remove: true'
                  : i.message,
            })
      }),
    notify: z.object({ type: z.literal('notify'), room, level: z.enum(['all', 'mentions', 'none'], 'must be all, mentions or none'), id }),
    block: z.object({ type: z.literal('block'), user: target, id }),
    // ---- scheduled messages (PROTOCOL-v4) ----
    scheduled: z.object({ type: z.literal('scheduled'), room: room.optional(), id }),
    unschedule: z.object({ type: z.literal('unschedule'), scheduled: msg, id }),
    // ---- threads (PROTOCOL-v4) ----
    threads: z.object({
      type: z.literal('threads'),
      room: room.optional(),
      before: z.string('must be a string').max(64, "must be a previous answer's next").optional(),
      limit: limit.optional(),
      id,
    }),
    unblock: z.object({ type: z.literal('unblock'), user: target, id }),
  }
}

type Schemas = ReturnType<typeof clientFrameSchemas>
export type ClientFrameType = keyof Schemas
/**
 * Every client frame type, read from the schemas (built once here, for their keys): whatever is
 * kept per type (the frames-in counters) cannot miss a type added to the schemas.
 */
export const CLIENT_FRAME_TYPES = Object.keys(clientFrameSchemas(1)) as ClientFrameType[]
export type ClientFrame = { [K in ClientFrameType]: z.output<Schemas[K]> }[ClientFrameType]
export type FrameOf<T extends ClientFrameType> = z.output<Schemas[T]>

export type Decoded = { ok: true; frame: ClientFrame } | { ok: false; message: string; id?: string; type?: string }

/** Validates an already JSON-parsed frame (Elysia parses text that looks like JSON). */
export function frameDecoder(maxBodyChars: number, maxDepth = 32) {
  const schemas = clientFrameSchemas(maxBodyChars)
  /**
   * The schema's answer for a plain chat frame (no `data`, `reply_to` or any other field of the schema) that is valid, without zod: the
   * frame of almost every message. Anything else (invalid, or with `data`) goes to zod, which
   * words the error. The output is zod's: the schema's keys that are present, in its order.
   */
  const otherChatFields = Object.keys(schemas.chat.shape).filter((k) => !['type', 'room', 'body', 'id'].includes(k))
  const plainChat = (o: Record<string, unknown>): ClientFrame | undefined => {
    const { room, body, id } = o
    if (typeof body !== 'string' || body.length === 0 || body.length > maxBodyChars || body.includes('\0')) return undefined
    if (room !== undefined && (typeof room !== 'string' || !ROOM_PATTERN.test(room))) return undefined
    if (id !== undefined && (typeof id !== 'string' || id.length > 64)) return undefined
    for (const k of otherChatFields) if (o[k] !== undefined) return undefined
    const f: Record<string, unknown> = { type: 'chat' }
    if (room !== undefined) f.room = room
    f.body = body
    if (id !== undefined) f.id = id
    return f as ClientFrame
  }
  return function decode(raw: unknown): Decoded {
    if (typeof raw === 'string') return { ok: false, message: 'frame is not valid JSON' }
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return { ok: false, message: 'frame must be a JSON object' }
    const obj = raw as Record<string, unknown>
    const id = typeof obj.id === 'string' && obj.id.length <= 64 ? obj.id : undefined
    const type = obj.type
    if (typeof type !== 'string') return { ok: false, message: 'type: missing or not a string', id }
    const schema = Object.hasOwn(schemas, type) ? schemas[type as ClientFrameType] : undefined
    if (!schema) return { ok: false, message: `type: unknown frame type ${JSON.stringify(type.slice(0, 32))}`, id }
    if (type === 'chat') {
      const f = plainChat(obj)
      if (f) return { ok: true, frame: f }
    }
    if (deeperThan(obj.data, maxDepth)) return { ok: false, message: `data: nested deeper than ${maxDepth} levels`, id, type }
    const result = schema.safeParse(obj)
    if (result.success) return { ok: true, frame: result.data as ClientFrame }
    const issue = result.error.issues[0]!
    const field = issue.path.join('.') || 'frame'
    const given = issue.path.reduce<unknown>((v, k) => (v as Record<PropertyKey, unknown> | undefined)?.[k], obj)
    const message =
      issue.code !== 'invalid_type'
        ? issue.message
        : given === undefined
          ? 'is required'
          : issue.expected === 'int'
            ? 'must be a whole number'
            : `expected ${issue.expected}, got ${Array.isArray(given) ? 'array' : given === null ? 'null' : typeof given}`
    return { ok: false, message: `${field}: ${message}`, id, type }
  }
}
