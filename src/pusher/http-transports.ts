import type { Server } from 'bun'
import type { Config } from '../config'
import { readCapped } from '../core/body'
import type { Door } from '../hub/admission'
import type { SessionRelay } from '../hub/session-relay'
import { log } from '../log'
import { HEARTBEAT, HttpSession, PRELUDE, STREAM_RENEWED_AFTER, lineBytes } from './http-session'
import type { Receiver, SessionHost } from './http-session'
import { CODE } from './protocol'
import type { PusherSockets } from './socket'

/**
 * pusher-js's HTTP fallbacks (docs/pusher.md, "HTTP fallbacks"), what it uses when WebSockets
 * fail: `POST /pusher/app/:key/:server/:session/xhr_streaming` (a response that stays open),
 * `…/xhr` (a long poll), `…/xhr_send` (client frames, a JSON array of strings). A session is a
 * Pusher socket of the same face (socket.ts: the door, rate limits, liveness, channels,
 * sign-in) on an HttpSession wire. The session id is the client's (SockJS's URL), so it is
 * bound to the address that opened it: a request from elsewhere is told 404.
 *
 * No sticky sessions: with Redis the holder records each session in the ledger's book
 * `pusher-http` (with its address) and a request that reaches another node goes through the
 * holder's node topic (`ph:<node>`, hub/session-relay.ts): an xhr_send's frames, and a
 * poll or a renewed stream, which the holder answers through the asking node's topic.
 */

/** A poll is held this long at most (a third of IDLE_TIMEOUT_S, at most this), then answered with a heartbeat (below pusher-js's 30 s pong timeout). */
const POLL_HOLD_MAX_MS = 20_000
/** A stream quiet this long gets a heartbeat line (pusher-js answers with an empty xhr_send: the client is alive). */
const HEARTBEAT_MS = 25_000
/** A session without a request this long is over (half of IDLE_TIMEOUT_S, at most this): the client is gone (pusher-js polls again at once). */
const DETACHED_MAX_MS = 30_000
/** After the client left a request (aborted it), this long for its next one (pusher-js renews a full stream at once). */
const ABORT_GRACE_MS = 2_000
/** Frames an xhr_send may carry. */
const MAX_SEND_FRAMES = 100
/** How long a node waits for the holder's first answer to a relayed request (a poll may be held POLL_HOLD_MAX_MS). */
const AWAY_WAIT_MS = POLL_HOLD_MAX_MS + 10_000
/** The `:server` and `:session` of the URL (pusher-js: a number below 1000, 8 base-32 characters). */
const ID_PART = /^[A-Za-z0-9_-]{1,64}$/

type Params = Record<string, string>
/** A Bun route of the transports. */
export type HttpRoute = (req: Request & { params: Params }, server: Server<unknown>) => Response | Promise<Response>

export interface HttpTransports {
  /** Bun routes for serve.routes (POST, and OPTIONS for a page's preflight). */
  readonly routes: Record<string, { POST: HttpRoute; OPTIONS: HttpRoute }>
  /** Every frame the Pusher fan-out publishes on a topic, to this node's sessions of it (but the socket `except`). */
  publish(topic: string, frame: string, except: string | undefined): void
  /** A message on this node's topic (`ph:<node>`), relayed by another node. */
  relayed(payload: string): void
  /** Sessions held by this node. */
  readonly size: number
  stop(): void
}

export interface HttpTransportsDeps {
  config: Config
  nodeId: string
  server: () => Server<unknown>
  door: Door
  sockets: Pick<PusherSockets, 'connect'>
  /** The ledger's book `pusher-http` on the node topics `ph:` (one node: nothing relayed). */
  relay: SessionRelay
}

const JS_HEADERS = {
  'content-type': 'application/javascript; charset=UTF-8',
  'cache-control': 'no-store, no-cache, must-revalidate, max-age=0',
}

/** Messages between nodes on `ph:<node>`. */
type Relayed =
  /** An xhr_send for a session of the node. */
  | { t: 'send'; session: string; frames: string[] }
  /** A poll (`stream` false) or a renewed stream for a session of the node, answered on `reply`'s topic under `id`. */
  | { t: 'recv'; session: string; stream: boolean; reply: string; id: string }
  /** The asking node's client left the request `id`. */
  | { t: 'gone'; session: string; id: string }
  /** The holder's lines for the request `id`; `end`: its last. */
  | { t: 'data'; id: string; chunk: string; end?: boolean }
  /** The holder has no such session (any more). */
  | { t: 'nf'; id: string }

