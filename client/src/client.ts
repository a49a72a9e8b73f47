import { backoffDelay } from './backoff'
import type { BackoffOptions } from './backoff'
import { ConversationBook } from './conversations'
import type { ConversationState } from './conversations'
import { Emitter } from './emitter'
import { jwtExpiry } from './jwt'
import { SseSocket } from './sse'
import type { FetchLike } from './sse'
import type {
  AckFrame,
  ChangeEvent,
  ChatMessage,
  DeleteEvent,
  DirectMessage,
  EditEvent,
  ErrorCode,
  ErrorFrame,
  HistoryFrame,
  JoinedFrame,
  LeftFrame,
  ModerationEvent,
  Pin,
  PinsFrame,
  PollClosedEvent,
  PollInput,
  PongFrame,
  PresenceFrame,
  PresencePage,
  ReactEvent,
  PreviewEvent,
  ReadFrame,
  Role,
  RoomMessage,
  RoomSettings,
  RoomsFrame,
  ScheduledFrame,
  ScheduledMessage,
  SearchFrame,
  ServerFrame,
  SettingsEvent,
  ThreadEntry,
  ThreadsFrame,
  TypingFrame,
  User,
  VoteEvent,
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

/** How the client reaches the server: `/ws`, or Server-Sent Events with POST (`/sse`). */
export type Transport = 'websocket' | 'sse'
const TRANSPORTS: readonly Transport[] = ['websocket', 'sse']

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
  /**
   * The transports to use, in order of preference (default `['websocket', 'sse']`): when the
   * WebSocket cannot open, the same connection is tried at once over Server-Sent Events with
   * POST, keeping resume and the outbox; `['websocket']` never falls back, `['sse']` never tries
   * a WebSocket.
   */
  transports?: Transport[]
  /** A connection that does not open in this time is given up (default 10 000 ms; 0 = never): the next transport, or a reconnect. */
  connectTimeoutMs?: number
  /** After a fallback, reconnects use SSE for this long before trying the WebSocket again (default 60 000 ms). */
  websocketRetryMs?: number
  /** The SSE endpoint (default: `url` with `ws(s):` as `http(s):` and its last `/ws` as `/sse`). */
  sseUrl?: string
  /** Defaults to `globalThis.fetch` (the SSE transport). */
  fetch?: FetchLike
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
    /** v4: seconds to wait before sending again (`slow_mode`). */
    readonly retryAfter?: number,
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
  /** The message's seq in its room (chat, dm). */
  seq?: number
  /** The room of a dm: the pair's direct room, named by the server. */
  room?: string
  /** v4: a message sent with `send_at` was scheduled, not sent: its scheduled id and time. */
  scheduled?: string
  send_at?: string
}

/** A page of `history` (or of a thread), oldest first. */
export interface HistoryPage {
  /** The chat (or dm) messages of the page in their current state: `edited_at`, `deleted`, `reactions`. */
  messages: RoomMessage[]
  /** Every event of the page in order: the messages and the changes (edits, deletes, reactions, moderation) between them. */
  events: (RoomMessage | ChangeEvent)[]
  more: boolean
  /** The `before` of the next (older) page: the page's first seq. */
  before?: number
}

/** A deleted message has no body on the wire; the client's type promises a string. */
const shown = <T extends RoomMessage | ChangeEvent>(f: T): T =>
  (f.type === 'chat' || f.type === 'dm') && f.deleted && f.body === undefined ? { ...f, body: '' } : f

function pageOf(f: HistoryFrame): HistoryPage {
  const events = f.messages.map(shown)
  return {
    messages: events.filter((e): e is RoomMessage => e.type === 'chat' || e.type === 'dm'),
    events,
    more: f.more,
    ...(events.length ? { before: events[0]!.seq } : {}),
  }
}

