import type { Server, ServerWebSocket } from 'bun'
import type { Ledger } from '../cluster/ledger'
import type { Broker, Deliver } from '../broker/types'
import { roomTopic } from '../broker/types'
import type { Config } from '../config'
import type { User } from '../core/identity'
import { roomMatches } from '../core/room'
import { checkIdle, heard, refusalResponse } from '../hub/admission'
import type { Door, IdleRule, Liveness, Refusal, Ticket } from '../hub/admission'
import { strike, tokenBucket } from '../hub/rate-limit'
import type { Bucket, Strikes } from '../hub/rate-limit'
import { log } from '../log'
import type { Metrics } from '../metrics'
import { CHAT_HEAD, CONTROL_HEAD, DM_HEAD, PUSHER_HEAD, control, frames } from '../protocol/server-frames'
import { pusherApi } from './http-api'
import { ledgerOccupancy } from './occupancy'
import type { Occupancy } from './occupancy'
import { CODE, LIMITS, USER_CHANNEL_PREFIX, channelKind, channelProblem, presenceData, pusherFrames, validAuth } from './protocol'
import type { ChannelKind } from './protocol'
import { pusherHooks } from './webhooks'

export interface PusherDeps {
  config: Config
  broker: Broker
  metrics: Metrics
  nodeId: string
  server: () => Server<unknown>
  /** The one door of every face (hub/admission.ts): limits, origin, connect rate, draining. */
  door: Door
  /** The node's ledger (cluster/ledger.ts): channel counts shared by every node. */
  ledger: Ledger
}

/** Bun topics of the Pusher face: a room's events as Pusher frames, a signed-in user's. */
const channelTopic = (room: string) => `p:${room}`
/** Relayed through the broker like a user topic (`u:`), heard only by Pusher sockets. */
export const pusherUserTopic = (user: string) => `pu:${user}`

interface Sub {
  kind: ChannelKind
  /** A presence channel's member, from its channel_data. */
  member?: User
  /** Subscribed on Bun's topic (the subscription is done). */
  live: boolean
}

/**
 * The Pusher Channels face of the server (docs/pusher.md). Pusher sockets are sockets of the
 * same Bun server; a channel X is the room X: they listen to the room's topic through the
 * broker (watch), and every frame this node delivers on `r:X` is turned into one Pusher frame
 * and published once on Bun's topic `p:X` (Bun hands one encoded frame to every subscriber of
 * a topic, so the two faces cannot share one). Pusher events go the other way as a `pusher`
 * frame relayed on the room's topic, which chat-server clients get as it is.
 */
