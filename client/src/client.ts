import { backoffDelay } from './backoff'
import type { BackoffOptions } from './backoff'
import { Emitter } from './emitter'
import { jwtExpiry } from './jwt'
import type {
  AckFrame,
  ChatMessage,
  DirectMessage,
  ErrorCode,
  ErrorFrame,
  HistoryFrame,
  JoinedFrame,
  LeftFrame,
  PongFrame,
  PresenceFrame,
  ServerFrame,
  TypingFrame,
  User,
  WelcomeFrame,
} from './types'

/** The parts of the platform WebSocket the client uses (browser, Bun, Node 22+, or the `ws` package). */
export interface WebSocketLike {
  readonly readyState: number
  onopen: ((ev: unknown) => void) | null
  onmessage: ((ev: { data: unknown }) => void) | null
  onclose: ((ev: { code: number; reason: string }) => void) | null
  onerror: ((ev: unknown) => void) | null
  send(data: string): void
  close(code?: number, reason?: string): void
}
export type WebSocketConstructor = new (url: string) => WebSocketLike

/** Time source and timers; tests pass a fake one. */
export interface Clock {
  now(): number
  setTimeout(fn: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
}

export interface ChatClientOptions {
  /** The server's WebSocket endpoint, e.g. `wss://chat.example.com/ws`. */
  url: string
  /**
   * Called before every connection and before the token expires: returns the current JWT
   * (or undefined when the server runs without auth). It may fetch a fresh one.
   */
  token?: () => string | undefined | Promise<string | undefined>
  /** With auth off: the user id and display name to connect as (`?user=&name=`). */
  user?: string
  name?: string
  /** Rooms to join besides the server's default room. */
  rooms?: string[]
  /** Reconnect backoff, or `false` to never reconnect. */
  reconnect?: BackoffOptions | false
  /** Send `refresh` this long before the token's `exp` (default 30 000 ms). */
  refreshMarginMs?: number
  /** Reject a request that got no answer in this time (default 30 000 ms; 0 = never). */
  requestTimeoutMs?: number
  /** Send a `ping` this often while connected (default 20 000 ms; 0 = never). */
  pingIntervalMs?: number
  /** Reconnect when a `ping` gets no `pong` in this time (default 10 000 ms). */
  pongTimeoutMs?: number
  /** Defaults to `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor
  clock?: Clock
  /** Connect in the constructor (default true); else call `connect()`. */
  autoConnect?: boolean
}

export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed'

/** A request the server answered with `error` (or that could not complete). */
export class ChatError extends Error {
  constructor(
    readonly code: ErrorCode | 'timeout' | 'closed',
    message: string,
  ) {
    super(message)
    this.name = 'ChatError'
  }
}

export interface Ack {
  /** The client id of the request. */
  id: string
  /** The server's message id. */
  msg?: string
  /** The message's seq in its room (chat). */
  seq?: number
}

export interface ClientEvents {
  /** Every frame from the server, before any processing. */
  frame: ServerFrame
  welcome: WelcomeFrame
  /** Room messages: in seq order per room, each once, across reconnects. */
  chat: ChatMessage
  dm: DirectMessage
  ack: AckFrame
  joined: JoinedFrame
  left: LeftFrame
  history: HistoryFrame
  presence: PresenceFrame
  typing: TypingFrame
  pong: PongFrame
  /** An `error` frame that answers no pending request of this client. */
  error: ErrorFrame
  state: ConnectionState
  close: { code: number; reason: string; willReconnect: boolean }
  reconnecting: { attempt: number; delayMs: number }
  /** The room's sequence restarted on the server (new `epoch`): seqs start over. */
  reset: { room: string; epoch: string; previousEpoch: string }
  /** Messages after `after` could not be recovered (the server's log no longer reaches back). */
  gap: { room: string; after: number }
  /** The token was replaced on the live connection. */
  refreshed: { exp?: number }
}

interface Pending {
  frame: Record<string, unknown> & { id: string; type: string }
  resolve: (value: never) => void
  reject: (err: ChatError) => void
  /** Sent again, with the same id, after a reconnect (the server deduplicates chat and dm). */
  resend: boolean
  timer?: unknown
}

interface RoomState {
  lastSeq?: number
  epoch?: string
  live: boolean
  /** While a join is in flight: its id and every chat frame of the room seen meanwhile. */
  recovering?: { id: string; buffer: ChatMessage[] }
  waiters: { resolve: (j: JoinedFrame) => void; reject: (e: ChatError) => void }[]
}

const OPEN = 1
const CONNECTING = 0

/**
 * A chat-server client: one WebSocket, reconnected with backoff; rooms re-joined with
 * `since`+`epoch` so that every room's messages arrive in order, once; requests that are
 * sent while offline wait in an outbox and keep their ids.
 */
export class ChatClient extends Emitter<ClientEvents> {
  readonly options: ChatClientOptions
  #ws?: WebSocketLike
  #state: ConnectionState = 'idle'
  #attempt = 0
  #rooms = new Map<string, RoomState>()
  #pending = new Map<string, Pending>()
  #prefix = Math.random().toString(36).slice(2, 10)
  #counter = 0
  #clock: Clock
  #reconnectTimer?: unknown
  #refreshTimer?: unknown
  #pingTimer?: unknown
  #token?: string
  #welcome?: WelcomeFrame