const decoder = new TextDecoder()

/** A stream's response, as the receiver of its session's lines (bounded as a slow consumer's). */
class StreamReceiver implements Receiver {
  readonly streaming = true
  at = performance.now()
  /** Characters written (as pusher-js counts its response text). */
  private chars = 0
  readonly body: ReadableStream<Uint8Array>
  private controller!: ReadableStreamDefaultController<Uint8Array>
  private ended = false
  constructor(
    private readonly max: number,
    /** The client left (or the stream broke). */
    gone: (r: StreamReceiver) => void,
  ) {
    this.body = new ReadableStream<Uint8Array>(
      {
        start: (c) => {
          this.controller = c
        },
        cancel: () => {
          this.ended = true
          gone(this)
        },
      },
      { highWaterMark: max, size: (chunk) => chunk?.byteLength ?? 0 },
    )
  }
  get full() {
    return this.chars > STREAM_RENEWED_AFTER
  }
  buffered() {
    return this.ended ? 0 : this.max - (this.controller.desiredSize ?? this.max)
  }
  write(chunk: string | Uint8Array, chars?: number): number {
    if (this.ended) return -1
    const bytes = typeof chunk === 'string' ? new TextEncoder().encode(chunk) : chunk
    if (this.buffered() + bytes.byteLength > this.max) return 0
    this.chars += chars ?? (typeof chunk === 'string' ? chunk.length : bytes.byteLength)
    this.at = performance.now()
    try {
      this.controller.enqueue(bytes)
    } catch {
      return -1
    }
    return bytes.byteLength
  }
  end(last?: string) {
    if (this.ended) return
    this.ended = true
    try {
      if (last) this.controller.enqueue(new TextEncoder().encode(last))
      this.controller.close()
    } catch {}
  }
}

/** A held poll: answered once, by its first lines. */
class PollReceiver implements Receiver {
  readonly streaming = false
  readonly full = false
  readonly at = performance.now()
  private answered = false
  constructor(private readonly answer: (body: string) => void) {}
  buffered() {
    return 0
  }
  write(chunk: string | Uint8Array): number {
    const text = typeof chunk === 'string' ? chunk : decoder.decode(chunk)
    this.end(text)
    return text.length
  }
  end(last?: string) {
    if (this.answered) return
    this.answered = true
    this.answer(last ?? '')
  }
}

