import type { Server } from 'bun'
import type { Broker } from '../broker/types'
import type { Config } from '../config'
import type { User } from '../core/identity'
import { checkIdle, heard, refusalResponse } from '../hub/admission'
import type { Door, IdleRule, Liveness, Refusal, Ticket } from '../hub/admission'
import { strike, tokenBucket } from '../hub/rate-limit'
import type { Bucket, Strikes } from '../hub/rate-limit'
import { log } from '../log'
import type { Metrics } from '../metrics'
import { CODE, LIMITS, pusherFrames } from './protocol'
import type { ChannelKind } from './protocol'

/** A socket's channel (channels.ts subscribes it). */
export interface Sub {
  kind: ChannelKind
  /** A presence channel's member, from its channel_data. */
  member?: User
  /** Subscribed on Bun's topic (the subscription is done). */
  live: boolean
}

/**
 * What a Pusher connection is carried on: Bun's WebSocket, or an HTTP fallback session
 * (http-session.ts) that speaks the same calls. Channels and the fan-out use only these.
 */
export interface PusherWire {
  /** Bytes sent or queued; 0 when it could not take the frame (a slow consumer), -1 under backpressure. */
  send(frame: string): number
  close(code?: number, reason?: string): void
  subscribe(topic: string): void
  unsubscribe(topic: string): void
  /** A frame to every subscriber of the topic but this one. */
  publish(topic: string, frame: string): number
  getBufferedAmount(): number
}

/** A Pusher connection as the face's other parts (channels, fan-out) see it; its admission ticket too. */
export interface PusherSocket extends Ticket {
  /** The socket_id: this process's random number, then a counter (unique cluster-wide in practice). */
  readonly id: string
  readonly ws: PusherWire
  /** Its channels, by room. */
  readonly channels: Map<string, Sub>
  /** Signed in as (pusher:signin), once. */
  user: string | undefined
  /** Its client events' bucket (clientEventBucket). */
  readonly events: Bucket
  readonly closed: boolean
  /** A frame; a socket that cannot take it is closed as a slow consumer. */
  send(frame: string): void
  /** A `pusher:error` with the code, then the close with it (as Pusher does). */
  fail(code: number, message: string): void
}

/** A connection on an HTTP fallback (http-session.ts): its frames and its end are handed in by the transport, as Bun does for a WebSocket. */
export interface PusherHttpSocket extends PusherSocket {
  /** One client frame (one string of an xhr_send). */
  message(_ws: unknown, raw: string): void
  /** The client showed it is alive without a frame (an empty xhr_send, a poll). */
  pong(): void
  /** The transport ended: the ticket, channels and user given back. */
  close(): void
}

/** A client's frame, parsed: `event` checked to be a string. */
export interface ClientFrame {
  event: string
  channel?: unknown
  data?: unknown
}

/** Client events (client-*) a socket may send a second: each socket holds its own bucket of it. */
export const clientEventBucket = tokenBucket(LIMITS.clientEventsPerSec, LIMITS.clientEventsPerSec)

/** How a refusal of the door is told on a socket already upgraded: Pusher's error frame and close code. */
export const refusalCode = (r: Refusal): [number, string] =>
  r.reason === 'draining'
    ? [CODE.reconnect, 'the server is shutting down: reconnect']
    : [
        CODE.overCapacity,
        `over capacity: ${r.reason === 'connections' ? 'MAX_CONNECTIONS' : r.reason === 'connections_per_ip' ? 'MAX_CONNECTIONS_PER_IP' : 'MAX_CONNECTIONS_PER_USER'} reached`,
      ]

export interface SocketsDeps {
  config: Config
  broker: Broker
  metrics: Metrics
  /** The one door of every face (hub/admission.ts): limits, origin, connect rate, draining, liveness. */
  door: Door
  /** A client's frame, to the face's handlers (index.ts); a rejected promise is told as an error frame. */
  dispatch(s: PusherSocket, f: ClientFrame): Promise<void> | void
  /** A socket closed: its channels and its user given back (channels.ts). */
  closed(s: PusherSocket): void
}

/** The Pusher face's connections on this node. */
export interface PusherSockets {
  /** This node's open Pusher sockets, by socket id. */
  readonly open: ReadonlyMap<string, PusherSocket>
  /** GET /app/:key, a Bun route. */
  upgrade(req: Request & { params?: Record<string, string> }, server: Server<unknown>): Response | undefined
  /**
   * An HTTP fallback session through the same door (http-transports.ts): the socket, open on
   * `wire` (connection_established, or Pusher's error and close for a refusal it can speak),
   * or the HTTP answer of a refusal before it (a foreign origin, the connect rate).
   */
  connect(wire: PusherWire, req: Request, server: Server<unknown>, appKey: string): PusherHttpSocket | Response
  /** True once drain began: the door refuses new connections of every face. */
  readonly draining: boolean
  /** Drain: every socket closed with 4200 (pusher-js reconnects, to another node), none opened after. */
  closeAll(): void
  /** Once every socket closed (or a second passed): how many are still open. */
  gone(): Promise<number>
}