  constructor(options: ChatClientOptions) {
    super()
    this.options = options
    this.#clock = options.clock ?? realClock
    for (const room of options.rooms ?? []) this.#room(room)
    if (options.autoConnect !== false) void this.connect()
  }

  /** Connection state: `open` once the server's `welcome` arrived. */
  get state(): ConnectionState {
    return this.#state
  }

  /** Who the server says we are (from the last `welcome`). */
  get user(): User | undefined {
    return this.#welcome?.user
  }

  /** The rooms this client is in (or will re-join on reconnect). */
  get rooms(): string[] {
    return [...this.#rooms.keys()]
  }

  /** The last seq seen in a room, and its epoch. */
  position(room: string): { seq?: number; epoch?: string } {
    const r = this.#rooms.get(room)
    return { seq: r?.lastSeq, epoch: r?.epoch }
  }

  /** Requests that wait for a connection or an answer. */
  get outboxSize(): number {
    return this.#pending.size
  }

  // ---------------------------------------------------------------- requests

  /** Publishes to a room; resolves with the ack (`msg`, `seq`), rejects with the server's error. */
  send(room: string, body: string, data?: unknown): Promise<Ack> {
    return this.#request<Ack>({ type: 'chat', room, body, ...(data === undefined ? {} : { data }) }, true)
  }

  /** A direct message to every connection of user `to`. */
  dm(to: string, body: string, data?: unknown): Promise<Ack> {
    return this.#request<Ack>({ type: 'dm', to, body, ...(data === undefined ? {} : { data }) }, true)
  }

  /** One page of a room's history, oldest first. */
  async history(room: string, opts: { before?: number; limit?: number } = {}): Promise<{ messages: ChatMessage[]; more: boolean }> {
    const f = await this.#request<HistoryFrame>({ type: 'history', room, ...opts }, true)
    return { messages: f.messages, more: f.more }
  }

  /** Who is in a room, cluster-wide. */
  async presence(room: string): Promise<User[]> {
    const f = await this.#request<PresenceFrame>({ type: 'presence', room }, true)
    return f.users ?? []
  }

  /** Joins a room (kept across reconnects); resolves with its `joined` frame. */
  join(room: string): Promise<JoinedFrame> {
    const state = this.#room(room)
    const done = new Promise<JoinedFrame>((resolve, reject) => state.waiters.push({ resolve, reject }))
    if (this.#state === 'open' && !state.recovering) this.#startJoin(room, state)
    return done
  }

  /** Leaves a room; it is no longer re-joined. */
  async leave(room: string): Promise<void> {
    const state = this.#rooms.get(room)
    this.#rooms.delete(room)
    for (const w of state?.waiters ?? []) w.reject(new ChatError('closed', `left ${room}`))
    if (this.#state !== 'open') return
    await this.#request<LeftFrame>({ type: 'leave', room }, false)
  }

  /** Tells the room's other members that this user is typing (not stored, not acked). */
  typing(room: string): void {
    if (this.#state === 'open') this.#raw({ type: 'typing', room })
  }

  /** Round trip to the server. */
  async ping(): Promise<void> {
    await this.#request<PongFrame>({ type: 'ping' }, false)
  }

  // ---------------------------------------------------------------- lifecycle

  /** Opens the connection (done by the constructor unless `autoConnect: false`). */
  async connect(): Promise<void> {
    if (this.#state === 'connecting' || this.#state === 'open') return
    this.#clock.clearTimeout(this.#reconnectTimer)
    this.#setState('connecting')
    let token: string | undefined
    try {
      token = (await this.options.token?.()) ?? undefined
    } catch (err) {
      this.#emitLocalError('unauthorized', `token provider failed: ${(err as Error)?.message ?? err}`)
      return this.#scheduleReconnect(0, 'token provider failed')
    }
    if ((this.#state as ConnectionState) !== 'connecting') return // closed meanwhile
    this.#token = token
    const url = new URL(this.options.url)
    if (token) url.searchParams.set('token', token)
    if (this.options.user) url.searchParams.set('user', this.options.user)
    if (this.options.name) url.searchParams.set('name', this.options.name)
    const WS = this.options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket
    if (!WS) throw new Error('no WebSocket implementation: pass options.WebSocket')
    let ws: WebSocketLike
    try {
      ws = new WS(url.toString())
    } catch (err) {
      this.#emitLocalError('bad_request', `could not open ${this.options.url}: ${(err as Error)?.message ?? err}`)
      return this.#scheduleReconnect(1006, 'constructor failed')
    }
    this.#ws = ws
    ws.onmessage = (ev) => {
      if (this.#ws !== ws) return
      let frame: ServerFrame
      try {
        frame = JSON.parse(String(ev.data)) as ServerFrame
      } catch {
        return
      }
      this.#onFrame(frame)
    }
    ws.onclose = (ev) => {
      if (this.#ws === ws) this.#dropped(ev.code, ev.reason)
    }
    ws.onerror = () => {
      /* a close event follows */
    }
  }

  /** Closes for good: no reconnect; pending requests are rejected. */
  close(): void {
    this.#setState('closed')
    this.#clearTimers()
    const ws = this.#ws
    this.#ws = undefined
    if (ws && (ws.readyState === OPEN || ws.readyState === CONNECTING)) ws.close(1000, 'client closed')
    for (const [id, p] of this.#pending) {
      this.#pending.delete(id)
      this.#clock.clearTimeout(p.timer)
      p.reject(new ChatError('closed', 'client closed'))
    }
    for (const r of this.#rooms.values()) {
      for (const w of r.waiters.splice(0)) w.reject(new ChatError('closed', 'client closed'))
      r.live = false
      r.recovering = undefined
    }
  }

  // ---------------------------------------------------------------- internals

  #room(room: string): RoomState {
    let r = this.#rooms.get(room)
    if (!r) this.#rooms.set(room, (r = { live: false, waiters: [] }))
    return r
  }

  #nextId(): string {
    return `${this.#prefix}-${(++this.#counter).toString(36)}`
  }

  #setState(s: ConnectionState) {
    if (this.#state === s) return
    this.#state = s
    this.emit('state', s)
  }

  #emitLocalError(code: ErrorCode, message: string) {
    this.emit('error', { type: 'error', code, message })
  }

  #raw(frame: Record<string, unknown>): boolean {
    const ws = this.#ws
    if (!ws || ws.readyState !== OPEN) return false
    ws.send(JSON.stringify(frame))
    return true
  }

  #request<T>(frame: Record<string, unknown> & { type: string }, resend: boolean): Promise<T> {
    if (this.#state === 'closed') return Promise.reject(new ChatError('closed', 'client closed'))
    const id = this.#nextId()
    return new Promise<T>((resolve, reject) => {
      const p: Pending = { frame: { ...frame, id }, resolve: resolve as (v: never) => void, reject, resend }
      const timeout = this.options.requestTimeoutMs ?? 30_000
      if (timeout > 0)
        p.timer = this.#clock.setTimeout(() => {
          if (this.#pending.delete(id)) reject(new ChatError('timeout', `${frame.type}: no answer in ${timeout} ms`))
        }, timeout)
      this.#pending.set(id, p)
      if (this.#state === 'open') this.#raw(p.frame)
    })
  }

  #settle(id: string | undefined, ok: boolean, value: unknown): boolean {
    if (!id) return false
    const p = this.#pending.get(id)
    if (!p) return false
    this.#pending.delete(id)
    this.#clock.clearTimeout(p.timer)
    if (ok) p.resolve(value as never)
    else {
      const e = value as ErrorFrame
      p.reject(new ChatError(e.code, e.message))
    }
    return true
  }

  #startJoin(room: string, state: RoomState) {
    const id = this.#nextId()
    state.recovering = { id, buffer: state.recovering?.buffer ?? [] }
    const frame: Record<string, unknown> = { type: 'join', room, id }
    if (state.lastSeq !== undefined && state.epoch !== undefined) {
      frame.since = state.lastSeq
      frame.epoch = state.epoch
    }
    this.#raw(frame)
  }

  #onFrame(f: ServerFrame) {
    this.emit('frame', f)
    switch (f.type) {
      case 'welcome':
        return this.#onWelcome(f)
      case 'chat':
        return this.#onChat(f)
      case 'joined':
        return this.#onJoined(f)
      case 'ack':
        this.#settle(f.id, true, { id: f.id, msg: f.msg, seq: f.seq } satisfies Ack)
        return this.emit('ack', f)
      case 'error':
        if (!this.#settle(f.id, false, f)) {
          const room = f.id ? [...this.#rooms.entries()].find(([, r]) => r.recovering?.id === f.id) : undefined
          if (room) {
            // A (re-)join was refused: stop tracking the room, tell whoever waits.
            const [name, r] = room
            r.recovering = undefined
            for (const w of r.waiters.splice(0)) w.reject(new ChatError(f.code, f.message))
            if (f.code === 'forbidden') this.#rooms.delete(name)
          }
          this.emit('error', f)
        }
        return
      case 'history':
        this.#settle(f.id, true, f)
        return this.emit('history', f)
      case 'presence':
        if (f.users) this.#settle(f.id, true, f)
        return this.emit('presence', f)
      case 'left':
        this.#settle(f.id, true, f)
        if (!f.id) this.#rooms.delete(f.room) // the server took us out (e.g. a refreshed token lost the room)
        return this.emit('left', f)
      case 'pong':
        this.#settle(f.id, true, f)
        return this.emit('pong', f)
      case 'dm':
        return this.emit('dm', f)
      case 'typing':
        return this.emit('typing', f)
    }
  }

  #onWelcome(w: WelcomeFrame) {
    this.#welcome = w
    this.#attempt = 0
    const home = new Set(w.rooms)
    for (const room of w.rooms) this.#room(room)
    for (const [room, state] of this.#rooms) {
      state.live = false
      // The server joins its default room by itself; a join with `since` on top replays
      // exactly what came before that live stream began. A room never seen needs nothing more.
      if (home.has(room) && state.lastSeq === undefined) continue
      this.#startJoin(room, state)
    }
    this.#setState('open')
    this.emit('welcome', w)
    for (const p of this.#pending.values()) this.#raw(p.frame)
    this.#scheduleRefresh()
    this.#schedulePing()
  }

  #onChat(m: ChatMessage) {
    const state = this.#rooms.get(m.room)
    if (!state) return // not (any more) a member
    if (state.recovering) {
      state.recovering.buffer.push(m)
      return
    }
    if (state.lastSeq !== undefined && m.seq <= state.lastSeq) return // seen already
    state.lastSeq = m.seq
    this.emit('chat', m)
  }

  #onJoined(j: JoinedFrame) {
    const state = this.#rooms.get(j.room)
    if (!state) return
    if (state.recovering) {
      if (j.id !== state.recovering.id) return // the server's own join on connect, overtaken by ours
      const buffer = state.recovering.buffer
      if (state.epoch !== undefined && state.lastSeq !== undefined && j.epoch !== state.epoch) {
        // The room's sequence restarted: our `since` means nothing there. Start from 0 in the
        // new epoch, keeping what arrived meanwhile (it is of the new epoch).
        const previousEpoch = state.epoch
        state.epoch = j.epoch
        state.lastSeq = 0
        this.emit('reset', { room: j.room, epoch: j.epoch, previousEpoch })
        state.recovering = { id: '', buffer }
        return this.#startJoin(j.room, state)
      }
      state.recovering = undefined
      if (state.lastSeq === undefined) state.lastSeq = j.seq
      else if (!j.recovered) this.emit('gap', { room: j.room, after: state.lastSeq })
      state.epoch = j.epoch
      state.live = true
      buffer.sort((a, b) => a.seq - b.seq)
      for (const m of buffer) this.#onChat(m)
    } else {
      if (j.id) return // an answer to a join we no longer wait for
      // The server says the room's sequence restarted under it (its Redis came back without
      // the room): a new epoch, or the same epoch with a seq behind what we saw.
      const restarted = state.epoch !== undefined && state.epoch !== j.epoch
      if (state.lastSeq !== undefined && (restarted || (!j.recovered && j.seq < state.lastSeq))) {
        this.emit('reset', { room: j.room, epoch: j.epoch, previousEpoch: state.epoch ?? j.epoch })
        state.lastSeq = j.seq
      }
      state.epoch = j.epoch
      if (state.lastSeq === undefined) state.lastSeq = j.seq
      state.live = true
    }
    this.emit('joined', j)
    for (const w of state.waiters.splice(0)) w.resolve(j)
  }

  #dropped(code: number, reason: string) {
    this.#ws = undefined
    this.#clearTimers()
    for (const state of this.#rooms.values()) {
      state.live = false
      state.recovering = undefined // what it held is replayed again after the reconnect
    }
    for (const [id, p] of this.#pending) {
      if (p.resend) continue
      this.#pending.delete(id)
      this.#clock.clearTimeout(p.timer)
      p.reject(new ChatError('closed', `connection lost before the answer (${code})`))
    }
    if (this.#state === 'closed') return
    this.#scheduleReconnect(code, reason)
  }

  #scheduleReconnect(code: number, reason: string) {
    const willReconnect = this.options.reconnect !== false
    this.emit('close', { code, reason, willReconnect })
    if (!willReconnect) {
      this.close()
      return
    }
    // A token that expired (4001) is fetched anew at once; anything else backs off.
    const delayMs = code === 4001 && this.#attempt === 0 ? 0 : backoffDelay(this.#attempt, this.options.reconnect || {})
    this.#attempt++
    this.#setState('reconnecting')
    this.emit('reconnecting', { attempt: this.#attempt, delayMs })
    this.#reconnectTimer = this.#clock.setTimeout(() => {
      if (this.#state === 'reconnecting') void this.connect()
    }, delayMs)
  }

  #clearTimers() {
    this.#clock.clearTimeout(this.#refreshTimer)
    this.#clock.clearTimeout(this.#pingTimer)
    this.#clock.clearTimeout(this.#reconnectTimer)
    this.#refreshTimer = this.#pingTimer = this.#reconnectTimer = undefined
  }

