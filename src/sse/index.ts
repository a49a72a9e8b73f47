import type { Server } from 'bun'
import type { Book } from '../cluster/ledger'
import type { Broker } from '../broker/types'
import type { Config } from '../config'
import { readCapped } from '../core/body'
import { sseNodeTopic } from '../core/topic'
import type { Identity } from '../core/identity'
import { refusalResponse } from '../hub/admission'
import type { Door, Ticket } from '../hub/admission'
import type { DeliveryHook, Hub } from '../hub/hub'
import { sessionRelay } from '../hub/session-relay'
import { log } from '../log'
import type { Metrics } from '../metrics'
import { originAllowed, preflight, withCors } from './cors'
import { sseFanOut } from './fanout'
import { COMMENT, SseStream, asSocket } from './stream'

export interface SseDeps {
  config: Config
  broker: Broker
  metrics: Metrics
  nodeId: string
  server: () => Server<unknown>
  /** The one door of every face (hub/admission.ts). */
  door: Door
  hub: Pick<Hub, 'open' | 'message' | 'close' | 'audit'>
  /**
   * Who is connecting, as /ws decides it (authentication, then the door's user limit): the
   * identity, or the answer that refuses it (the ticket is then released).
   */
  identify(req: Request, remote: string, t: Ticket): Promise<Identity | Response>
  /** The ledger's book of open sessions (key: session, member: the node holding it), read by POSTs on other nodes. */
  sessions: Book
}

/** A Bun route (Bun fills `params` from `/sse/:session`). */
export type SseRoute = (req: Request & { params: Record<string, string> }, server: Server<unknown>) => Response | Promise<Response>

/** The SSE face as app.ts wires it. */
export interface Sse {
  /** Bun routes for serve.routes: `GET /sse`, `POST /sse/:session`, and their CORS preflights. */
  readonly routes: Record<string, { GET?: SseRoute; POST?: SseRoute; OPTIONS?: SseRoute }>
  /** For `hub.onDeliver`: the hub's frames to this node's streams, and POSTs relayed from other nodes. */
  readonly delivery: DeliveryHook
  /** SSE streams open on this node. */
  readonly size: number
  /** Stops the keepalive. */
  stop(): void
}

/** A comment at least this often on every stream (the contract: every 15 s at most apart). */
const KEEPALIVE_MS = 10_000
/** Client frames a POST may carry. */
const MAX_POST_FRAMES = 100
/** `<nodeId>.<22 base64url chars>`: 128 random bits after the holding node's id. */
const SESSION_MAX = 200

const notFound = () => Response.json({ error: 'not_found' }, { status: 404 })
const badRequest = (reason: string) => Response.json({ error: 'bad_request', reason }, { status: 400 })

/** The session id: the holding node (so any node knows where to relay a POST), then 128 random bits. */
function newSession(nodeId: string): string {
  return `${nodeId}.${Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('base64url')}`
}
const holderOf = (session: string) => session.slice(0, Math.max(0, session.lastIndexOf('.')))

/**
 * Server-Sent Events with POST, for clients whose network breaks WebSockets (docs/protocol.md,
 * "Server-Sent Events"): `GET /sse` is a session of the hub like a /ws connection (the same door,
 * identity, welcome, rooms, dispatch, limits, sweep and drain; stream.ts is its socket), its
 * frames written once per frame to this node's streams (fanout.ts); `POST /sse/:session` hands
 * client frames to it, from any node: with Redis, a node that does not hold the session relays
 * them on the holder's node topic (`s:<node>`), in order, and the answers come down the stream.
 */