/**
 * The connection: the upgrade through the door, open, each frame (rate limit, parse, then the
 * face's dispatch), close, and the door's liveness rule in Pusher's timings.
 */
export function pusherSockets(deps: SocketsDeps): PusherSockets {
  const { config, broker, metrics, door } = deps
  const key = config.PUSHER_KEY!
  const frameBucket = tokenBucket(config.RATE_LIMIT_PER_SEC, config.RATE_LIMIT_BURST)
  /** Seconds of silence after which pusher-js (and the server) ping; below the idle cut-off. */
  const activityTimeout = Math.max(5, Math.min(120, Math.floor(config.IDLE_TIMEOUT_S / 2)))
  /** How long an answer to the server's pusher:ping may take (so ping + answer fit in IDLE_TIMEOUT_S). */
  const pongTimeoutMs = Math.min(LIMITS.pongTimeoutS, activityTimeout) * 1000
  /** The door's liveness rule in Pusher's timings (pusher:ping, then 4201). */
  const idleRule: IdleRule = { pingAfterMs: activityTimeout * 1000, answerWithinMs: pongTimeoutMs }

  /** Socket ids: this process's random number, then a counter (unique cluster-wide in practice). */
  const prefix = 1 + Math.floor(Math.random() * 2_000_000_000)
  let next = 0
  const sockets = new Map<string, Socket>()
  let draining = false

  /**
   * A Pusher socket's data (see app.ts's Socket: Elysia's Bun handlers call these with Bun's
   * socket). Rate-limit fields of the socket's frames, its admission ticket and its liveness
   * are the record's own (Bucket, Ticket, Liveness, Strikes).
   */
  class Socket implements PusherHttpSocket, Bucket, Ticket, Liveness, Strikes {
    readonly id = `${prefix}.${next++}`
    ws!: PusherWire
    channels = new Map<string, Sub>()
    user: string | undefined = undefined
    tokens: number
    refilledAt: number
    events: Bucket = clientEventBucket.full()
    heard = false
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
    open(ws: PusherWire) {
      this.ws = ws
      if (this.appKey !== key) return this.fail(CODE.appKey, `App key ${this.appKey.slice(0, 64)} not in this cluster: check PUSHER_KEY`)
      if (!(this.protocol >= 5 && this.protocol <= 7))
        return this.fail(CODE.protocol, `Unsupported protocol version ${this.protocol} (5..7 are)`)
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
      if (!f || typeof f !== 'object' || typeof f.event !== 'string')
        return this.send(pusherFrames.error(null, 'event: every frame needs an event name'))
      const done = deps.dispatch(this, f as ClientFrame)
      if (done)
        done.catch((err) => {
          log.warn('pusher frame failed', { socket: this.id, event: f.event, err })
          this.send(pusherFrames.error(null, `${f.event}: not available right now (${broker.problem() ?? 'internal error'})`))
        })
    }
    close() {
      this.closed = true
      door.release(this)
      if (!sockets.delete(this.id)) return
      metrics.connections.dec()
      deps.closed(this)
    }
    pong() {
      heard(this)
    }
    send(frame: string) {
      if (this.closed) return
      if (this.ws.send(frame) === 0) this.fail(CODE.overCapacity, 'slow consumer: the connection could not keep up')
    }
    fail(code: number, message: string) {
      if (this.closed) return
      this.ws.send(pusherFrames.error(code, message))
      this.closed = true
      this.ws.close(code, message.slice(0, 120))
    }
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
    const socket = new Socket(appKey, Number(url.searchParams.get('protocol') ?? 7), performance.now())
    const refused = door.admit(socket, req.headers.get('origin') ?? undefined, door.remote(req, server))
    if (refused?.reason === 'origin_not_allowed' || refused?.reason === 'connect_rate') return refusalResponse(refused)
    socket.refused = refused
    if (!refused) door.upgrading(socket)
    if (server.upgrade(req, { data: socket })) return undefined
    door.release(socket)
    return Response.json(
      { error: 'bad_request', reason: 'expected a WebSocket upgrade (the Pusher protocol at /app/:key)' },
      { status: 400 },
    )
  }

  function connect(wire: PusherWire, req: Request, server: Server<unknown>, appKey: string): PusherHttpSocket | Response {
    const url = new URL(req.url)
    const socket = new Socket(appKey, Number(url.searchParams.get('protocol') ?? 7), performance.now())
    const refused = door.admit(socket, req.headers.get('origin') ?? undefined, door.remote(req, server))
    if (refused?.reason === 'origin_not_allowed' || refused?.reason === 'connect_rate') return refusalResponse(refused)
    socket.refused = refused
    socket.open(wire)
    return socket
  }

  return {
    open: sockets,
    upgrade,
    connect,
    get draining() {
      return draining
    },
    closeAll() {
      draining = true
      for (const s of sockets.values()) s.fail(CODE.reconnect, 'server shutting down: reconnect')
      clearInterval(sweep)
    },
    async gone() {
      const until = Date.now() + 1000
      while (sockets.size > 0 && Date.now() < until) await Bun.sleep(20)
      return sockets.size
    },
  }
}