  #scheduleRefresh() {
    this.#clock.clearTimeout(this.#refreshTimer)
    const exp = this.#token ? jwtExpiry(this.#token) : undefined
    if (exp === undefined || !this.options.token) return
    const margin = this.options.refreshMarginMs ?? 30_000
    const delay = Math.max(0, exp * 1000 - margin - this.#clock.now())
    this.#refreshTimer = this.#clock.setTimeout(() => void this.#refresh(exp), delay)
  }

  async #refresh(oldExp: number) {
    const ws = this.#ws
    let token: string | undefined
    try {
      token = (await this.options.token?.()) ?? undefined
    } catch (err) {
      this.#emitLocalError('unauthorized', `token provider failed: ${(err as Error)?.message ?? err}`)
    }
    if (this.#ws !== ws || this.#state !== 'open') return
    const exp = token ? jwtExpiry(token) : undefined
    if (!token || token === this.#token || (exp !== undefined && exp <= oldExp)) {
      // Nothing newer yet: ask again shortly, until the server closes with 4001 and we reconnect.
      if (this.#clock.now() < oldExp * 1000) this.#refreshTimer = this.#clock.setTimeout(() => void this.#refresh(oldExp), 5_000)
      return
    }
    try {
      await this.#request<Ack>({ type: 'refresh', token }, false)
      if (this.#ws !== ws) return
      this.#token = token
      this.emit('refreshed', { exp })
      this.#scheduleRefresh()
    } catch (err) {
      if (err instanceof ChatError && err.code !== 'closed') this.#emitLocalError('unauthorized', `refresh refused: ${err.message}`)
    }
  }

  #schedulePing() {
    const every = this.options.pingIntervalMs ?? 20_000
    if (every <= 0) return
    this.#pingTimer = this.#clock.setTimeout(() => {
      const ws = this.#ws
      if (!ws || this.#state !== 'open') return
      const timeout = this.options.pongTimeoutMs ?? 10_000
      let answered = false
      const dead = this.#clock.setTimeout(() => {
        if (answered || this.#ws !== ws) return
        // No pong: the connection is dead even if the socket does not know it yet.
        try {
          ws.close(4000, 'pong timeout')
        } catch {}
        this.#dropped(1006, 'pong timeout')
      }, timeout)
      this.ping()
        .then(() => {
          answered = true
          this.#clock.clearTimeout(dead)
          if (this.#ws === ws) this.#schedulePing()
        })
        .catch(() => this.#clock.clearTimeout(dead))
    }, every)
  }
}