export interface ClientEvents {
  /** Every frame from the server, before any processing. */
  frame: ServerFrame
  welcome: WelcomeFrame
  /** Room messages: in seq order per room, each once, across reconnects. */
  chat: ChatMessage
  /**
   * Messages of direct rooms, like `chat`: in seq order, each once, across reconnects. The
   * connection that sent a dm gets no `dm` event for it (its answer is the `dm()` promise).
   */
  dm: DirectMessage
  /** v2, like `chat`: in seq order per room, each once, across reconnects (as are `delete`, `react`, `moderation`). */
  edit: EditEvent
  delete: DeleteEvent
  /** A reaction added (`op: "add"`) or removed. */
  react: ReactEvent
  /** mute, unmute, ban, unban, kick of a user in the room (the banned or kicked user also gets `left` with that `reason`). */
  moderation: ModerationEvent
  /** v4: a message's link preview (in seq order like `edit`); `history` shows it as the message's `preview`. */
  preview: PreviewEvent
  /** v4, like `chat` (in seq order, once): a vote on a poll, with the poll's tallies after it. */
  vote: VoteEvent
  /** v4: a poll closed, with its final tallies. */
  poll_closed: PollClosedEvent
  /** v4: the room's settings changed (slow mode). */
  settings: SettingsEvent
  ack: AckFrame
  joined: JoinedFrame
  /** Answers `leave`; unasked (no `id`) when the server took the connection out: `reason` `banned` or `kicked`, a membership ended, a refreshed token lost the room. */
  left: LeftFrame
  history: HistoryFrame
  presence: PresenceFrame
  typing: TypingFrame
  pong: PongFrame
  /** The answer to a `rooms` request (its conversations are merged into `conversations` first). */
  rooms: RoomsFrame
  /** A read marker moved: this user's (on any connection) or another member's (a read receipt). */
  read: ReadFrame
  /** A conversation's state changed: marker, unread count, last message, read receipts. */
  conversation: ConversationState
  /** The user became a member of a room (on connect, by `joinAsMember`, a first dm, the API) or stopped being one. */
  membership: { room: string; member: boolean }
  /** The total of unread messages over all memberships changed. */
  unread: { total: number }
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

/** A frame of a room's sequence: chat, dm, and the event types a later server adds. */
type RoomEvent = { type: string; room: string; seq: number } & Record<string, unknown>

/** v4: `send_at` of a scheduled message, as the ISO time the server takes. */
const sendAt = (at: string | Date | undefined) => (at === undefined ? {} : { send_at: at instanceof Date ? at.toISOString() : at })
/** The optional fields of a `chat` or `dm` frame, present only when given. */
const messageExtras = (data: unknown, opts: { attachments?: string[]; send_at?: string | Date }) => ({
  ...(data === undefined ? {} : { data }),
  ...(opts.attachments?.length ? { attachments: opts.attachments } : {}),
  ...sendAt(opts.send_at),
})

/** Frame types that carry `room` and `seq` without being events of the room's sequence. */
const NOT_EVENTS = new Set(['joined', 'read', 'ack', 'history', 'rooms', 'presence', 'typing', 'left', 'welcome', 'error', 'pong'])
const isRoomEvent = (f: ServerFrame): f is ServerFrame & RoomEvent =>
  !NOT_EVENTS.has(f.type) && typeof (f as { seq?: unknown }).seq === 'number' && typeof (f as { room?: unknown }).room === 'string'

/** Seqs seen above a hole in a room's sequence, at most; past it the hole is given up. */
const MAX_AHEAD = 1000
/** Frames of rooms the client does not know yet (the replay before an unasked `joined`), at most. */
const MAX_ORPHANS = 1000

interface RoomState {
  /** Every event up to this seq was seen (or came before this client joined): `since` of a re-join. */
  lastSeq?: number
  /** Seqs seen above `lastSeq + 1`: events that overtook a hole (this connection's own dm, acked late). */
  ahead: Set<number>
  epoch?: string
  live: boolean
  /** The next join asks for membership (`joinAsMember`). */
  asMember?: boolean
  /** The user's role, from the last `joined` that named it. */
  role?: Role
  /** While a join is in flight: its id and every event frame of the room seen meanwhile. */
  recovering?: { id: string; buffer: RoomEvent[] }
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
  #book = new ConversationBook(() => this.#welcome?.user.id)
  #unreadTotal = 0
  #orphans = new Map<string, RoomEvent[]>()
  #transports: readonly Transport[]
  #transport?: Transport
  /** Until then (clock ms) reconnects go straight to SSE: the WebSocket failed and SSE worked. */
  #sseUntil = 0