export function httpTransports(deps: HttpTransportsDeps): HttpTransports {
  const { config, nodeId, door, relay } = deps
  const max = config.MAX_BUFFERED_BYTES
  // A client that went without a word (its last request's end unseen) is let go within IDLE_TIMEOUT_S: held poll, then no next one.
  const pollHoldMs = Math.min(POLL_HOLD_MAX_MS, Math.round(config.IDLE_TIMEOUT_S * 333))
  const detachedMs = Math.min(DETACHED_MAX_MS, config.IDLE_TIMEOUT_S * 500)
  const sessions = new Map<string, HttpSession>()
  /** The sessions of each Pusher topic on this node (Bun's topics carry WebSockets only). */
  const byTopic = new Map<string, Set<HttpSession>>()
  /** Requests this node holds for sessions of another node, by id: what the holder's lines go to. */
  const away = new Map<string, (m: Relayed) => void>()
  let nextAway = 0

  const host: SessionHost = {
    subscribe(topic, s) {
      let set = byTopic.get(topic)
      if (!set) byTopic.set(topic, (set = new Set()))
      set.add(s)
    },
    unsubscribe(topic, s) {
      const set = byTopic.get(topic)
      if (set?.delete(s) && set.size === 0) byTopic.delete(topic)
    },
    server: deps.server,
    ended(s) {
      s.socket?.close()
      relay.drop(s.id)
      settle(s)
    },
  }

  /** The answer headers: the page's origin allowed (ALLOWED_ORIGINS, or any when unset), as SockJS servers answer XHRs from another origin. */
  function cors(req: Request): Record<string, string> {
    const origin = req.headers.get('origin')
    if (!origin || (config.ALLOWED_ORIGINS && !config.ALLOWED_ORIGINS.includes(origin))) return {}
    return { 'access-control-allow-origin': origin, 'access-control-allow-credentials': 'true', vary: 'Origin' }
  }
  const json = (req: Request, status: number, body: object) => Response.json(body, { status, headers: cors(req) })
  const notFound = (req: Request) =>
    json(req, 404, { error: 'not_found', reason: 'session: no such session here (open one with xhr_streaming or xhr)' })

  const preflight: HttpRoute = (req) =>
    new Response(null, {
      status: 204,
      headers: {
        ...cors(req),
        'access-control-allow-methods': 'POST, OPTIONS',
        'access-control-allow-headers': req.headers.get('access-control-request-headers') ?? 'content-type',
        'access-control-max-age': '86400',
      },
    })

  /** The session id of the URL, or why it is none. */
  function sessionId(p: Params): string | undefined {
    return ID_PART.test(p.server ?? '') && ID_PART.test(p.session ?? '') ? `${p.server}/${p.session}` : undefined
  }

  /** A session's lines to a local request: a streaming response, or a held poll's promise. */
  function serve(s: HttpSession, streaming: boolean, req: Request, server: Server<unknown>): Response | Promise<Response> {
    // Quiet for long stretches: Bun's idle timeout of HTTP requests must not cut them.
    server.timeout(req, 0)
    s.socket?.pong()
    const headers = { ...JS_HEADERS, ...cors(req) }
    if (streaming) {
      const r = new StreamReceiver(max, (gone) => left(s, gone))
      r.write(PRELUDE)
      s.attach(r)
      whenLeft(req, () => left(s, r))
      settle(s)
      return new Response(r.body, { headers })
    }
    return new Promise<Response>((resolve) => {
      const r = new PollReceiver((body) => resolve(new Response(body, { headers })))
      s.attach(r)
      whenLeft(req, () => left(s, r))
      settle(s)
    })
  }

  /** Once the client leaves the request (also when it left during an await before). */
  function whenLeft(req: Request, then: () => void) {
    if (req.signal.aborted) return void queueMicrotask(then)
    req.signal.addEventListener('abort', then, { once: true })
  }

  /** The client left a request: the session waits a moment for the next (a renewed stream). */
  function left(s: HttpSession, r: Receiver) {
    if (s.receiver !== r) return
    s.detach(r, true)
  }

  /** A session whose close went out to the client is gone at once (else it waits for the client's next request). */
  function settle(s: HttpSession) {
    if (s.delivered) sessions.delete(s.id)
  }

  async function receive(streaming: boolean, req: Request & { params: Params }, server: Server<unknown>): Promise<Response> {
    const id = sessionId(req.params)
    if (!id) return json(req, 400, { error: 'bad_request', reason: 'session: the URL needs /:server/:session of 1..64 of A-Z a-z 0-9 _ -' })
    const remote = door.remote(req, server)
    const local = sessions.get(id)
    if (local) return local.remote === remote ? serve(local, streaming, req, server) : notFound(req)
    if (relay.shared) {
      let holder: { node: string; info: string } | undefined
      try {
        holder = await relay.holder(id)
      } catch (err) {
        log.warn('pusher http: session not looked up', { err })
        return json(req, 503, { error: 'unavailable', reason: 'sessions cannot be shared right now' })
      }
      if (holder && holder.node !== nodeId)
        return holder.info === remote ? fromHolder(holder.node, id, streaming, req, server) : notFound(req)
    }
    const s = new HttpSession(id, remote, max, host)
    const socket = deps.sockets.connect(s, req, server, req.params.key ?? '')
    if (socket instanceof Response) {
      for (const [k, v] of Object.entries(cors(req))) socket.headers.set(k, v)
      return socket
    }
    s.socket = socket
    if (s.done) return serve(s, streaming, req, server) // refused in Pusher's way: its error and close, then nothing kept
    sessions.set(id, s)
    try {
      await relay.hold(id, remote)
    } catch (err) {
      // Without it an xhr_send to another node could not reach this session: refused, as a broker outage.
      log.warn('pusher http: session not recorded', { err })
      sessions.delete(id)
      s.close(CODE.reconnect, 'sessions cannot be shared right now: reconnect')
      return json(req, 503, { error: 'unavailable', reason: 'sessions cannot be shared right now' })
    }
    return serve(s, streaming, req, server)
  }

  /** Frames of an xhr_send to a session here: each as a frame of the socket (rate limit, parse, dispatch); `[]` says it is alive. */
  function hand(s: HttpSession, frames: string[]) {
    const socket = s.socket
    if (!socket || s.done) return
    if (frames.length === 0) return socket.pong()
    for (const f of frames) socket.message(undefined, f)
  }

  async function send(req: Request & { params: Params }, server: Server<unknown>): Promise<Response> {
    const id = sessionId(req.params)
    if (!id) return notFound(req)
    const remote = door.remote(req, server)
    const local = sessions.get(id)
    if (local && (local.remote !== remote || local.done)) return notFound(req)
    if (!local && !relay.shared) return notFound(req)
    const text = await readCapped(req, config.MAX_FRAME_BYTES)
    if (text === undefined)
      return json(req, 413, { error: 'too_large', reason: `body: at most MAX_FRAME_BYTES (${config.MAX_FRAME_BYTES}) bytes` })
    let body: unknown
    try {
      body = JSON.parse(text)
    } catch {
      return json(req, 400, { error: 'bad_request', reason: 'body: not valid JSON (a JSON array of frames, each a JSON string)' })
    }
    if (!Array.isArray(body) || !body.every((f) => typeof f === 'string'))
      return json(req, 400, { error: 'bad_request', reason: 'body: a JSON array of frames, each a JSON string' })
    if (body.length > MAX_SEND_FRAMES) return json(req, 400, { error: 'bad_request', reason: `body: at most ${MAX_SEND_FRAMES} frames` })
    if (local) {
      hand(local, body)
      return new Response(null, { status: 204, headers: cors(req) })
    }
    // Another node's session: relayed on its node topic once the book said it holds it (for this address).
    try {
      const holder = await relay.holder(id)
      if (!holder || holder.node === nodeId || holder.info !== remote) return notFound(req)
      await relay.send(holder.node, JSON.stringify({ t: 'send', session: id, frames: body } satisfies Relayed))
    } catch (err) {
      log.warn('pusher http: xhr_send not relayed', { err })
      return json(req, 503, { error: 'unavailable', reason: 'the session cannot be reached right now' })
    }
    return new Response(null, { status: 204, headers: cors(req) })
  }

  /**
   * A poll or a renewed stream that reached this node for a session of `node`: the request is
   * relayed there, and the holder's lines come back on this node's topic under a request id.
   */
  async function fromHolder(node: string, session: string, streaming: boolean, req: Request, server: Server<unknown>): Promise<Response> {
    server.timeout(req, 0)
    const id = `${nodeId}.${++nextAway}`
    const headers = { ...JS_HEADERS, ...cors(req) }
    let abandoned = false
    const gone = () => {
      if (abandoned) return
      abandoned = true
      away.delete(id)
      void relay.send(node, JSON.stringify({ t: 'gone', session, id } satisfies Relayed)).catch(() => {})
    }
    try {
      await relay.listen()
      await relay.send(node, JSON.stringify({ t: 'recv', session, stream: streaming, reply: nodeId, id } satisfies Relayed))
    } catch (err) {
      log.warn('pusher http: request not relayed', { err })
      return json(req, 503, { error: 'unavailable', reason: 'the session cannot be reached right now' })
    }
    return new Promise<Response>((resolve) => {
      let stream: StreamReceiver | undefined
      // No word from the holder (it died, Redis lost the lines): the request ends, pusher-js reconnects.
      const expire = () => {
        gone()
        if (stream) stream.end()
        else resolve(json(req, 503, { error: 'unavailable', reason: 'the node holding the session did not answer' }))
      }
      let timer = setTimeout(expire, AWAY_WAIT_MS)
      whenLeft(req, () => away.has(id) && gone())
      away.set(id, (m) => {
        if (m.t === 'nf') {
          clearTimeout(timer)
          away.delete(id)
          return resolve(notFound(req))
        }
        if (m.t !== 'data') return
        if (!streaming) {
          clearTimeout(timer)
          away.delete(id)
          return resolve(new Response(m.chunk, { headers }))
        }
        // A stream hears the holder at least every HEARTBEAT_MS.
        clearTimeout(timer)
        timer = setTimeout(expire, 2 * HEARTBEAT_MS)
        if (!stream) {
          stream = new StreamReceiver(max, () => {
            if (!away.has(id)) return
            clearTimeout(timer)
            gone()
          })
          resolve(new Response(stream.body, { headers }))
        }
        if (m.end) {
          clearTimeout(timer)
          away.delete(id)
          return stream.end(m.chunk)
        }
        // Past the limit here: the stream ends, pusher-js reconnects.
        if (stream.write(m.chunk) === 0) {
          clearTimeout(timer)
          gone()
          stream.end()
        }
      })
    })
  }

  /** A request another node holds for a session of this node: its lines are relayed back there. */
  function remoteReceiver(node: string, id: string, streaming: boolean): Receiver {
    let ended = false
    let chars = 0
    const out = (chunk: string, end: boolean) =>
      relay
        .send(node, JSON.stringify({ t: 'data', id, chunk, ...(end ? { end } : {}) } satisfies Relayed))
        .catch((err) => log.warn('pusher http: lines not relayed', { err }))
    const r = {
      streaming,
      at: performance.now(),
      id,
      // The asking node writes exactly these lines to its client's stream: counted here, where the writing is decided.
      get full() {
        return chars > STREAM_RENEWED_AFTER
      },
      buffered: () => 0,
      write(chunk: string | Uint8Array, n?: number) {
        if (ended) return -1
        const text = typeof chunk === 'string' ? chunk : decoder.decode(chunk)
        chars += n ?? text.length
        r.at = performance.now()
        if (!streaming) {
          ended = true
          void out(text, true)
        } else void out(text, false)
        return text.length
      },
      end(last?: string) {
        if (ended) return
        ended = true
        void out(last ?? '', true)
      },
    }
    return r
  }

  function relayed(payload: string) {
    let m: Relayed
    try {
      m = JSON.parse(payload)
    } catch {
      return
    }
    if (m.t === 'data' || m.t === 'nf') return away.get(m.id)?.(m)
    const s = sessions.get(m.session)
    if (m.t === 'send') return s && Array.isArray(m.frames) && hand(s, m.frames)
    if (m.t === 'gone') {
      const r = s?.receiver as (Receiver & { id?: string }) | undefined
      if (s && r?.id === m.id) left(s, r)
      return
    }
    if (m.t === 'recv') {
      if (!s) return void relay.send(m.reply, JSON.stringify({ t: 'nf', id: m.id } satisfies Relayed)).catch(() => {})
      s.socket?.pong()
      const r = remoteReceiver(m.reply, m.id, m.stream)
      if (m.stream) r.write(PRELUDE)
      s.attach(r)
      settle(s)
    }
  }

  /** Polls held too long get a heartbeat, quiet streams one too; sessions whose client went are ended. */
  const sweep = setInterval(() => {
    const now = performance.now()
    for (const s of sessions.values()) {
      const r = s.receiver
      if (r) {
        if (!r.streaming && now - r.at > pollHoldMs) {
          s.detach(r)
          r.end(HEARTBEAT)
        } else if (r.streaming && !r.full && now - r.at > HEARTBEAT_MS) r.write(HEARTBEAT)
        continue
      }
      if (now - s.detachedAt <= (s.left ? ABORT_GRACE_MS : detachedMs)) continue
      sessions.delete(s.id)
      if (!s.done) s.socket?.fail(CODE.pongNotReceived, 'no request of the client within the timeout: reconnect')
    }
  }, 1000)
  sweep.unref?.()

  const base = '/pusher/app/:key/:server/:session'
  return {
    routes: {
      [`${base}/xhr_streaming`]: { POST: (req, server) => receive(true, req, server), OPTIONS: preflight },
      [`${base}/xhr`]: { POST: (req, server) => receive(false, req, server), OPTIONS: preflight },
      [`${base}/xhr_send`]: { POST: send, OPTIONS: preflight },
    },
    publish(topic, frame, except) {
      const set = byTopic.get(topic)
      if (!set) return
      // One JSON string per frame for every session, its stream line made once too.
      const escaped = JSON.stringify(frame)
      let line: Uint8Array | undefined
      const lineOf = () => (line ??= lineBytes(escaped))
      for (const s of set) {
        if (except !== undefined && s.socket?.id === except) continue
        if (s.push(escaped, lineOf) === 0) s.socket?.fail(CODE.overCapacity, 'slow consumer: the connection could not keep up')
      }
    },
    relayed,
    get size() {
      return sessions.size
    },
    stop: () => clearInterval(sweep),
  }
}