export function createSse(deps: SseDeps): Sse {
  const { config, broker, metrics, door, hub, nodeId } = deps
  const origins = config.ALLOWED_ORIGINS
  const streams = new Map<string, SseStream>()
  const fanout = sseFanOut({
    metrics,
    posted,
    cut: (s) => s.conn && hub.audit({ event: 'slow_consumer', user: s.conn.identity.user.id, conn: s.conn.id }),
  })
  const host = {
    subscribe: fanout.subscribe,
    unsubscribe: fanout.unsubscribe,
    server: deps.server,
    ended(s: SseStream, code: number, reason: string) {
      streams.delete(s.session)
      relay.drop(s.session)
      door.release(s)
      if (s.conn) hub.close(s.conn, code, reason)
    },
  }
  /** The book of sessions and this node's topic of relayed POSTs, watched from the first stream on (Redis only: one node needs no relay). */
  const relay = sessionRelay({ broker, nodeId, book: deps.sessions, topic: sseNodeTopic })
  const keepalive = setInterval(() => {
    for (const s of streams.values()) s.write(COMMENT)
  }, KEEPALIVE_MS)
  keepalive.unref?.()

  /**
   * Frames for a stream of this node, handled one after the other in the order they came: a
   * frame that needs an await (a join, an append that is not immediate) holds the frames behind
   * it, also those of later POSTs, so that a client's POSTs keep their order whichever node
   * they went to and whatever each frame waits for. Each goes through the hub's dispatch as a /ws frame.
   */
  function dispatch(s: SseStream, frames: unknown[]) {
    const run = () => handle(s, frames, 0)
    const tail = s.pending ? s.pending.then(run) : run()
    if (!tail) return
    s.pending = tail
    void tail.then(() => {
      if (s.pending === tail) s.pending = undefined
    })
  }

  function handle(s: SseStream, frames: unknown[], from: number): Promise<void> | undefined {
    const c = s.conn
    for (let i = from; i < frames.length; i++) {
      if (!c || s.done) return undefined
      const p = hub.message(c, frames[i])
      if (p) return p.catch((err) => log.error('frame failed', { conn: c.id, err })).then(() => handle(s, frames, i + 1))
    }
    return undefined
  }

  /** A POST relayed from another node: `{"session":…,"frames":[…]}`. A session that ended meanwhile: dropped. */
  function posted(frame: string) {
    let m: { session?: unknown; frames?: unknown }
    try {
      m = JSON.parse(frame)
    } catch {
      return
    }
    const s = typeof m.session === 'string' ? streams.get(m.session) : undefined
    if (s && Array.isArray(m.frames)) dispatch(s, m.frames)
  }

  async function open(req: Request, server: Server<unknown>): Promise<Response> {
    const since = performance.now()
    const remote = door.remote(req, server)
    const s = new SseStream(newSession(nodeId), remote, config.MAX_BUFFERED_BYTES, host)
    const refused = door.admit(s, req.headers.get('origin') ?? undefined, remote)
    if (refused) return refusalResponse(refused)
    let who: Identity | Response
    try {
      who = await deps.identify(req, remote, s)
    } catch (err) {
      door.release(s)
      log.error('http error', { code: 'SSE', err })
      return Response.json({ error: 'internal' }, { status: 500 })
    }
    if (who instanceof Response) return who
    // Relayed POSTs arrive on this node's topic through the SSE hook: it must not sleep from now on.
    if (relay.shared) fanout.watchPosts()
    try {
      await relay.hold(s.session)
    } catch (err) {
      // Without it a POST to another node could not reach this stream: refuse, as a broker outage.
      door.release(s)
      log.warn('sse session not recorded', { err })
      return Response.json({ error: 'unavailable', reason: 'sessions cannot be shared right now' }, { status: 503 })
    }
    if (!door.opened(s) || req.signal.aborted) {
      door.release(s)
      relay.drop(s.session)
      return Response.json({ error: 'unavailable', reason: 'admission expired: reconnect' }, { status: 503 })
    }
    // A stream is quiet for long stretches: Bun's idle timeout of HTTP requests must not cut it.
    server.timeout(req, 0)
    streams.set(s.session, s)
    s.conn = hub.open(asSocket(s), who, { remote, userAgent: req.headers.get('user-agent') ?? '', since, transport: 'sse' })
    req.signal.addEventListener('abort', () => s.close(1006, 'stream ended by the client'), { once: true })
    return new Response(s.body, {
      headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-store', 'x-accel-buffering': 'no' },
    })
  }

  async function post(req: Request & { params: Record<string, string> }): Promise<Response> {
    const session = req.params.session ?? ''
    // The door's origin rule, for a POST too: a browser sends a plain-text POST without asking first.
    const origin = req.headers.get('origin')
    if (origin !== null && !originAllowed(origin, config.ALLOWED_ORIGINS))
      return Response.json({ error: 'forbidden', reason: 'origin_not_allowed' }, { status: 403 })
    if (session.length > SESSION_MAX) return notFound()
    const local = streams.get(session)
    const holder = holderOf(session)
    if (!local && (holder === nodeId || !relay.shared || !holder)) return notFound()
    const text = await readCapped(req, config.MAX_FRAME_BYTES)
    if (text === undefined)
      return Response.json(
        { error: 'too_large', reason: `body: at most MAX_FRAME_BYTES (${config.MAX_FRAME_BYTES}) bytes` },
        { status: 413 },
      )
    let body: unknown
    try {
      body = JSON.parse(text)
    } catch {
      return badRequest('body: not valid JSON')
    }
    const frames = Array.isArray(body) ? body : [body]
    if (frames.length === 0) return badRequest('body: a client frame or a non-empty array of them')
    if (frames.length > MAX_POST_FRAMES) return badRequest(`body: at most ${MAX_POST_FRAMES} frames`)
    if (local) {
      if (local.done) return notFound()
      dispatch(local, frames)
      return Response.json({}, { status: 202 })
    }
    // Another node's session: relayed on its node topic, once Redis said it is open. The 202
    // follows the publish, so a client that waits for it keeps its POSTs in order across nodes.
    try {
      if ((await relay.holder(session))?.node !== holder) return notFound()
      await relay.send(holder, `{"session":${JSON.stringify(session)},"frames":${JSON.stringify(frames)}}`)
    } catch (err) {
      log.warn('sse post not relayed', { err })
      return Response.json({ error: 'unavailable', reason: 'the session cannot be reached right now' }, { status: 503 })
    }
    return Response.json({}, { status: 202 })
  }

  return {
    routes: {
      '/sse': { GET: async (req, server) => withCors(req, await open(req, server), origins), OPTIONS: (req) => preflight(req, origins) },
      '/sse/:session': { POST: async (req) => withCors(req, await post(req), origins), OPTIONS: (req) => preflight(req, origins) },
    },
    delivery: fanout.hook,
    get size() {
      return streams.size
    },
    stop: () => clearInterval(keepalive),
  }
}
