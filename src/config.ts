import { z } from 'zod'
import { parseRange } from './core/client-ip'
import { parseAllowList } from './core/outbound'
import { parseEventTypes } from './protocol/webhook-events'

export { ROOM_PATTERN } from './core/room'
import { ROOM_PATTERN, ROOM_RULE_PATTERN } from './core/room'

const bool = z
  .string()
  .transform((s) => s.trim().toLowerCase())
  .refine((s) => ['true', 'false', '1', '0', 'yes', 'no', 'on', 'off'].includes(s), 'expected true or false')
  .transform((s) => s === 'true' || s === '1' || s === 'yes' || s === 'on')

const int = (min: number, max = Number.MAX_SAFE_INTEGER, what = 'a whole number') =>
  z
    .string()
    .trim()
    .refine((s) => /^\d+$/.test(s) && Number(s) >= min && Number(s) <= max, `expected ${what} from ${min} to ${max}`)
    .transform(Number)

const url = (protocols: string[]) =>
  z
    .string()
    .trim()
    .refine(
      (s) => {
        try {
          return protocols.includes(new URL(s).protocol)
        } catch {
          return false
        }
      },
      `expected a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}`,
    )

/** A comma list of URLs (a Redis Cluster's seed nodes); one URL is the usual case. */
const urls = (protocols: string[]) =>
  z
    .string()
    .trim()
    .refine(
      (s) => s.split(',').every((u) => url(protocols).safeParse(u).success),
      `expected a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')} (or a comma list of them)`,
    )

/**
 * The outbox's table name goes into SQL as an identifier (and `<name>_failed`, `<name>_notify`
 * beside it, within PostgreSQL's 63 bytes): only names that need no quoting.
 */
export const OUTBOX_TABLE_PATTERN = /^[a-z_][a-z0-9_]{0,47}$/

const text = z.string().min(1, 'must not be empty')
const optional = <T extends z.ZodType>(schema: T) => schema.optional()

/**
 * Every variable the server reads, with its default and a line of help.
 * `.env.example` and `--help` are generated from this table, so they cannot drift.
 */