  constructor(options: ChatClientOptions) {
    super()
    this.options = options
    this.#transports = options.transports ?? TRANSPORTS
    const unknown = this.#transports.find((t) => !TRANSPORTS.includes(t))
    if (this.#transports.length === 0 || unknown !== undefined)
      throw new Error(`transports: expected a non-empty list of 'websocket' and 'sse', got ${JSON.stringify(options.transports)}`)
    this.#clock = options.clock ?? realClock
    for (const room of options.rooms ?? []) this.#room(room)
    if (options.autoConnect !== false) void this.connect()
  }

  /** Connection state: `open` once the server's `welcome` arrived. */
  get state(): ConnectionState {
    return this.#state
  }

  /** The transport of the current (or last) connection attempt. */
  get transport(): Transport | undefined {
    return this.#transport
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

  /** The user's conversations (memberships), most recently active first. */
  get conversations(): ConversationState[] {
    return this.#book.list()
  }

  /** One conversation's state: read marker, unread count, last message, read receipts. */
  conversation(room: string): ConversationState | undefined {
    return this.#book.get(room)
  }

  /** The direct conversation with a user, once the client knows it (from frames or `rooms()`). */
  directWith(user: string): ConversationState | undefined {
    return this.#book.directWith(user)
  }

  /** Unread messages over all memberships. */
  get unreadTotal(): number {
    return this.#book.total()
  }

  /** Requests that wait for a connection or an answer. */
  get outboxSize(): number {
    return this.#pending.size
  }

  // ---------------------------------------------------------------- requests

  /** Publishes to a room; resolves with the ack (`msg`, `seq`), rejects with the server's error. */
  send(room: string, body: string, data?: unknown, opts: { attachments?: string[]; send_at?: string | Date } = {}): Promise<Ack> {
    return this.#request<Ack>({ type: 'chat', room, body, ...messageExtras(data, opts) }, true)
  }

  /**
   * A message to user `to`, stored in the pair's direct room (both become members on the
   * first one); resolves with `room` and `seq`. This connection gets no `dm` event for it.
   */
  dm(to: string, body: string, data?: unknown, opts: { attachments?: string[]; send_at?: string | Date } = {}): Promise<Ack> {
    return this.#request<Ack>({ type: 'dm', to, body, ...messageExtras(data, opts) }, true)
  }

  /**
   * One page of a room's history, oldest first (a direct room's are `dm` frames). Pages count
   * events (v2): `messages` are the page's messages in their current state, `events` all of it.
   */
  async history(room: string, opts: { before?: number; limit?: number } = {}): Promise<HistoryPage> {
    return pageOf(await this.#request<HistoryFrame>({ type: 'history', room, ...opts }, true))
  }

  // ---------------------------------------------------------------- message lifecycle (v2)

  /** A reply to message `msg` (a `chat` with `reply_to`); resolves with the ack as `send` does. */
  reply(room: string, msg: string, body: string, data?: unknown): Promise<Ack> {
    return this.#request<Ack>({ type: 'chat', room, body, reply_to: msg, ...(data === undefined ? {} : { data }) }, true)
  }

  /** The replies to message `msg`, a page at a time, oldest first. */
  async thread(room: string, msg: string, opts: { before?: number; limit?: number } = {}): Promise<HistoryPage> {
    return pageOf(await this.#request<HistoryFrame>({ type: 'history', room, thread: msg, ...opts }, true))
  }

  // Changes are not sent again after a lost answer (the server does not deduplicate them by id):
  // they reject with `closed`, except reactions, which are the same whether applied once or twice.

  /** Edits one's own message (`body`, and `data` when given); resolves with the edit's `seq`. */
  edit(room: string, msg: string, body: string, data?: unknown): Promise<Ack> {
    return this.#request<Ack>({ type: 'edit', room, msg, body, ...(data === undefined ? {} : { data }) }, false)
  }

  /** Deletes a message: one's own, or anyone's for a moderator of the room. */
  delete(room: string, msg: string): Promise<Ack> {
    return this.#request<Ack>({ type: 'delete', room, msg }, false)
  }

  /** Adds this user's reaction (1..32 characters); the ack has no `seq` when the user had it already. */
  react(room: string, msg: string, reaction: string): Promise<Ack> {
    return this.#request<Ack>({ type: 'react', room, msg, reaction }, true)
  }

  /** Removes this user's reaction; the ack has no `seq` when the user did not have it. */
  unreact(room: string, msg: string, reaction: string): Promise<Ack> {
    return this.#request<Ack>({ type: 'unreact', room, msg, reaction }, true)
  }

  /**
   * The user's role in a room as the server last named it (in the answer to a `join`), or
   * undefined when not known: the rooms the server joins by itself on connect are not named
   * until this client `join`s them.
   */
  role(room: string): Role | undefined {
    return this.#rooms.get(room)?.role
  }

  // ---------------------------------------------------------------- moderation (v2: moderators and owners)

  /** The user's `chat` in the room is refused for `seconds`. */
  mute(room: string, user: string, seconds: number): Promise<Ack> {
    return this.#request<Ack>({ type: 'mute', room, user, seconds }, false)
  }

  unmute(room: string, user: string): Promise<Ack> {
    return this.#request<Ack>({ type: 'unmute', room, user }, false)
  }

  /** Every connection of the user leaves the room (`left`, reason `banned`); no join until `unban`. */
  ban(room: string, user: string, reason?: string): Promise<Ack> {
    return this.#request<Ack>({ type: 'ban', room, user, ...(reason === undefined ? {} : { reason }) }, false)
  }

  unban(room: string, user: string): Promise<Ack> {
    return this.#request<Ack>({ type: 'unban', room, user }, false)
  }

  /** Every connection of the user leaves the room now (`left`, reason `kicked`); they may join again. */
  kick(room: string, user: string, reason?: string): Promise<Ack> {
    return this.#request<Ack>({ type: 'kick', room, user, ...(reason === undefined ? {} : { reason }) }, false)
  }

  /**
   * Registers (or replaces) one of this user's devices for push notifications: a Web Push
   * `subscription` (`PushSubscription.toJSON()`), or an FCM / APNs `token`. Idempotent: resent after a reconnect.
   */
  registerDevice(
    device: string,
    address:
      | { kind: 'webpush'; subscription: { endpoint: string; keys: { p256dh: string; auth: string } } }
      | { kind: 'fcm' | 'apns'; token: string },
  ): Promise<Ack> {
    return this.#request<Ack>({ type: 'device', device, ...address }, true)
  }

  removeDevice(device: string): Promise<Ack> {
    return this.#request<Ack>({ type: 'device', device, remove: true }, true)
  }

  /** This user's push level in a room: every message, only mentions of them, or none. */
  notify(room: string, level: 'all' | 'mentions' | 'none'): Promise<Ack> {
    return this.#request<Ack>({ type: 'notify', room, level }, true)
  }

  /** A blocked user's dms to this user are refused, and their messages push nothing to this user. */
  block(user: string): Promise<Ack> {
    return this.#request<Ack>({ type: 'block', user }, true)
  }

  unblock(user: string): Promise<Ack> {
    return this.#request<Ack>({ type: 'unblock', user }, true)
  }

  // ---------------------------------------------------------------- threads and scheduled messages (v4)

  /**
   * The threads the user started or replied in (of one `room` when given), most recently active
   * first, each with its root, `count`, `last_ts` and `unread`; pass `next` as `before` for the next page.
   */
  async threads(
    opts: { room?: string; before?: string; limit?: number } = {},
  ): Promise<{ threads: ThreadEntry[]; more: boolean; next?: string }> {
    const f = await this.#request<ThreadsFrame>({ type: 'threads', ...opts }, true)
    return { threads: f.threads, more: f.more, ...(f.next === undefined ? {} : { next: f.next }) }
  }

  /** Moves the user's marker in the thread of `msg` up to `seq` (its newest reply seen); the room's marker stays. */
  async readThread(room: string, msg: string, seq: number): Promise<void> {
    await this.#request<Ack>({ type: 'read', room, seq, thread: msg }, true)
  }

  /** The user's pending scheduled messages (of one room when given), by `send_at`. */
  async scheduled(room?: string): Promise<ScheduledMessage[]> {
    return (await this.#request<ScheduledFrame>({ type: 'scheduled', ...(room === undefined ? {} : { room }) }, true)).messages
  }

  /** Cancels one of the user's scheduled messages (rejects with `not_found` when it is not pending). */
  async unschedule(scheduled: string): Promise<void> {
    await this.#request<Ack>({ type: 'unschedule', scheduled }, true)
  }

  // ---------------------------------------------------------------- search and pins (v3)

  /**
   * Messages of the user's rooms (or of one `room`, or `from` one user) matching `q`, newest
   * first; pass the answer's `cursor` back for the next page. Needs PostgreSQL on the server
   * (without it the request rejects with `unavailable`).
   */
  async search(
    q: string,
    opts: { room?: string; from?: string; before?: string; cursor?: string; limit?: number } = {},
  ): Promise<{ results: RoomMessage[]; cursor?: string }> {
    const f = await this.#request<SearchFrame>({ type: 'search', q, ...opts }, true)
    return { results: f.results, ...(f.cursor === undefined ? {} : { cursor: f.cursor }) }
  }

  // ---------------------------------------------------------------- polls and slow mode (v4)

  /** Sends a chat carrying a poll; resolves with its ack (`msg` is the poll's message id). */
  sendPoll(room: string, body: string, poll: PollInput): Promise<Ack> {
    return this.#request<Ack>({ type: 'chat', room, body, poll }, true)
  }

  /**
   * Replaces this user's vote on a poll (`[]` withdraws it; several options only in a `multiple`
   * poll); the ack has no `seq` when the vote was the same. Rejects with `closed` once it closed.
   */
  vote(room: string, msg: string, options: number[]): Promise<Ack> {
    return this.#request<Ack>({ type: 'vote', room, msg, options }, true)
  }

  /** Closes a poll (its author, moderators and owners); rejects with `closed` when it is already. */
  closePoll(room: string, msg: string): Promise<Ack> {
    return this.#request<Ack>({ type: 'close_poll', room, msg }, true)
  }

  /**
   * Changes a room's settings (owners and moderators): `slow_mode_s` 0..3600. In slow mode a
   * member's `send` too soon rejects with `slow_mode` and `retryAfter` (seconds).
   */
  setSettings(room: string, settings: RoomSettings): Promise<Ack> {
    return this.#request<Ack>({ type: 'settings', room, slow_mode_s: settings.slow_mode_s }, true)
  }

  /** Pins a message of the room (moderators and owners); the ack has no `seq` when it was pinned already. */
  pin(room: string, msg: string): Promise<Ack> {
    return this.#request<Ack>({ type: 'pin', room, msg }, true)
  }

  /** Unpins a message; the ack has no `seq` when it was not pinned. */
  unpin(room: string, msg: string): Promise<Ack> {
    return this.#request<Ack>({ type: 'unpin', room, msg }, true)
  }

  /** The room's pinned messages (members only). */
  async pins(room: string): Promise<Pin[]> {
    return (await this.#request<PinsFrame>({ type: 'pins', room }, true)).pins
  }

  /** Who is in a room, cluster-wide (the first 1000; with `{ limit, cursor }`, one page with `count` and `next`). */
  presence(room: string): Promise<User[]>
  presence(room: string, page: { limit?: number; cursor?: string }): Promise<PresencePage>
  async presence(room: string, page?: { limit?: number; cursor?: string }): Promise<User[] | PresencePage> {
    const f = await this.#request<Extract<PresenceFrame, { users: User[] }>>({ type: 'presence', room, ...page }, true)
    if (!page) return f.users
    return { users: f.users, count: f.count, ...(f.next ? { next: f.next } : {}) }
  }

  /**
   * Joins a room (kept across reconnects); resolves with its `joined` frame. With
   * `member: true` the user also becomes a member (see `joinAsMember`).
   */
  join(room: string, opts: { member?: boolean } = {}): Promise<JoinedFrame> {
    const state = this.#room(room)
    this.#orphans.delete(room)
    if (opts.member) state.asMember = true
    const done = new Promise<JoinedFrame>((resolve, reject) => state.waiters.push({ resolve, reject }))
    if (this.#state === 'open' && !state.recovering) this.#startJoin(room, state)
    return done
  }

  /**
   * Leaves a room on this connection; it is no longer re-joined. A membership stays (the
   * server joins the user's connections to it again on connect): see `leaveMembership`.
   */
  async leave(room: string): Promise<void> {
    this.#forget(room, false)
    if (this.#state !== 'open') return
    await this.#request<LeftFrame>({ type: 'leave', room }, false)
  }

  /**
   * Makes the user a member of a room (durable, on every connection; listed by `rooms()`,
   * counted in unread) and joins it. Resolves with its `joined` frame (`member: true`).
   */
  joinAsMember(room: string): Promise<JoinedFrame> {
    return this.join(room, { member: true })
  }

  /** Ends the membership: every connection of the user leaves the room. Sent when connected. */
  async leaveMembership(room: string): Promise<void> {
    this.#forget(room)
    await this.#request<LeftFrame>({ type: 'leave', room, member: true }, true)
    this.#forget(room) // the server may have joined it again on a reconnect before the leave went out
  }

  /**
   * One page of the user's conversation list (the `rooms` frame), most recently active first;
   * `next` is the `before` of the following page. Merged into `conversations` (this fills in
   * `with` and `last`, which `joined` frames do not carry). (`rooms`, the getter, predates it.)
   */
  async loadConversations(
    opts: { before?: string; limit?: number } = {},
  ): Promise<{ rooms: ConversationState[]; more: boolean; next?: string }> {
    const f = await this.#request<RoomsFrame>({ type: 'rooms', ...opts }, true)
    return { rooms: f.rooms.map((c) => this.#book.get(c.room) ?? { ...c, readBy: [] }), more: f.more, next: f.next }
  }

  /**
   * Moves the user's read marker in a room up to `seq` (default: the last seq this client
   * knows of the room). Nothing is sent when the marker is there already.
   */
  async markRead(room: string, seq?: number): Promise<void> {
    const c = this.#book.get(room)
    const upTo = seq ?? c?.seq ?? this.position(room).seq
    if (upTo === undefined) throw new ChatError('bad_request', `markRead: nothing is known of ${room} yet`)
    if (c && upTo <= c.read) return
    await this.#request<Ack>({ type: 'read', room, seq: upTo }, true)
    if (this.#book.marked(room, upTo)) this.#changed(room)
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
    const fallback = this.#transports.includes('sse')
    if (!this.#transports.includes('websocket') || (fallback && this.#clock.now() < this.#sseUntil)) this.#openSse(token, false)
    else this.#openWebSocket(token, fallback)
  }

  /** The identity query of both transports (`token` only on the WebSocket: SSE sends it as a header). */
  #query(url: URL, token: string | undefined) {
    if (token) url.searchParams.set('token', token)
    if (this.options.user) url.searchParams.set('user', this.options.user)
    if (this.options.name) url.searchParams.set('name', this.options.name)
    return url
  }

  #openWebSocket(token: string | undefined, fallback: boolean) {
    const url = this.#query(new URL(this.options.url), token)
    const WS = this.options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket
    if (!WS) {
      if (fallback) return this.#openSse(token, true)
      throw new Error('no WebSocket implementation: pass options.WebSocket')
    }
    let ws: WebSocketLike
    try {
      ws = new WS(url.toString())
    } catch (err) {
      if (fallback) return this.#openSse(token, true)
      this.#emitLocalError('bad_request', `could not open ${this.options.url}: ${(err as Error)?.message ?? err}`)
      return this.#scheduleReconnect(1006, 'constructor failed')
    }
    this.#attach(ws, 'websocket', (opened, welcomed, code) => {
      // It never opened (a proxy refused the upgrade, a network that blocks WebSockets), or it
      // broke before the server said anything: the same attempt goes on over SSE.
      if (!fallback || welcomed || (opened && code !== 1006) || this.#state !== 'connecting') return false
      this.#openSse(token, true)
      return true
    })
  }

  #openSse(token: string | undefined, afterWebSocket: boolean) {
    let ws: SseSocket
    try {
      ws = new SseSocket(this.#query(new URL(this.#sseUrl()), undefined).toString(), { token, fetch: this.options.fetch })
    } catch (err) {
      this.#emitLocalError('bad_request', `could not open the SSE stream: ${(err as Error)?.message ?? err}`)
      return this.#scheduleReconnect(1006, 'sse failed')
    }
    this.#attach(
      ws,
      'sse',
      () => false,
      () => {
        // SSE works where the WebSocket did not: stay on it for a while before trying again.
        if (afterWebSocket) this.#sseUntil = this.#clock.now() + (this.options.websocketRetryMs ?? 60_000)
      },
    )
  }

  /** `sseUrl`, or `url` as http(s) with its last path segment `ws` as `sse`. */
  #sseUrl(): string {
    if (this.options.sseUrl) return this.options.sseUrl
    const u = new URL(this.options.url)
    u.protocol = u.protocol === 'wss:' ? 'https:' : u.protocol === 'ws:' ? 'http:' : u.protocol
    u.pathname = /\/ws\/?$/.test(u.pathname) ? u.pathname.replace(/\/ws\/?$/, '/sse') : `${u.pathname.replace(/\/$/, '')}/sse`
    u.search = ''
    return u.toString()
  }

  /**
   * Makes `ws` the connection. `failed` decides, when it closes, whether that was the end of a
   * failed attempt that another transport takes over (true), or a drop (reconnect with backoff).
   */
  #attach(ws: WebSocketLike, kind: Transport, failed: (opened: boolean, welcomed: boolean, code: number) => boolean, onOpen?: () => void) {
    this.#ws = ws
    this.#transport = kind
    let opened = false
    let welcomed = false
    const ended = (code: number, reason: string) => {
      this.#clock.clearTimeout(timer)
      if (this.#ws !== ws) return
      if (failed(opened, welcomed, code)) return
      this.#dropped(code, reason)
    }
    // A proxy may hold an upgrade (or a stream) without ever answering: give up on it as on a
    // refusal. Only until it opens: a busy server may take its time over the welcome.
    const within = this.options.connectTimeoutMs ?? 10_000
    const timer =
      within > 0
        ? this.#clock.setTimeout(() => {
            if (this.#ws !== ws || opened || welcomed) return
            try {
              ws.close(4000, 'connect timeout')
            } catch {}
            ended(1006, 'connect timeout')
          }, within)
        : undefined
    ws.onopen = () => {
      opened = true
      this.#clock.clearTimeout(timer)
      if (this.#ws === ws) onOpen?.()
    }
    ws.onmessage = (ev) => {
      if (this.#ws !== ws) return
      let frame: ServerFrame
      try {
        frame = JSON.parse(String(ev.data)) as ServerFrame
      } catch {
        return
      }
      if (frame.type === 'welcome') {
        // A socket that says welcome is open, whether or not its implementation said so first.
        welcomed = true
        this.#clock.clearTimeout(timer)
      }
      this.#onFrame(frame)
    }
    ws.onclose = (ev) => ended(ev.code, ev.reason)
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
    this.#orphans.clear()
  }

  // ---------------------------------------------------------------- internals

  #room(room: string): RoomState {
    let r = this.#rooms.get(room)
    if (!r) this.#rooms.set(room, (r = { live: false, waiters: [], ahead: new Set() }))
    return r
  }

  /**
   * Stops tracking a room: left on this connection, or (`membershipEnded`) no longer a member.
   * A membership outlives a plain leave: its conversation stays listed (no longer counted live).
   */
  #forget(room: string, membershipEnded = true) {
    const state = this.#rooms.get(room)
    this.#rooms.delete(room)
    this.#orphans.delete(room)
    for (const w of state?.waiters.splice(0) ?? []) w.reject(new ChatError('closed', `left ${room}`))
    if (membershipEnded && this.#book.remove(room)) {
      this.emit('membership', { room, member: false })
      this.#emitTotal()
    }
  }

  /** Tells the app a conversation changed (and the total, when it did). */
  #changed(room: string) {
    const c = this.#book.get(room)
    if (c) this.emit('conversation', c)
    this.#emitTotal()
  }

  #emitTotal() {
    const total = this.#book.total()
    if (total === this.#unreadTotal) return
    this.#unreadTotal = total
    this.emit('unread', { total })
  }

  /** Marks `seq` seen in a room; false when it was seen already. */
  #accept(state: RoomState, seq: number): boolean {
    if (state.lastSeq === undefined) {
      state.lastSeq = seq
      return true
    }
    if (seq <= state.lastSeq || state.ahead.has(seq)) return false
    if (seq === state.lastSeq + 1) this.#advanceTo(state, seq)
    else {
      state.ahead.add(seq)
      // A hole that stays open would make every re-join replay (and maybe report a gap) from it.
      if (state.ahead.size > MAX_AHEAD) this.#advanceTo(state, Math.max(...state.ahead))
    }
    return true
  }

  /** Everything up to `seq` counts as seen; so does what follows it without a hole. */
  #advanceTo(state: RoomState, seq: number) {
    state.lastSeq = Math.max(state.lastSeq ?? seq, seq)
    for (const s of state.ahead) if (s <= state.lastSeq) state.ahead.delete(s)
    while (state.ahead.delete(state.lastSeq + 1)) state.lastSeq++
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
      p.reject(new ChatError(e.code, e.message, e.retry_after))
    }
    return true
  }

  #startJoin(room: string, state: RoomState) {
    const id = this.#nextId()
    state.recovering = { id, buffer: state.recovering?.buffer ?? [] }
    const frame: Record<string, unknown> = { type: 'join', room, id }
    if (state.asMember) frame.member = true
    if (state.lastSeq !== undefined && state.epoch !== undefined) {
      frame.since = state.lastSeq
      frame.epoch = state.epoch
    }
    this.#raw(frame)
  }

  #onFrame(f: ServerFrame) {
    this.emit('frame', f)
    if (isRoomEvent(f)) return this.#onEvent(f)
    switch (f.type) {
      case 'welcome':
        return this.#onWelcome(f)
      case 'joined':
        return this.#onJoined(f)
      case 'ack':
        if (f.room !== undefined && f.seq !== undefined) this.#onOwnDm(f)
        this.#settle(f.id, true, {
          id: f.id,
          msg: f.msg,
          seq: f.seq,
          ...(f.room === undefined ? {} : { room: f.room }),
          ...(f.scheduled === undefined ? {} : { scheduled: f.scheduled, send_at: f.send_at }),
        } satisfies Ack)
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
        this.#orphans.delete(f.room) // frames that were on their way before the server took us out
        this.#settle(f.id, true, f)
        // The server took us out: the membership ended (on another connection, by the API) or a refreshed token lost the room.
        if (!f.id) this.#forget(f.room)
        return this.emit('left', f)
      case 'rooms':
        for (const c of f.rooms) if (this.#book.listed(c)) this.emit('conversation', this.#book.get(c.room)!)
        this.#emitTotal()
        this.#settle(f.id, true, f)
        return this.emit('rooms', f)
      case 'read':
        if (this.#book.read(f)) this.#changed(f.room)
        return this.emit('read', f)
      case 'pong':
        this.#settle(f.id, true, f)
        return this.emit('pong', f)
      case 'search':
      case 'pins':
      case 'threads':
      case 'scheduled':
        this.#settle(f.id, true, f)
        return
      case 'dm':
        return this.emit('dm', f) // a v1 server's dm: no room, no seq
      case 'typing':
        return this.emit('typing', f)
    }
  }