export function createPusher(deps: PusherDeps) {
  const { config, broker, metrics } = deps
  const key = config.PUSHER_KEY!
  const secret = config.PUSHER_SECRET!
  const frameBucket = tokenBucket(config.RATE_LIMIT_PER_SEC, config.RATE_LIMIT_BURST)
  const eventBucket = tokenBucket(LIMITS.clientEventsPerSec, LIMITS.clientEventsPerSec)
  /** Seconds of silence after which pusher-js (and the server) ping; below the idle cut-off. */
  const activityTimeout = Math.max(5, Math.min(120, Math.floor(config.IDLE_TIMEOUT_S / 2)))
  /** How long an answer to the server's pusher:ping may take (so ping + answer fit in IDLE_TIMEOUT_S). */
  const pongTimeoutMs = Math.min(LIMITS.pongTimeoutS, activityTimeout) * 1000
  /** The door's liveness rule in Pusher's timings (pusher:ping, then 4201). */
  const idleRule: IdleRule = { pingAfterMs: activityTimeout * 1000, answerWithinMs: pongTimeoutMs }
  const { door } = deps
  /** Rooms whose public channels anyone with the key may read (auth off: all, as every room is open to /ws too). */
  const publicRooms = config.PUSHER_PUBLIC_ROOMS ?? (config.authMode === 'off' ? ['*'] : [])
  const hooks = pusherHooks({ config, metrics, nodeId: deps.nodeId })
  // A channel a dead node's reaping left vacant gets its channel_vacated from that one reaper.
  const vacated = (edge: 'up' | 'down', _key: string, channel: string) => edge === 'down' && hooks?.emit({ name: 'channel_vacated', channel })
  const occupancy: Occupancy = ledgerOccupancy(deps.ledger.book('pusher', vacated))

  /** Socket ids: this process's random number, then a counter (unique cluster-wide in practice). */
  const prefix = 1 + Math.floor(Math.random() * 2_000_000_000)
  let next = 0
  const sockets = new Map<string, PusherSocket>()
  /** This node's live subscribers of each room. */
  const subs = new Map<string, Set<PusherSocket>>()
  const signedIn = new Map<string, Set<PusherSocket>>()
  let draining = false

  const counted = (p: Promise<unknown>, what: string) => p.catch((err) => log.warn(`pusher: ${what}`, { err }))

  /** How a refusal of the door is told on a socket already upgraded: Pusher's error frame and close code. */
  const refusalCode = (r: Refusal): [number, string] =>
    r.reason === 'draining' ? [CODE.reconnect, 'the server is shutting down: reconnect'] : [CODE.overCapacity, `over capacity: ${r.reason === 'connections' ? 'MAX_CONNECTIONS' : r.reason === 'connections_per_ip' ? 'MAX_CONNECTIONS_PER_IP' : 'MAX_CONNECTIONS_PER_USER'} reached`]

  /**
   * A Pusher socket's data (see app.ts's Socket: Elysia's Bun handlers call these with Bun's
   * socket). Rate-limit fields of the socket's frames, its admission ticket and its liveness
   * are the record's own (Bucket, Ticket, Liveness, Strikes).
   */
  class PusherSocket implements Bucket, Ticket, Liveness, Strikes {
    readonly id = `${prefix}.${next++}`
    ws!: ServerWebSocket<unknown>
    channels = new Map<string, Sub>()
    user: string | undefined = undefined
    tokens: number
    refilledAt: number
    events: Bucket = eventBucket.full()
    lastSeen = performance.now()
    pingedAt = 0
    strikes = 0
    lastStrikeAt = 0
    closed = false
    // The ticket (Ticket): released until the door admits it, so a refused socket gives nothing back.
    ip = ''
    countedUser: string | undefined = undefined
    opened = false
    released = true
    timer: Ticket['timer'] = undefined
    /** The door's refusal, told once the socket is open (Pusher's way: error frame, close code). */
    refused: Refusal | undefined = undefined
    constructor(
      readonly appKey: string,
      readonly protocol: number,
      /** When the upgrade was asked for (chat_connect_seconds). */
      readonly since: number,
    ) {
      const b = frameBucket.full()
      this.tokens = b.tokens
      this.refilledAt = b.refilledAt
    }
    open(ws: ServerWebSocket<unknown>) {
      this.ws = ws
      if (this.appKey !== key) return this.fail(CODE.appKey, `App key ${this.appKey.slice(0, 64)} not in this cluster: check PUSHER_KEY`)
      if (!(this.protocol >= 5 && this.protocol <= 7)) return this.fail(CODE.protocol, `Unsupported protocol version ${this.protocol} (5..7 are)`)
      if (this.refused) return this.fail(...refusalCode(this.refused))
      // Opened after its admission was given back: it would count against no limit.
      if (!door.opened(this)) return this.fail(CODE.reconnect, 'admission expired: reconnect')
      if (draining) return this.fail(CODE.reconnect, 'the server is shutting down: reconnect')
      sockets.set(this.id, this)
      metrics.connections.inc()
      this.send(pusherFrames.established(this.id, activityTimeout))
      metrics.connect.pusher.observe((performance.now() - this.since) / 1000)
    }
    message(_ws: unknown, raw: string | Buffer) {
      heard(this)
      if (this.closed || !sockets.has(this.id)) return
      if (!frameBucket.take(this)) {
        metrics.rateLimited.inc()
        // The flood rule of /ws (hub/rate-limit.ts strike): past it the socket is closed, with Pusher's rate-limit code.
        if (strike(this)) {
          log.warn('flooding client closed', { socket: this.id, user: this.user, face: 'pusher' })
          return this.fail(CODE.rateLimited, 'rate limit exceeded: too many frames')
        }
        return this.send(pusherFrames.error(CODE.overCapacity, 'too many frames: slow down'))
      }
      let f: { event?: unknown; channel?: unknown; data?: unknown }
      try {
        f = JSON.parse(typeof raw === 'string' ? raw : raw.toString())
      } catch {
        return this.send(pusherFrames.error(null, 'frame: not valid JSON'))
      }
      if (!f || typeof f !== 'object' || typeof f.event !== 'string') return this.send(pusherFrames.error(null, 'event: every frame needs an event name'))
      const done = dispatch(this, f.event, f)
      if (done) done.catch((err) => {
        log.warn('pusher frame failed', { socket: this.id, event: f.event, err })
        this.send(pusherFrames.error(null, `${f.event}: not available right now (${broker.problem() ?? 'internal error'})`))
      })
    }
    close() {
      this.closed = true
      door.release(this)
      if (!sockets.delete(this.id)) return
      metrics.connections.dec()
      for (const channel of [...this.channels.keys()]) unsubscribe(this, channel)
      // In the set once its user topic is watched (a sign-in refused by the door never was).
      const set = this.user === undefined ? undefined : signedIn.get(this.user)
      if (set?.delete(this)) {
        if (set.size === 0) signedIn.delete(this.user!)
        broker.unwatch(pusherUserTopic(this.user!))
      }
    }
    pong() {
      heard(this)
    }
    send(frame: string) {
      if (this.closed) return
      if (this.ws.send(frame) === 0) this.fail(CODE.overCapacity, 'slow consumer: the connection could not keep up')
    }
    /** A `pusher:error` with the code, then the close with it (as Pusher does). */
    fail(code: number, message: string) {
      if (this.closed) return
      this.ws.send(pusherFrames.error(code, message))
      this.closed = true
      this.ws.close(code, message.slice(0, 120))
    }
  }

  function dispatch(s: PusherSocket, event: string, f: { channel?: unknown; data?: unknown }): Promise<void> | void {
    const data = (f.data ?? {}) as Record<string, unknown>
    switch (event) {
      case 'pusher:ping':
        return s.send(pusherFrames.pong)
      case 'pusher:pong':
        return
      case 'pusher:subscribe':
        return subscribe(s, data)
      case 'pusher:unsubscribe':
        return unsubscribe(s, String(data.channel))
      case 'pusher:signin':
        return signin(s, data)
    }
    if (event.startsWith('client-')) return clientEvent(s, event, f.channel, f.data)
    s.send(pusherFrames.error(null, `event: ${JSON.stringify(event.slice(0, 80))} is not a client event (client-*) nor one of pusher:subscribe, pusher:unsubscribe, pusher:ping, pusher:signin`))
  }

  /** A refused subscription: `pusher:error` for the connection, `pusher:subscription_error` for the channel. */
  function refuse(s: PusherSocket, channel: string, message: string, code: number | null = null, status = 400) {
    s.send(pusherFrames.error(code, message))
    s.send(pusherFrames.subscriptionError(channel, message, status))
  }

  async function subscribe(s: PusherSocket, data: Record<string, unknown>) {
    const channel = data.channel
    if (typeof channel === 'string' && channel.startsWith(USER_CHANNEL_PREFIX)) {
      if (s.user === undefined || channel !== USER_CHANNEL_PREFIX + s.user) return refuse(s, channel, `channel: ${channel} is the channel of a signed-in user (pusher:signin first)`, CODE.unauthorized, 403)
      return s.send(pusherFrames.succeeded(channel, '{}'))
    }
    const problem = channelProblem(channel)
    if (problem) return refuse(s, typeof channel === 'string' ? channel : '', problem)
    const room = channel as string
    const kind = channelKind(room)
    // The key ships in every browser: with auth on, a public channel would let anyone read a
    // room that JWT rules protect, so only the rooms PUSHER_PUBLIC_ROOMS names are public.
    if (kind === 'public' && !roomMatches(publicRooms, room)) {
      metrics.authRefused.labels({ reason: 'pusher_public_room' }).inc()
      return refuse(s, room, `channel: ${room} is not a public channel on this server (PUSHER_PUBLIC_ROOMS): use a private- channel your auth endpoint signs`, CODE.unauthorized, 403)
    }
    let member: User | undefined
    if (kind !== 'public') {
      const channelData = data.channel_data
      if (kind === 'presence') {
        if (typeof channelData !== 'string') return refuse(s, room, `channel_data: required to subscribe to ${room}`, CODE.unauthorized, 401)
        if (channelData.length > LIMITS.userData) return refuse(s, room, `channel_data: must be at most ${LIMITS.userData} bytes`)
      }
      const signed = kind === 'presence' ? `${s.id}:${room}:${channelData}` : `${s.id}:${room}`
      if (!validAuth(data.auth, key, secret, signed)) {
        metrics.authRefused.labels({ reason: 'pusher_signature' }).inc()
        return refuse(s, room, `auth: invalid signature for ${room} (HMAC-SHA256 of "socket_id:channel${kind === 'presence' ? ':channel_data' : ''}" with the app secret)`, CODE.unauthorized, 401)
      }
      if (kind === 'presence') {
        let parsed: { user_id?: unknown; user_info?: { name?: unknown } }
        try {
          parsed = JSON.parse(channelData as string)
        } catch {
          return refuse(s, room, 'channel_data: not valid JSON')
        }
        const id = parsed?.user_id
        if ((typeof id !== 'string' && typeof id !== 'number') || String(id) === '' || String(id).length > LIMITS.userId) return refuse(s, room, `channel_data: user_id must be a string or number of 1..${LIMITS.userId} characters`)
        const name = parsed.user_info?.name
        member = { id: String(id), name: typeof name === 'string' && name !== '' ? name : String(id) }
      }
    }
    const existing = s.channels.get(room)
    if (existing) {
      if (existing.live) s.send(pusherFrames.succeeded(room, existing.member ? presenceData(await broker.presence.list(room)) : '{}'))
      return
    }
    const sub: Sub = { kind, member, live: false }
    s.channels.set(room, sub)
    const topic = roomTopic(room)
    try {
      await broker.watch(topic)
    } catch (err) {
      broker.unwatch(topic)
      s.channels.delete(room)
      throw err
    }
    if (s.closed || s.channels.get(room) !== sub) return void broker.unwatch(topic)
    s.ws.subscribe(channelTopic(room))
    sub.live = true
    let set = subs.get(room)
    if (!set) subs.set(room, (set = new Set()))
    set.add(s)
    void counted(occupancy.change(room, 1).then((first) => first && hooks?.emit({ name: 'channel_occupied', channel: room })), 'occupancy not counted')
    if (!member) return s.send(pusherFrames.succeeded(room, '{}'))
    // Cluster-wide presence: the broker's, the same chat-server clients of the room are in.
    const first = await broker.presence.add(room, member, s.id)
    if (first) {
      await broker.relay(topic, frames.presenceEvent(room, 'join', member), s.id)
      hooks?.emit({ name: 'member_added', channel: room, user_id: member.id })
    }
    if (s.channels.get(room) === sub) s.send(pusherFrames.succeeded(room, presenceData(await broker.presence.list(room))))
  }

  function unsubscribe(s: PusherSocket, room: string) {
    const sub = s.channels.get(room)
    if (!sub) return
    s.channels.delete(room)
    // Not live yet: the subscription in progress sees it gone and gives its watch back.
    if (!sub.live) return
    if (!s.closed) s.ws.unsubscribe(channelTopic(room))
    const set = subs.get(room)
    set?.delete(s)
    if (set?.size === 0) subs.delete(room)
    const topic = roomTopic(room)
    broker.unwatch(topic)
    void counted(occupancy.change(room, -1).then((last) => last && hooks?.emit({ name: 'channel_vacated', channel: room })), 'occupancy not counted')
    const m = sub.member
    if (m)
      void counted(
        broker.presence.remove(room, m.id, s.id).then(async (last) => {
          if (!last) return
          await broker.relay(topic, frames.presenceEvent(room, 'leave', m))
          hooks?.emit({ name: 'member_removed', channel: room, user_id: m.id })
        }),
        'presence not removed',
      )
  }

  async function signin(s: PusherSocket, data: Record<string, unknown>) {
    const userData = data.user_data
    if (typeof userData !== 'string' || userData.length > LIMITS.userData || !validAuth(data.auth, key, secret, `${s.id}::user::${userData}`)) {
      metrics.authRefused.labels({ reason: 'pusher_signature' }).inc()
      return s.fail(CODE.unauthorized, 'pusher:signin: invalid signature (HMAC-SHA256 of "socket_id::user::user_data" with the app secret)')
    }
    let id: unknown
    try {
      id = JSON.parse(userData)?.id
    } catch {}
    if ((typeof id !== 'string' && typeof id !== 'number') || String(id) === '' || String(id).length > LIMITS.userId) return s.fail(CODE.unauthorized, `user_data: needs an id of 1..${LIMITS.userId} characters`)
    if (s.user !== undefined) return s.send(pusherFrames.error(null, 'pusher:signin: this connection is signed in already'))
    const user = String(id)
    s.user = user // at once: a second signin meanwhile is refused above
    // A signed-in user counts against MAX_CONNECTIONS_PER_USER like a /ws connection of theirs;
    // refused, this socket is closed and the user's others stay.
    const over = await door.admitUser(s, user)
    if (over) return s.fail(...refusalCode(over))
    if (s.closed) return
    let set = signedIn.get(user)
    if (!set) signedIn.set(user, (set = new Set()))
    set.add(s)
    await broker.watch(pusherUserTopic(user))
    if (s.closed) return
    s.ws.subscribe(pusherUserTopic(user))
    s.send(pusherFrames.signinSuccess(userData))
  }

  function clientEvent(s: PusherSocket, event: string, channel: unknown, data: unknown) {
    const reject = (why: string) => s.send(pusherFrames.error(CODE.clientEventRejected, `${event.slice(0, 80)}: ${why}`))
    if (!config.PUSHER_CLIENT_EVENTS) return reject('client events are off on this server (PUSHER_CLIENT_EVENTS=false)')
    if (event.length > LIMITS.eventName) return reject(`event: a name has at most ${LIMITS.eventName} characters`)
    const room = typeof channel === 'string' ? channel : ''
    const sub = s.channels.get(room)
    if (!sub?.live) return reject(`channel: not subscribed to ${JSON.stringify(room.slice(0, 80))}`)
    if (sub.kind === 'public') return reject('client events are only allowed on private and presence channels')
    if (sub.kind === 'encrypted') return reject('client events are not allowed on encrypted channels')
    if (!eventBucket.take(s.events)) {
      metrics.rateLimited.inc()
      return reject(`rate limit: at most ${LIMITS.clientEventsPerSec} client events a second`)
    }
    const dataJson = JSON.stringify(data ?? {})
    if (dataJson.length > LIMITS.eventBytes) return reject(`data: at most ${LIMITS.eventBytes} bytes`)
    hooks?.emit({ name: 'client_event', channel: room, event, data: typeof data === 'string' ? data : dataJson, socket_id: s.id, ...(sub.member ? { user_id: sub.member.id } : {}) })
    return broker.relay(roomTopic(room), frames.pusher(room, event, dataJson, sub.member?.id), s.id)
  }

  /** Publishes once on the Pusher topic, skipping the socket named by `except` when it is here. */
  function publish(topic: string, frame: string, except: string | undefined, set: Set<PusherSocket> | undefined) {
    const skip = except ? sockets.get(except) : undefined
    const status = skip && !skip.closed ? skip.ws.publish(topic, frame) : deps.server().publish(topic, frame)
    if (status === 0 && set) for (const s of set) if (s.ws.getBufferedAmount() + frame.length > config.MAX_BUFFERED_BYTES) s.fail(CODE.overCapacity, 'slow consumer: the connection could not keep up')
  }

  /** A frame of the room's topic as Pusher subscribers see it (made once per frame). */
  function asPusher(room: string, frame: string): string | undefined {
    if (frame.startsWith(PUSHER_HEAD)) {
      const f = JSON.parse(frame) as { event: string; data: unknown; user_id?: string }
      return pusherFrames.event(room, f.event, JSON.stringify(f.data), f.user_id)
    }
    const end = frame.indexOf('"', 9)
    const type = frame.slice(9, end)
    if (type === 'presence' && channelKind(room) === 'presence') {
      const f = JSON.parse(frame) as { event?: 'join' | 'leave'; user?: User }
      if (!f.event || !f.user) return undefined
      return pusherFrames.member(room, f.event === 'join' ? 'added' : 'removed', f.user.id, f.user.name)
    }
    // Any other frame of the room (chat, edit, delete, react, moderation, typing, read,
    // presence): an event named after its type, its data the chat-server frame as JSON text.
    return `{"event":"${type}","channel":${JSON.stringify(room)},"data":${JSON.stringify(frame)}}`
  }

  /** The hub's `deliver`, then the same frame for this node's Pusher sockets. */
  const wrap =
    (inner: Deliver): Deliver =>
    (topic, frame, except) => {
      if (topic.startsWith('pu:')) {
        if (frame.startsWith(CONTROL_HEAD)) {
          const cmd = JSON.parse(frame) as { ctl: string; code?: number; reason?: string }
          if (cmd.ctl === 'close') for (const s of signedIn.get(topic.slice(3)) ?? []) s.fail(cmd.code ?? CODE.unauthorized, cmd.reason ?? 'connection terminated')
          return
        }
        return publish(topic, frame, except, signedIn.get(topic.slice(3)))
      }
      inner(topic, frame, except)
      if (!topic.startsWith('r:')) return
      const room = topic.slice(2)
      const set = subs.get(room)
      if (!set) return
      const out = asPusher(room, frame)
      if (out === undefined) return
      publish(channelTopic(room), out, except, set)
      if (frame.startsWith(CHAT_HEAD) || frame.startsWith(DM_HEAD)) metrics.delivered.inc(set.size)
    }

  /** The door's liveness rule: a silent socket gets a pusher:ping after activity_timeout, and 4201 when no answer follows. */
  const sweep = setInterval(() => {
    const now = performance.now()
    for (const s of sockets.values()) {
      const idle = checkIdle(s, now, idleRule)
      if (idle === 'ping') s.send(pusherFrames.ping)
      else if (idle === 'close') s.fail(CODE.pongNotReceived, 'Pong reply not received: reconnect')
    }
  }, 1000)
  sweep.unref()

  /**
   * GET /app/:key: through the door as /ws is. A foreign origin and the connect rate are HTTP
   * answers (403, 503 with Retry-After: the upgrade itself is what they spare); a wrong key, a
   * full node or address and a draining node are told in Pusher's way, an error frame and a
   * close code pusher-js acts on (4100 backs off, 4200 reconnects).
   */
  function upgrade(req: Request & { params?: Record<string, string> }, server: Server<unknown>): Response | undefined {
    const url = new URL(req.url)
    const appKey = req.params?.key ?? url.pathname.slice(5)
    const socket = new PusherSocket(appKey, Number(url.searchParams.get('protocol') ?? 7), performance.now())
    const refused = door.admit(socket, req.headers.get('origin') ?? undefined, door.remote(req, server))
    if (refused?.reason === 'origin_not_allowed' || refused?.reason === 'connect_rate') return refusalResponse(refused)
    socket.refused = refused
    if (!refused) door.upgrading(socket)
    if (server.upgrade(req, { data: socket })) return undefined
    door.release(socket)
    return Response.json({ error: 'bad_request', reason: 'expected a WebSocket upgrade (the Pusher protocol at /app/:key)' }, { status: 400 })
  }

  const api = pusherApi({
    config,
    broker,
    occupancy: { count: (c) => occupancy.count(c), all: () => occupancy.all() },
    event: (room, name, dataJson, except) =>
      room.startsWith(USER_CHANNEL_PREFIX)
        ? broker.relay(pusherUserTopic(room.slice(USER_CHANNEL_PREFIX.length)), pusherFrames.event(room, name, dataJson), except)
        : broker.relay(roomTopic(room), frames.pusher(room, name, dataJson), except),
    terminate: (user) => broker.relay(pusherUserTopic(user), control({ ctl: 'close', code: CODE.unauthorized, reason: 'connection terminated by the server' })),
  })

  return {
    /** Bun routes for serve.routes: the WebSocket and the HTTP API. */
    routes: { '/app/:key': { GET: upgrade }, ...api },
    deliver: wrap,
    get size() {
      return sockets.size
    },
    /** True once drain began: the door refuses new connections of every face. */
    get draining() {
      return draining
    },
    /** Closes every Pusher socket with 4200 (pusher-js reconnects, to another node), then runs the hub's drain. */
    drain:
      (inner: (graceMs: number) => Promise<number>) =>
      async (graceMs: number): Promise<number> => {
        draining = true
        for (const s of sockets.values()) s.fail(CODE.reconnect, 'server shutting down: reconnect')
        clearInterval(sweep)
        const left = await inner(graceMs)
        const until = Date.now() + 1000
        while (sockets.size > 0 && Date.now() < until) await Bun.sleep(20)
        await hooks?.stop(Math.min(2000, graceMs))
        return left + sockets.size
      },
  }
}

export type Pusher = ReturnType<typeof createPusher>