export const variables = {
  APP_ENV: {
    schema: z.enum(['development', 'production', 'test'], 'expected development, production or test'),
    default: 'development',
    help: '`production`: secrets must be at least 32 characters, and a warning when auth is off',
  },
  HOST: { schema: text, default: '0.0.0.0', help: 'listen address' },
  PORT: { schema: int(0, 65535, 'a port number'), default: '8080', help: 'listen port (0 picks a free one)' },
  NODE_ID: {
    schema: optional(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'expected 1..64 of A-Z a-z 0-9 _ . -')),
    default: undefined,
    help: "this node's name in logs, welcome frames and the cluster (default: random)",
  },
  REDIS_URL: {
    schema: optional(urls(['redis:', 'rediss:'])),
    default: undefined,
    help: 'unset: one node, in-process hub; set: cluster through Redis (with REDIS_CLUSTER=true, a comma list of seed nodes is allowed)',
  },
  REDIS_CLUSTER: {
    schema: bool,
    default: 'false',
    help: '`true`: REDIS_URL names a Redis Cluster (keys per room in one slot, sharded pub/sub)',
  },
  WORKERS: {
    schema: z
      .string()
      .trim()
      .refine((s) => s === 'auto' || (/^\d+$/.test(s) && Number(s) >= 1 && Number(s) <= 256), 'expected a number from 1 to 256 or auto')
      .transform((s) => (s === 'auto' ? navigator.hardwareConcurrency : Number(s))),
    default: '1',
    help: 'server processes sharing PORT (`auto`: one per core); more than 1 needs REDIS_URL',
  },
  REDIS_PREFIX: {
    schema: z.string().regex(/^[A-Za-z0-9_.:-]{0,64}$/, 'expected up to 64 of A-Z a-z 0-9 _ . : -'),
    default: 'chat:',
    help: 'prefix of every Redis key and channel (several clusters can share one Redis)',
  },
  JWT_SECRET: {
    schema: optional(z.string().min(16, 'must be at least 16 characters')),
    default: undefined,
    help: 'shared secret (HS256/384/512); turns auth on',
  },
  JWT_PUBLIC_KEY: {
    schema: optional(z.string().includes('-----BEGIN', { message: 'expected a PEM public key' })),
    default: undefined,
    help: 'PEM public key (RS*, PS*, ES*, EdDSA); turns auth on',
  },
  JWT_JWKS_URL: {
    schema: optional(url(['http:', 'https:'])),
    default: undefined,
    help: 'remote JSON Web Key Set of an external issuer; turns auth on',
  },
  JWT_JWKS_COOLDOWN_S: {
    schema: int(0, 3600, 'seconds'),
    default: '30',
    help: 'after a JWKS fetch, how long a token with an unknown `kid` waits before it may trigger another fetch',
  },
  JWT_ISSUER: { schema: optional(text), default: undefined, help: 'required `iss` claim when set' },
  JWT_AUDIENCE: { schema: optional(text), default: undefined, help: 'required `aud` claim when set' },
  POSTGRES_DSN: {
    schema: optional(url(['postgres:', 'postgresql:'])),
    default: undefined,
    help: 'PostgreSQL for history, users, sessions, audit',
  },
  ENABLE_PERSISTENCE: {
    schema: optional(bool),
    default: undefined,
    help: '`true` when POSTGRES_DSN is set; `true` without a DSN is an error',
  },
  STORE_MAX_BACKLOG: {
    schema: int(1, 10_000_000),
    default: '10000',
    help: 'messages that may wait for PostgreSQL; past it (without Redis) chat answers `unavailable`',
  },
  MESSAGE_RETENTION_DAYS: {
    schema: optional(int(1, 36500, 'a number of days')),
    default: undefined,
    help: 'prune stored messages older than this (unset: keep forever)',
  },
  AUDIT_RETENTION_DAYS: {
    schema: optional(int(1, 36500, 'a number of days')),
    default: undefined,
    help: 'prune audit rows older than this (unset: keep forever)',
  },
  DEFAULT_ROOM: {
    schema: z.string().refine((s) => s === '' || ROOM_PATTERN.test(s), 'expected 1..64 of A-Z a-z 0-9 _ . : - (or empty: no default room)'),
    default: 'general',
    help: 'the room every connection joins; empty (`DEFAULT_ROOM=`): none, and a `chat` must name its room',
    // Empty is a value here (no default room), not "unset".
    keepEmpty: true,
  },
  PRESENCE_EVENTS_MAX: {
    schema: int(0, 1_000_000, 'a number of users'),
    default: '100',
    help: 'up to this many present users a room sends each join and leave as its own `presence` event; above it, `batch` frames',
  },
  PRESENCE_BATCH_MS: {
    schema: int(10, 3_600_000, 'milliseconds'),
    default: '2000',
    help: "above PRESENCE_EVENTS_MAX, a room's joins and leaves are coalesced into at most one `batch` frame per this many ms for the whole cluster (a room above 10 000 present users: longer in proportion)",
  },
  API_KEY: {
    schema: optional(z.string().min(16, 'must be at least 16 characters')),
    default: undefined,
    help: 'bearer key of /api/* (unset: the API answers 403)',
  },
  ALLOWED_ORIGINS: {
    schema: optional(
      z.string().transform((s) =>
        s
          .split(',')
          .map((o) => o.trim())
          .filter(Boolean),
      ),
    ),
    default: undefined,
    help: 'comma list of allowed Origin headers (unset: any)',
  },
  MAX_FRAME_BYTES: { schema: int(256, 16 * 1024 * 1024), default: '65536', help: 'largest client frame; bigger closes with 1009' },
  MAX_BODY_CHARS: { schema: int(1, 1_000_000), default: '4000', help: 'longest message body' },
  RATE_LIMIT_PER_SEC: {
    schema: int(0, 1_000_000, 'a number (0 = no limit)'),
    default: '20',
    help: 'frames per second per connection (0 turns the limit off)',
  },
  RATE_LIMIT_BURST: { schema: int(1, 1_000_000), default: '40', help: 'burst of frames per connection' },
  MAX_BUFFERED_BYTES: {
    schema: int(1024, 1024 * 1024 * 1024),
    default: '1048576',
    help: 'slow-consumer cut-off: a socket with more unsent bytes is closed with 4008',
  },
  HISTORY_TTL_S: {
    schema: int(0, 315_360_000, 'seconds (0 = never)'),
    default: '86400',
    help: "a room's recent log (memory engine, Redis stream) is forgotten once the room has been idle this long (0 = never); with PostgreSQL history still reaches back through the store",
  },
  MAX_ROOMS: {
    schema: int(1, 100_000_000),
    default: '100000',
    help: 'rooms the memory engine keeps; past it the least recently active one nobody is in is forgotten',
  },
  MAX_MEMBERSHIPS: {
    schema: int(1, 100_000),
    default: '500',
    help: 'memberships a user may hold; beyond, a join or grant answers `limit`',
  },
  MAX_REACTIONS_PER_MESSAGE: {
    schema: int(1, 1000),
    default: '50',
    help: 'different reactions one message may carry; beyond, `react` answers `limit`',
  },
  MAX_REACTIONS_PER_USER: {
    schema: int(1, 1000),
    default: '10',
    help: 'reactions one user may put on one message; beyond, `react` answers `limit`',
  },
  PINS_MAX_PER_ROOM: { schema: int(1, 1000), default: '50', help: 'pinned messages one room may hold; beyond, `pin` answers `limit`' },
  HISTORY_LIMIT: { schema: int(1, 10_000_000), default: '1000', help: 'messages kept per room for recovery without PostgreSQL' },
  IDLE_TIMEOUT_S: {
    schema: int(2, 960, 'seconds'),
    default: '60',
    help: 'a client silent for half of this is pinged, and closed when it does not answer within the other half',
  },
  SHUTDOWN_GRACE_S: { schema: int(0, 3600, 'seconds'), default: '10', help: 'how long a drain may take on SIGTERM' },
  LOG_LEVEL: {
    schema: z.enum(['debug', 'info', 'warn', 'error', 'silent'], 'expected debug, info, warn, error or silent'),
    default: 'info',
    help: 'least level logged',
  },
  ENABLE_DEMO: { schema: bool, default: 'true', help: 'serve the demo chat page at /' },
  TLS_CERT_FILE: {
    schema: optional(text),
    default: undefined,
    help: 'PEM certificate (chain) file: the server speaks HTTPS and wss:// on PORT (needs TLS_KEY_FILE)',
  },
  TLS_KEY_FILE: { schema: optional(text), default: undefined, help: 'PEM private key file of TLS_CERT_FILE' },
  MAX_CONNECTIONS: {
    schema: int(0, 10_000_000, 'a number (0 = no limit)'),
    default: '0',
    help: 'open connections per node; more are refused with 429 (0 = no limit)',
  },
  MAX_CONNECTIONS_PER_IP: {
    schema: int(0, 10_000_000, 'a number (0 = no limit)'),
    default: '0',
    help: 'open connections per client address on this node (0 = no limit)',
  },
  MAX_CONNECTIONS_PER_USER: {
    schema: int(0, 10_000_000, 'a number (0 = no limit)'),
    default: '0',
    help: 'open connections per user id, cluster-wide with REDIS_URL (0 = no limit)',
  },
  CONNECT_RATE_PER_SEC: {
    schema: int(0, 10_000_000, 'a number (0 = no limit)'),
    default: '0',
    help: 'new connections a second this node admits, all faces together; past it the upgrade answers 503 with Retry-After (0 = no limit)',
  },
  TRUST_PROXY: {
    schema: optional(
      z
        .string()
        .transform((s) =>
          s
            .split(',')
            .map((a) => a.trim())
            .filter(Boolean),
        )
        .refine((l) => l.every((a) => parseRange(a) !== undefined), 'expected a comma list of IP addresses or CIDRs'),
    ),
    default: undefined,
    help: 'comma list of proxy addresses/CIDRs whose X-Forwarded-For is believed (limits, logs, sessions)',
  },
  JWT_REQUIRE_EXP: {
    schema: optional(bool),
    default: undefined,
    help: 'refuse tokens without `exp` (missing_exp); default true when APP_ENV=production',
  },
  MAX_JSON_DEPTH: {
    schema: int(1, 1000),
    default: '32',
    help: 'deepest nesting of `data` (frames and /api/publish); deeper is a bad_request',
  },
  WEBHOOK_URL: {
    schema: optional(url(['http:', 'https:'])),
    default: undefined,
    help: 'the application\'s endpoint for events (POST {"events":[...]}, signed); unset: no events',
  },
  WEBHOOK_SECRET: {
    schema: optional(z.string().min(16, 'must be at least 16 characters')),
    default: undefined,
    help: 'HMAC-SHA256 key of the Chat-Signature header of every call to the application (events and hook); required with WEBHOOK_URL or HOOK_BEFORE_PUBLISH_URL',
  },
  WEBHOOK_EVENTS: {
    schema: optional(
      z.string().transform((s, ctx) => {
        try {
          return parseEventTypes(s)
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: (err as Error).message })
          return z.NEVER
        }
      }),
    ),
    default: undefined,
    help: 'comma list of event types to send (unset: all), e.g. message.created,user.offline',
  },
  WEBHOOK_BATCH_MAX: { schema: int(1, 10_000), default: '100', help: 'most events in one request' },
  WEBHOOK_BATCH_MS: {
    schema: int(0, 60_000, 'milliseconds'),
    default: '50',
    help: 'once an event waits, how long to wait for more before sending a request that is not full',
  },
  WEBHOOK_TIMEOUT_MS: {
    schema: int(100, 300_000, 'milliseconds'),
    default: '5000',
    help: 'a request without an answer this long failed (and is retried)',
  },
  WEBHOOK_RETRY_S: {
    schema: int(0, 604_800, 'seconds'),
    default: '3600',
    help: 'how long an event is retried (backoff 250 ms doubling to 30 s) before it is given up and counted as failed',
  },
  WEBHOOK_QUEUE_MAX: {
    schema: int(1, 100_000_000),
    default: '100000',
    help: 'events that may wait (per node; with Redis, cluster-wide); past it the oldest are dropped and counted',
  },
  WEBHOOK_CLAIM_MS: {
    schema: int(1000, 3_600_000, 'milliseconds'),
    default: '30000',
    help: 'with Redis: events a node took and did not finish or renew for this long (it died) are taken over by another node',
  },
  HOOK_BEFORE_PUBLISH_URL: {
    schema: optional(url(['http:', 'https:'])),
    default: undefined,
    help: "the application's pre-publish hook: asked before each chat frame is accepted (allow, reject, replace); unset: off",
  },
  HOOK_TIMEOUT_MS: { schema: int(1, 60_000, 'milliseconds'), default: '1000', help: 'how long the pre-publish hook may take to answer' },
  OUTBOX_DSN: {
    schema: optional(url(['postgres:', 'postgresql:'])),
    default: undefined,
    help: "the transactional outbox: PostgreSQL (usually the application's own database) whose OUTBOX_TABLE rows are delivered as chat or dm, each once (docs/outbox.md); unset: off",
  },
  OUTBOX_TABLE: {
    schema: z
      .string()
      .regex(OUTBOX_TABLE_PATTERN, 'expected a lowercase SQL name: 1..48 of a-z 0-9 _, not starting with a digit (no quotes, no schema)'),
    default: 'chat_outbox',
    help: 'the outbox table (created when missing, with `<name>_failed` for rows that can never be delivered)',
  },
  OUTBOX_POLL_MS: {
    schema: int(10, 3_600_000, 'milliseconds'),
    default: '1000',
    help: 'how often each node looks at the outbox besides being woken by LISTEN (what a missed notification left)',
  },
  PUSH_VAPID_PUBLIC_KEY: {
    schema: optional(
      z
        .string()
        .trim()
        .regex(
          /^[A-Za-z0-9_-]{87}$/,
          'expected the base64url public key of a P-256 pair (87 characters, as `npx web-push generate-vapid-keys` prints)',
        ),
    ),
    default: undefined,
    help: 'Web Push: the VAPID public key the browser subscribed with; with PUSH_VAPID_PRIVATE_KEY and PUSH_VAPID_SUBJECT turns Web Push on',
  },
  PUSH_VAPID_PRIVATE_KEY: {
    schema: optional(
      z
        .string()
        .trim()
        .regex(/^[A-Za-z0-9_-]{43}$/, 'expected the base64url private key of a P-256 pair (43 characters)'),
    ),
    default: undefined,
    help: 'Web Push: the VAPID private key',
  },
  PUSH_VAPID_SUBJECT: {
    schema: optional(
      z
        .string()
        .trim()
        .regex(/^(mailto:|https:\/\/)\S+$/, 'expected a mailto: or https:// contact'),
    ),
    default: undefined,
    help: 'Web Push: the contact the push services see (mailto: or https://)',
  },
  PUSH_FCM_CREDENTIALS_FILE: {
    schema: optional(text),
    default: undefined,
    help: 'FCM HTTP v1: the service-account JSON file (project_id, client_email, private_key, token_uri); turns FCM on',
  },
  PUSH_FCM_URL: {
    schema: url(['http:', 'https:']),
    default: 'https://fcm.googleapis.com',
    help: 'FCM: base URL of the send API (POST {url}/v1/projects/{project_id}/messages:send)',
  },
  PUSH_APNS_KEY_FILE: {
    schema: optional(text),
    default: undefined,
    help: 'APNs token auth: the .p8 signing key file; with PUSH_APNS_KEY_ID, PUSH_APNS_TEAM_ID and PUSH_APNS_TOPIC turns APNs on',
  },
  PUSH_APNS_KEY_ID: {
    schema: optional(
      z
        .string()
        .trim()
        .regex(/^[A-Za-z0-9]{10}$/, 'expected the 10-character key id'),
    ),
    default: undefined,
    help: 'APNs: the key id of PUSH_APNS_KEY_FILE',
  },
  PUSH_APNS_TEAM_ID: {
    schema: optional(
      z
        .string()
        .trim()
        .regex(/^[A-Za-z0-9]{10}$/, 'expected the 10-character team id'),
    ),
    default: undefined,
    help: 'APNs: the developer team id',
  },
  PUSH_APNS_TOPIC: { schema: optional(text), default: undefined, help: "APNs: the app's bundle id (the apns-topic header)" },
  PUSH_APNS_URL: {
    schema: url(['https:', 'http:']),
    default: 'https://api.push.apple.com',
    help: 'APNs: the HTTP/2 host (https://api.sandbox.push.apple.com for development builds)',
  },
  PUSH_COALESCE_MS: {
    schema: int(0, 600_000, 'milliseconds'),
    default: '1000',
    help: 'messages of one room within this long become one push per device (the newest, with the count)',
  },
  PUSH_MAX_DEVICES: { schema: int(1, 1000), default: '20', help: 'devices one user may register; beyond, `device` answers `limit`' },
  OUTBOUND_ALLOW: {
    schema: z.string().transform((s, ctx) => {
      try {
        return parseAllowList(s)
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message })
        return z.NEVER
      }
    }),
    default: '',
    help: 'comma list of host names and CIDRs (v4, v6) that requests to user-given URLs (Web Push endpoints, link previews) may reach although not public, and over plain http (tests: 127.0.0.1); unset: only https to public addresses',
  },
  LINK_PREVIEWS: {
    schema: bool,
    default: 'false',
    help: "`true`: the first http(s) URL of a chat body is fetched in the background (html only, 1 MiB, 5 redirects, OUTBOUND_ALLOW's rule) and a `preview` event follows the message",
  },
  LINK_PREVIEW_TIMEOUT_MS: {
    schema: int(100, 60_000, 'milliseconds'),
    default: '3000',
    help: "a link preview's whole fetch (name resolution, redirects, body); past it the message gets no preview",
  },
  MODERATION_WORDS_FILE: {
    schema: optional(text),
    default: undefined,
    help: 'word filter: a file of words or phrases, or /regex/flags, one per line (# comments); matched as whole words, case- and accent-insensitively, in chat, dm and edit bodies; reread on SIGHUP',
  },
  MODERATION_WORDS_ACTION: {
    schema: z.enum(['mask', 'reject'], 'expected mask or reject'),
    default: 'mask',
    help: '`mask`: each match becomes `*` of its length; `reject`: the frame is answered with error `rejected`',
  },
  HOOK_FAIL: {
    schema: z.enum(['open', 'closed'], 'expected open or closed'),
    default: 'closed',
    help: 'the hook failed or timed out: `open` publishes anyway, `closed` answers `unavailable`',
  },
  PUSHER_APP_ID: {
    schema: optional(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'expected 1..64 of A-Z a-z 0-9 _ . -')),
    default: undefined,
    help: 'Pusher Channels protocol (docs/pusher.md): the app id of /apps/:id; with PUSHER_KEY and PUSHER_SECRET turns /app/:key and the Pusher HTTP API on',
  },
  PUSHER_KEY: {
    schema: optional(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'expected 1..64 of A-Z a-z 0-9 _ . -')),
    default: undefined,
    help: 'the Pusher app key clients connect with (/app/:key) and the HTTP API signs with (auth_key)',
  },
  PUSHER_SECRET: {
    schema: optional(z.string().min(16, 'must be at least 16 characters')),
    default: undefined,
    help: 'the Pusher app secret: HMAC-SHA256 key of channel and user auth signatures, HTTP API requests and X-Pusher-Signature',
  },
  PUSHER_CLIENT_EVENTS: { schema: bool, default: 'true', help: '`false` refuses Pusher `client-*` events (error 4301)' },
  PUSHER_AUTH_MAX_AGE_S: {
    schema: int(1, 86_400, 'seconds'),
    default: '600',
    help: 'a Pusher HTTP API request whose auth_timestamp is further than this from now is refused (401)',
  },
  PUSHER_WEBHOOK_URL: {
    schema: optional(url(['http:', 'https:'])),
    default: undefined,
    help: 'endpoint of Pusher-format webhooks (channel_occupied, channel_vacated, member_added, member_removed, client_event), signed with X-Pusher-Signature',
  },
  PUSHER_PUBLIC_ROOMS: {
    schema: optional(
      z.string().transform((s, ctx) => {
        const rules = s
          .split(',')
          .map((r) => r.trim())
          .filter(Boolean)
        const bad = rules.find((r) => !ROOM_RULE_PATTERN.test(r))
        if (rules.length === 0 || bad !== undefined) {
          ctx.addIssue({
            code: 'custom',
            message: `expected a comma list of room names and prefix* patterns (* alone: every room)${bad === undefined ? '' : `, not ${JSON.stringify(bad)}`}`,
          })
          return z.NEVER
        }
        return rules
      }),
    ),
    default: undefined,
    help: "the rooms whose public Pusher channels anyone with PUSHER_KEY may subscribe: comma list of room names and prefix* patterns (* opens all); unset: none when auth is on (private- and presence- channels stay your auth endpoint's), * when auth is off",
  },
  UPLOAD_DIR: {
    schema: text,
    default: './data/uploads',
    help: 'where uploads are kept on disk (unless S3_BUCKET is set); several nodes need one shared volume',
  },
  UPLOAD_MAX_BYTES: {
    schema: int(1, 1024 ** 4, 'a number of bytes'),
    default: '10485760',
    help: 'largest upload; a bigger one is cut while it streams in and answered 413 too_large',
  },
  UPLOAD_TYPES: {
    schema: z
      .string()
      .transform((s) =>
        s
          .split(',')
          .map((t) => t.trim().toLowerCase())
          .filter(Boolean),
      )
      .refine(
        (l) => l.length > 0 && l.every((t) => /^[a-z0-9.+-]+\/([a-z0-9.+-]+|\*)$/.test(t)),
        'expected a comma list of MIME types or patterns like image/*',
      ),
    default: 'image/*,video/*,audio/*,application/pdf,text/plain',
    help: 'comma list of MIME patterns an upload may be (its type is sniffed from its content); others answer 415 unsupported_type',
  },
  UPLOAD_ORPHAN_TTL_S: {
    schema: int(1, 315_360_000, 'seconds'),
    default: '86400',
    help: 'an upload no message carries is removed after this long',
  },
  UPLOAD_URL_SECRET: {
    schema: optional(z.string().min(16, 'must be at least 16 characters')),
    default: undefined,
    help: 'HMAC key of signed download URLs (unset: derived from JWT_SECRET or API_KEY, else random per process, so a cluster without either needs it set)',
  },
  UPLOAD_URL_TTL_S: { schema: int(10, 604_800, 'seconds'), default: '3600', help: 'how long a signed download URL is valid' },
  S3_BUCKET: { schema: optional(text), default: undefined, help: 'keep uploads in this S3-compatible bucket instead of UPLOAD_DIR' },
  S3_ENDPOINT: {
    schema: optional(url(['http:', 'https:'])),
    default: undefined,
    help: 'the S3-compatible service (unset: AWS, from S3_REGION)',
  },
  S3_REGION: { schema: optional(text), default: undefined, help: "the bucket's region" },
  S3_ACCESS_KEY_ID: { schema: optional(text), default: undefined, help: 'S3 access key id (unset: Bun reads AWS_ACCESS_KEY_ID)' },
  S3_SECRET_ACCESS_KEY: {
    schema: optional(text),
    default: undefined,
    help: 'S3 secret access key (unset: Bun reads AWS_SECRET_ACCESS_KEY)',
  },
} as const satisfies Record<string, { schema: z.ZodType; default: string | undefined; help: string; keepEmpty?: true }>

