import type { Broker } from '../broker/types'
import { safeEqual } from '../auth/compare'
import type { Config } from '../config'
import { json } from '../http/route-spec'
import { log } from '../log'
import { LIMITS, SOCKET_ID, USER_CHANNEL_PREFIX, channelKind, channelProblem, hmac, md5 } from './protocol'

export interface PusherApiDeps {
  config: Config
  broker: Broker
  occupancy: { count(channel: string): Promise<number>; all(): Promise<Map<string, number>> }
  /** Publishes an event (`dataJson`: its data encoded) on a channel, not to the socket `except`. */
  event(channel: string, name: string, dataJson: string, except?: string): Promise<void>
  terminate(user: string): Promise<void>
}

type Req = Request & { params: Record<string, string> }

/** A request body larger than this is refused (413) before it is read: ten events at Pusher's size limit. */
const MAX_BODY_BYTES = LIMITS.batchEvents * (LIMITS.eventBytes + 1024)

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    reason: string,
  ) {
    super(reason)
  }
}
const bad = (reason: string) => new ApiError(400, 'bad_request', reason)

/**
 * Pusher's HTTP API (pusher.com/docs/channels/library_auth_reference/rest-api) as Bun routes,
 * for the Pusher server SDKs: every request signed as they sign it, JSON answers, errors with
 * Pusher's statuses and a JSON body naming the field.
 */