  #onWelcome(w: WelcomeFrame) {
    this.#welcome = w
    this.#attempt = 0
    const home = new Set(w.rooms)
    for (const room of w.rooms) this.#room(room)
    this.#orphans.clear()
    // Memberships that ended while this client was away are not listed any more.
    for (const room of this.#book.retain(w.rooms)) this.emit('membership', { room, member: false })
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

  /** An event of a room's sequence: held while the room recovers, then emitted in seq order, once. */
  #onEvent(m: RoomEvent) {
    const state = this.#rooms.get(m.room)
    if (!state) {
      // Not a room of ours, unless an unasked `joined` follows (the server replays before it).
      let list = this.#orphans.get(m.room)
      if (!list) this.#orphans.set(m.room, (list = []))
      if (list.length < MAX_ORPHANS) list.push(m)
      return
    }
    if (state.recovering) {
      state.recovering.buffer.push(m)
      return
    }
    if (!this.#accept(state, m.seq)) return // seen already
    switch (m.type) {
      case 'edit':
        return this.emit('edit', m as unknown as EditEvent)
      case 'delete':
        return this.emit('delete', m as unknown as DeleteEvent)
      case 'react':
        return this.emit('react', m as unknown as ReactEvent)
      case 'moderation':
        return this.emit('moderation', m as unknown as ModerationEvent)
      case 'preview':
        return this.emit('preview', m as unknown as PreviewEvent)
      case 'vote':
        return this.emit('vote', m as unknown as VoteEvent)
      case 'poll_closed':
        return this.emit('poll_closed', m as unknown as PollClosedEvent)
      case 'settings':
        return this.emit('settings', m as unknown as SettingsEvent)
    }
    if (m.type !== 'chat' && m.type !== 'dm') return // an event type this client does not know: `frame` only
    const message = m as unknown as RoomMessage
    const counted = this.#book.message(message)
    if (message.type === 'chat') this.emit('chat', message)
    else this.emit('dm', message)
    if (counted) this.#changed(m.room)
  }

  /**
   * The ack of this connection's own dm: the server does not send it the dm frame, so its seq
   * counts as seen here (else it would look like a hole), and the sender's marker is at it.
   */
  #onOwnDm(f: AckFrame) {
    const p = this.#pending.get(f.id)
    if (p?.frame.type !== 'dm') return
    const room = f.room!
    const seq = f.seq!
    const state = this.#rooms.get(room)
    if (state && !state.recovering) this.#accept(state, seq)
    else if (state) state.ahead.add(seq) // a re-join is in flight: its replay must skip it too
    const me = this.#welcome?.user
    const c = this.#book.get(room)
    if (!me || !c) return
    const frame = p.frame as unknown as { to: string; body: string; data?: unknown }
    // The sent message as the conversation's last; its time is this client's, the server's is not sent back.
    const sent: DirectMessage = {
      type: 'dm',
      id: f.msg ?? f.id,
      room,
      seq,
      from: me,
      to: frame.to,
      body: frame.body,
      ...(frame.data === undefined ? {} : { data: frame.data }),
      ts: new Date(this.#clock.now()).toISOString(),
    }
    this.#book.message(sent)
    this.#changed(room)
  }

  #onJoined(j: JoinedFrame) {
    let state = this.#rooms.get(j.room)
    let orphans: RoomEvent[] = []
    const unasked = !state
    if (!state) {
      // Made a member while connected (a first dm, the API, another connection's joinAsMember):
      // the room is ours from now on. A recovered join replayed from the marker just before.
      if (!j.member || j.id) return
      state = this.#room(j.room)
      orphans = this.#orphans.get(j.room) ?? []
      this.#orphans.delete(j.room)
      if (j.recovered && j.read !== undefined) state.lastSeq = j.read
    }
    if (state.recovering) {
      if (j.id !== state.recovering.id) return // the server's own join on connect, overtaken by ours
      const buffer = state.recovering.buffer
      if (state.epoch !== undefined && state.lastSeq !== undefined && j.epoch !== state.epoch) {
        // The room's sequence restarted: our `since` means nothing there. Start from 0 in the
        // new epoch, keeping what arrived meanwhile (it is of the new epoch).
        const previousEpoch = state.epoch
        state.epoch = j.epoch
        state.lastSeq = 0
        state.ahead.clear()
        this.emit('reset', { room: j.room, epoch: j.epoch, previousEpoch })
        state.recovering = { id: '', buffer }
        return this.#startJoin(j.room, state)
      }
      state.recovering = undefined
      buffer.sort((a, b) => a.seq - b.seq)
      if (state.lastSeq === undefined) state.lastSeq = j.seq
      else if (!j.recovered) {
        this.emit('gap', { room: j.room, after: state.lastSeq })
        // What came before the room's position is given up; the live frames held meanwhile are not.
        const firstHeld = buffer[0]?.seq
        this.#advanceTo(state, firstHeld !== undefined && firstHeld <= j.seq ? firstHeld - 1 : j.seq)
      }
      state.epoch = j.epoch
      state.live = true
      orphans = buffer
    } else {
      if (j.id) return // an answer to a join we no longer wait for
      // The server says the room's sequence restarted under it (its Redis came back without
      // the room): a new epoch, or the same epoch with a seq behind what we saw.
      const restarted = state.epoch !== undefined && state.epoch !== j.epoch
      if (state.lastSeq !== undefined && (restarted || (!j.recovered && j.seq < state.lastSeq))) {
        this.emit('reset', { room: j.room, epoch: j.epoch, previousEpoch: state.epoch ?? j.epoch })
        state.lastSeq = j.seq
        state.ahead.clear()
      }
      state.epoch = j.epoch
      if (state.lastSeq === undefined) state.lastSeq = j.seq
      state.live = true
    }
    if (j.role) state.role = j.role
    if (j.member) {
      state.asMember = undefined
      const isNew = !this.#book.has(j.room)
      this.#book.joined(j)
      if (isNew) this.emit('membership', { room: j.room, member: true })
      this.#changed(j.room)
    }
    orphans.sort((a, b) => a.seq - b.seq)
    for (const m of orphans) this.#onEvent(m)
    // A replay that did not reach the room's position (or none) leaves nothing to wait for below it.
    if (unasked) this.#advanceTo(state, j.seq)
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