type Vars = typeof variables
type Parsed = { [K in keyof Vars]: z.output<Vars[K]['schema']> }

export type Config = Omit<Parsed, 'ENABLE_PERSISTENCE'> & {
  ENABLE_PERSISTENCE: boolean
  /** Which kind of key turns auth on, if any. */
  authMode: 'off' | 'secret' | 'public-key' | 'jwks'
}

export class ConfigError extends Error {
  constructor(readonly lines: string[]) {
    super(lines.join('\n'))
  }
}

/** Parses the environment; throws ConfigError with one line per bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const errors: string[] = []
  const out: Record<string, unknown> = {}
  for (const [name, spec] of Object.entries(variables) as [keyof Vars, Vars[keyof Vars]][]) {
    const raw = env[name] === '' && !('keepEmpty' in spec) ? undefined : env[name]
    const input = raw ?? spec.default
    const result = (spec.schema as z.ZodType).safeParse(input)
    if (result.success) out[name] = result.data
    else errors.push(`${name}: ${result.error.issues[0]?.message ?? 'invalid'}, got ${JSON.stringify(raw)}`)
  }
  const c = out as Parsed
  if (errors.length === 0) {
    const keys = (['JWT_SECRET', 'JWT_PUBLIC_KEY', 'JWT_JWKS_URL'] as const).filter((k) => c[k] !== undefined)
    if (keys.length > 1) errors.push(`${keys.join(', ')}: set only one of them (auth takes one kind of key)`)
    if (c.ENABLE_PERSISTENCE === true && !c.POSTGRES_DSN) errors.push('ENABLE_PERSISTENCE: true needs POSTGRES_DSN to be set')
    if ((c.TLS_CERT_FILE === undefined) !== (c.TLS_KEY_FILE === undefined))
      errors.push(
        `${c.TLS_CERT_FILE === undefined ? 'TLS_CERT_FILE' : 'TLS_KEY_FILE'}: must be set together with ${c.TLS_CERT_FILE === undefined ? 'TLS_KEY_FILE' : 'TLS_CERT_FILE'}`,
      )
    for (const k of ['WEBHOOK_URL', 'HOOK_BEFORE_PUBLISH_URL'] as const)
      if (c[k] && !c.WEBHOOK_SECRET) errors.push(`WEBHOOK_SECRET: required when ${k} is set (every call to the application is signed)`)
    if (c.WEBHOOK_CLAIM_MS <= c.WEBHOOK_TIMEOUT_MS)
      errors.push("WEBHOOK_CLAIM_MS: must be longer than WEBHOOK_TIMEOUT_MS (else a live node's request is taken over)")
    if (c.REDIS_URL?.includes(',') && !c.REDIS_CLUSTER) errors.push('REDIS_URL: a comma list of seed nodes needs REDIS_CLUSTER=true')
    if (c.REDIS_CLUSTER && !c.REDIS_URL) errors.push("REDIS_CLUSTER: true needs REDIS_URL (the cluster's seed nodes)")
    if (c.WORKERS > 1 && !c.REDIS_URL) errors.push(`WORKERS: ${c.WORKERS} workers are nodes of one cluster and need REDIS_URL`)
    if (c.WORKERS > 1 && c.PORT === 0) errors.push('WORKERS: several workers share one port; set PORT (0 would give each its own)')
    if ((c.S3_ACCESS_KEY_ID === undefined) !== (c.S3_SECRET_ACCESS_KEY === undefined))
      errors.push(
        `${c.S3_ACCESS_KEY_ID === undefined ? 'S3_ACCESS_KEY_ID' : 'S3_SECRET_ACCESS_KEY'}: must be set together with ${c.S3_ACCESS_KEY_ID === undefined ? 'S3_SECRET_ACCESS_KEY' : 'S3_ACCESS_KEY_ID'}`,
      )
    const vapid = (['PUSH_VAPID_PUBLIC_KEY', 'PUSH_VAPID_PRIVATE_KEY', 'PUSH_VAPID_SUBJECT'] as const).filter((k) => c[k] === undefined)
    if (vapid.length > 0 && vapid.length < 3)
      errors.push(`${vapid.join(', ')}: Web Push needs PUSH_VAPID_PUBLIC_KEY, PUSH_VAPID_PRIVATE_KEY and PUSH_VAPID_SUBJECT together`)
    const apns = (['PUSH_APNS_KEY_FILE', 'PUSH_APNS_KEY_ID', 'PUSH_APNS_TEAM_ID', 'PUSH_APNS_TOPIC'] as const).filter(
      (k) => c[k] === undefined,
    )
    if (apns.length > 0 && apns.length < 4)
      errors.push(`${apns.join(', ')}: APNs needs PUSH_APNS_KEY_FILE, PUSH_APNS_KEY_ID, PUSH_APNS_TEAM_ID and PUSH_APNS_TOPIC together`)
    if (c.RATE_LIMIT_PER_SEC > 0 && c.RATE_LIMIT_BURST < 1) errors.push('RATE_LIMIT_BURST: must be at least 1')
    const pusher = (['PUSHER_APP_ID', 'PUSHER_KEY', 'PUSHER_SECRET'] as const).filter((k) => c[k] === undefined)
    if (pusher.length === 1 || pusher.length === 2)
      errors.push(
        `${pusher.join(', ')}: the Pusher protocol needs PUSHER_APP_ID, PUSHER_KEY and PUSHER_SECRET together (${pusher.length === 1 ? 'this one is' : 'these are'} missing)`,
      )
    if (c.PUSHER_WEBHOOK_URL && pusher.length === 3)
      errors.push('PUSHER_WEBHOOK_URL: needs PUSHER_APP_ID, PUSHER_KEY and PUSHER_SECRET (the Pusher protocol is off)')
    if (c.PUSHER_PUBLIC_ROOMS && pusher.length === 3)
      errors.push('PUSHER_PUBLIC_ROOMS: needs PUSHER_APP_ID, PUSHER_KEY and PUSHER_SECRET (the Pusher protocol is off)')
    if (c.APP_ENV === 'production') {
      // Strict checks: secrets that are guessable in practice are refused outright.
      if (c.JWT_SECRET && c.JWT_SECRET.length < 32) errors.push('JWT_SECRET: must be at least 32 characters when APP_ENV=production')
      if (c.API_KEY && c.API_KEY.length < 32) errors.push('API_KEY: must be at least 32 characters when APP_ENV=production')
      if (c.WEBHOOK_SECRET && c.WEBHOOK_SECRET.length < 32)
        errors.push('WEBHOOK_SECRET: must be at least 32 characters when APP_ENV=production')
    }
  }
  if (errors.length > 0) throw new ConfigError(errors)
  return {
    ...c,
    ENABLE_PERSISTENCE: c.ENABLE_PERSISTENCE ?? c.POSTGRES_DSN !== undefined,
    authMode: c.JWT_SECRET ? 'secret' : c.JWT_PUBLIC_KEY ? 'public-key' : c.JWT_JWKS_URL ? 'jwks' : 'off',
  }
}

/** The `.env.example` / `--help` table, generated from `variables`. */
export function describeVariables(): string {
  return Object.entries(variables)
    .map(([name, spec]) => `# ${spec.help}\n${spec.default === undefined ? '# ' : ''}${name}=${spec.default ?? ''}`)
    .join('\n\n')
}

/** The text of `.env.example`. A test keeps the committed file equal to it. */
export function envExample(): string {
  return `# chat-server configuration: every variable with its default.
# Generated from src/config.ts by \`bun run scripts/env-example.ts\`; a commented line has no default.

${describeVariables()}
`
}