export function pusherApi(deps: PusherApiDeps) {
  const { config, broker } = deps
  const appId = config.PUSHER_APP_ID!
  const key = config.PUSHER_KEY!
  const secret = config.PUSHER_SECRET!

  /** Checks the app id and the signature; returns the body as text. */
  async function signed(req: Req): Promise<{ url: URL; body: string }> {
    const url = new URL(req.url)
    if (req.params.id !== appId) throw new ApiError(404, 'not_found', `app: no app ${req.params.id} here (PUSHER_APP_ID)`)
    const length = Number(req.headers.get('content-length') ?? 0)
    if (length > MAX_BODY_BYTES) throw new ApiError(413, 'too_large', `body: at most ${MAX_BODY_BYTES} bytes`)
    const body = req.method === 'GET' ? '' : await req.text()
    if (body.length > MAX_BODY_BYTES) throw new ApiError(413, 'too_large', `body: at most ${MAX_BODY_BYTES} bytes`)
    const q = url.searchParams
    const unauthorized = (reason: string) => new ApiError(401, 'unauthorized', reason)
    if (q.get('auth_key') !== key) throw unauthorized("auth_key: not this app's key")
    const ts = Number(q.get('auth_timestamp'))
    if (!q.get('auth_timestamp') || !Number.isFinite(ts)) throw unauthorized('auth_timestamp: required (unix seconds)')
    if (Math.abs(Date.now() / 1000 - ts) > config.PUSHER_AUTH_MAX_AGE_S)
      throw unauthorized(`auth_timestamp: more than ${config.PUSHER_AUTH_MAX_AGE_S} s from the server's time (PUSHER_AUTH_MAX_AGE_S)`)
    if (q.get('auth_version') !== '1.0') throw unauthorized('auth_version: must be 1.0')
    if (body !== '' && q.get('body_md5') !== md5(body)) throw unauthorized('body_md5: does not match the body')
    const pairs = [...q.entries()].filter(([k]) => k !== 'auth_signature').map(([k, v]) => [k.toLowerCase(), v] as const)
    pairs.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    const expected = hmac(secret, `${req.method}\n${url.pathname}\n${pairs.map(([k, v]) => `${k}=${v}`).join('&')}`)
    if (!safeEqual(q.get('auth_signature') ?? '', expected))
      throw unauthorized('auth_signature: invalid (HMAC-SHA256 of "METHOD\\nPATH\\nsorted query" with the app secret)')
    return { url, body }
  }

  const route =
    (work: (req: Req, url: URL, body: string) => Promise<unknown>) =>
    async (req: Req): Promise<Response> => {
      try {
        const { url, body } = await signed(req)
        return json(200, await work(req, url, body))
      } catch (err) {
        if (err instanceof ApiError) return json(err.status, { error: err.error, reason: err.message })
        const down = broker.problem()
        if (down) return json(503, { error: 'unavailable', reason: down })
        log.error('pusher api failed', { path: new URL(req.url).pathname, err })
        return json(500, { error: 'internal' })
      }
    }

  const parse = (body: string): Record<string, unknown> => {
    try {
      const v = JSON.parse(body)
      if (v && typeof v === 'object' && !Array.isArray(v)) return v
    } catch {}
    throw bad('body: expected a JSON object')
  }

  const channelOk = (c: unknown, field: string): string => {
    if (typeof c === 'string' && c.startsWith(USER_CHANNEL_PREFIX) && c.length > USER_CHANNEL_PREFIX.length && c.length <= 200) return c
    const problem = channelProblem(c)
    if (problem) throw bad(`${field}: ${problem.replace(/^channel: /, '')}`)
    return c as string
  }

  /** One event of `events` or `batch_events`, checked; `at` names it in errors. */
  function eventOf(e: Record<string, unknown>, at: string, single: boolean) {
    const name = e.name
    if (typeof name !== 'string' || name === '') throw bad(`${at}name: required`)
    if (name.length > LIMITS.eventName) throw bad(`${at}name: at most ${LIMITS.eventName} characters`)
    if (typeof e.data !== 'string') throw bad(`${at}data: required, a string (the SDKs encode objects as JSON)`)
    if (Buffer.byteLength(e.data) > LIMITS.eventBytes) throw new ApiError(413, 'too_large', `${at}data: at most ${LIMITS.eventBytes} bytes`)
    let channels: string[]
    if (single && e.channels !== undefined) {
      if (!Array.isArray(e.channels) || e.channels.length === 0) throw bad('channels: expected a list of channel names')
      if (e.channels.length > LIMITS.channelsPerEvent) throw bad(`channels: at most ${LIMITS.channelsPerEvent}`)
      channels = e.channels.map((c, i) => channelOk(c, `channels[${i}]`))
    } else if (e.channel !== undefined) channels = [channelOk(e.channel, `${at}channel`)]
    else throw bad(`${at}${single ? 'channels' : 'channel'}: required`)
    const socketId = e.socket_id
    if (socketId !== undefined && (typeof socketId !== 'string' || !SOCKET_ID.test(socketId)))
      throw bad(`${at}socket_id: expected a socket id like 1234.5678`)
    const info = typeof e.info === 'string' ? e.info.split(',').map((s) => s.trim()) : []
    return { name, data: e.data, channels, socketId: socketId as string | undefined, info }
  }

  const infoOf = async (channel: string, info: string[]) => {
    const out: { occupied?: boolean; user_count?: number; subscription_count?: number } = {}
    if (info.includes('user_count')) out.user_count = (await broker.presence.list(channel)).length
    if (info.includes('subscription_count')) out.subscription_count = await deps.occupancy.count(channel)
    return out
  }

  /** `info` of the channel routes: what is known, and user_count only for presence channels (as Pusher answers). */
  const infoParam = (url: URL, presence: boolean) => {
    const info = (url.searchParams.get('info') ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
    for (const i of info)
      if (i !== 'user_count' && i !== 'subscription_count') throw bad(`info: unknown attribute ${i} (user_count, subscription_count)`)
    if (info.includes('user_count') && !presence) throw bad('info: user_count is only for presence channels (filter_by_prefix=presence-)')
    return info
  }

  return {
    '/apps/:id/events': {
      POST: route(async (_req, _url, body) => {
        const e = eventOf(parse(body), '', true)
        const dataJson = JSON.stringify(e.data)
        await Promise.all(e.channels.map((c) => deps.event(c, e.name, dataJson, e.socketId)))
        if (e.info.length === 0) return {}
        const channels: Record<string, unknown> = Object.create(null)
        for (const c of e.channels) channels[c] = await infoOf(c, e.info)
        return { channels }
      }),
    },
    '/apps/:id/batch_events': {
      POST: route(async (_req, _url, body) => {
        const batch = parse(body).batch
        if (!Array.isArray(batch) || batch.length === 0) throw bad('batch: expected a list of events')
        if (batch.length > LIMITS.batchEvents) throw bad(`batch: at most ${LIMITS.batchEvents} events`)
        const events = batch.map((e, i) => {
          if (!e || typeof e !== 'object') throw bad(`batch[${i}]: expected an event object`)
          return eventOf(e as Record<string, unknown>, `batch[${i}].`, false)
        })
        // Checked all before any is sent: a bad batch sends nothing.
        for (const e of events) await deps.event(e.channels[0]!, e.name, JSON.stringify(e.data), e.socketId)
        if (!events.some((e) => e.info.length)) return {}
        return { batch: await Promise.all(events.map((e) => infoOf(e.channels[0]!, e.info))) }
      }),
    },
    '/apps/:id/channels': {
      GET: route(async (_req, url) => {
        const prefix = url.searchParams.get('filter_by_prefix') ?? ''
        const info = infoParam(url, prefix.startsWith('presence-'))
        // No prototype: a channel named `__proto__` is a key like any other.
        const channels: Record<string, unknown> = Object.create(null)
        for (const [name, count] of await deps.occupancy.all()) {
          if (!name.startsWith(prefix) || count <= 0) continue
          channels[name] = await infoOf(name, info)
        }
        return { channels }
      }),
    },
    '/apps/:id/channels/:name': {
      GET: route(async (req, url) => {
        const channel = channelOk(req.params.name, 'channel')
        const info = infoParam(url, channelKind(channel) === 'presence')
        const count = await deps.occupancy.count(channel)
        return { occupied: count > 0, ...(await infoOf(channel, info)) }
      }),
    },
    '/apps/:id/channels/:name/users': {
      GET: route(async (req) => {
        const channel = channelOk(req.params.name, 'channel')
        if (channelKind(channel) !== 'presence') throw bad('channel: users are only known of presence channels')
        return { users: (await broker.presence.list(channel)).map((u) => ({ id: u.id })) }
      }),
    },
    '/apps/:id/users/:user/terminate_connections': {
      POST: route(async (req) => {
        const user = req.params.user!
        if (user.length === 0 || user.length > LIMITS.userId) throw bad(`user: 1..${LIMITS.userId} characters`)
        await deps.terminate(user)
        return {}
      }),
    },
  }
}
