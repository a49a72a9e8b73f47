import type { Ack, ChatClient, DirectMessage, HistoryPage, PresenceFrame, RoomMessage, ServerFrame, User } from '@chat-server/client'
import { Store } from './store'
import { Timeline } from './timeline'
import type { PreviewEvent } from './timeline'

/**
 * Where a room view stands: `joining` (waiting for the server), `loading` (reading the newest
 * page), `ready` (live), `offline` (the connection is down; the client resumes by itself and
 * nothing is lost), `error` (the room was refused: `error` says why).
 */
export type RoomStatus = 'joining' | 'loading' | 'ready' | 'offline' | 'error'

export interface RoomMeta {
  status: RoomStatus
  /** Older messages can be loaded (`loadOlder`). */
  more: boolean
  loadingOlder: boolean
  error?: string
}

export interface SendOptions {
  /** Answer this message (a reply: `reply_to`). */
  replyTo?: string
  data?: unknown
  /** Ids of uploads (`POST /api/uploads`). */
  attachments?: string[]
}

export interface RoomOptions {
  /** Join as a member: the room is listed by `useConversations` and counts unread. Default false. */
  member?: boolean
  /** Messages per history page (default 50). */
  pageSize?: number
}

/** How long a `typing` frame shows the user as typing (the demo page's value; senders repeat it every 2 s). */
export const TYPING_SHOWN_MS = 3000
/** `sendTyping` sends at most one frame per this much time. */
export const TYPING_EVERY_MS = 2000

const EMPTY_USERS: readonly User[] = Object.freeze([])
const isDirect = (room: string) => room.startsWith('dm:')

/**
 * One room of one client as the hooks see it: the client's events for the room applied to four
 * small stores (messages, typing, presence, status), and the room's actions. Shared by every
 * component that shows the room (see `roomOf`); it follows the client while one of them is mounted.
 */
export class RoomController {
  readonly timeline: Timeline
  readonly typing = new Store<readonly User[]>(EMPTY_USERS)
  readonly presence = new Store<readonly User[]>(EMPTY_USERS)
  readonly meta = new Store<RoomMeta>({ status: 'joining', more: false, loadingOlder: false })
  #users = new Map<string, User>()
  #typers = new Map<string, { user: User; until: number }>()
  #typingTimer?: ReturnType<typeof setTimeout>
  #lastTyping = 0
  #before?: number
  #off: (() => void)[] = []
  #presenceAsked = 0
  #loading = false
  #retained = 0
  /** Counts starts: an answer to an earlier one (StrictMode mounts twice) is not this one's. */
  #session = 0

  constructor(
    readonly client: ChatClient,
    readonly room: string,
    readonly options: RoomOptions = {},
  ) {
    this.timeline = new Timeline(() => client.user?.id)
  }

  /** A component started showing the room; the first one starts following the client. */
  retain(): () => void {
    if (this.#retained++ === 0) this.#start()
    let released = false
    return () => {
      if (released) return
      released = true
      if (--this.#retained === 0) this.#stop()
    }
  }

  // ---------------------------------------------------------------- actions (stable functions: safe as props of memo rows)

  /** Sends `body` (a reply with `options.replyTo`); in a direct room, as a dm to the other user. */
  readonly send = async (body: string, options: SendOptions = {}): Promise<Ack> => {
    const { client, room } = this
    const extra = options.attachments?.length ? { attachments: options.attachments } : {}
    const to = isDirect(room) ? client.conversation(room)?.with : undefined
    if (to && to.id !== client.user?.id && !options.replyTo) {
      const ack = await client.dm(to.id, body, options.data, extra)
      // This connection gets no frame of its own dm: it shows it from the answer.
      const me = client.user
      if (me && ack.seq !== undefined) {
        const sent: DirectMessage = {
          type: 'dm',
          id: ack.msg ?? ack.id,
          room,
          seq: ack.seq,
          from: me,
          to: to.id,
          body,
          ...(options.data === undefined ? {} : { data: options.data }),
          ts: new Date().toISOString(),
        }
        this.timeline.message(sent)
      }
      return ack
    }
    if (options.replyTo) return client.reply(room, options.replyTo, body, options.data)
    return client.send(room, body, options.data, extra)
  }

  readonly edit = (msg: string, body: string, data?: unknown): Promise<Ack> => this.client.edit(this.room, msg, body, data)

  readonly remove = (msg: string): Promise<Ack> => this.client.delete(this.room, msg)

  /** Toggles this user's `reaction` on a message: added, or removed when the user has it. */
  readonly react = (msg: string, reaction: string): Promise<Ack> => {
    const had = this.timeline.get(msg)?.reactions.some((r) => r.reaction === reaction && r.me)
    return had ? this.client.unreact(this.room, msg, reaction) : this.client.react(this.room, msg, reaction)
  }

  /** Reads the page before the oldest message shown; resolves with whether more are left. */
  readonly loadOlder = async (): Promise<boolean> => {
    const m = this.meta.get()
    if (!m.more || m.loadingOlder) return m.more
    this.#meta({ loadingOlder: true })
    this.timeline.readingOlder()
    try {
      const page = await this.client.history(this.room, { before: this.#before ?? this.timeline.first?.seq, limit: this.#pageSize })
      this.timeline.older(page)
      if (page.before !== undefined) this.#before = page.before
      this.#meta({ loadingOlder: false, more: page.more })
      return page.more
    } catch (err) {
      this.timeline.older({ messages: [] })
      this.#meta({ loadingOlder: false })
      throw err
    }
  }

  /** Tells the room this user is typing; call it on every keystroke (it sends at most one frame per 2 s). */
  readonly sendTyping = (): void => {
    const now = Date.now()
    if (now - this.#lastTyping < TYPING_EVERY_MS) return
    this.#lastTyping = now
    this.client.typing(this.room)
  }

  /** Moves the user's read marker to the room's last message (a member's room; nothing to do otherwise). */
  readonly markRead = async (): Promise<void> => {
    const c = this.client.conversation(this.room)
    if (!c || c.read >= c.seq) return
    await this.client.markRead(this.room)
  }

  // ---------------------------------------------------------------- following the client

  get #pageSize() {
    return this.options.pageSize ?? 50
  }

  #start() {
    const { client, room } = this
    const mine =
      <T extends { room?: string }>(fn: (f: T) => void) =>
      (f: T) => {
        if (f.room === room) fn(f)
      }
    const message = mine<RoomMessage>((m) => {
      this.timeline.message(m)
      if (this.#typers.delete(m.from.id)) this.#publishTyping()
    })
    this.#off.push(
      client.on('chat', message),
      client.on('dm', message),
      client.on(
        'edit',
        mine((e) => this.timeline.change(e)),
      ),
      client.on(
        'delete',
        mine((e) => this.timeline.change(e)),
      ),
      client.on(
        'react',
        mine((e) => this.timeline.change(e)),
      ),
      // v4 previews: the client names no event for them; a raw frame may come twice (replays), applying one is idempotent.
      client.on('frame', (f: ServerFrame) => {
        const raw = f as { type: string; room?: string }
        if (raw.type === 'preview' && raw.room === room) this.timeline.change(f as unknown as PreviewEvent)
      }),
      client.on(
        'typing',
        mine((t) => this.#typed(t.user)),
      ),
      client.on(
        'presence',
        mine((p) => this.#presence(p)),
      ),
      client.on(
        'joined',
        mine(() => this.#joined()),
      ),
      client.on(
        'reset',
        mine(() => this.#reload()),
      ),
      client.on(
        'gap',
        mine(() => this.#reload()),
      ),
      client.on(
        'left',
        mine((l) => {
          if (!l.id) this.#meta({ status: 'error', error: l.reason ? `left the room: ${l.reason}` : 'left the room' })
        }),
      ),
      client.on('state', (s) => {
        if (s !== 'open' && this.meta.get().status === 'ready') this.#meta({ status: 'offline' })
      }),
    )
    this.timeline.hold()
    this.#meta({ status: 'joining', error: undefined })
    const session = ++this.#session
    const join = this.options.member ? client.joinAsMember(room) : client.join(room)
    join.then(
      () => session === this.#session && this.#joined(),
      (err: Error) => session === this.#session && this.#retained > 0 && this.#meta({ status: 'error', error: err.message }),
    )
  }

  #stop() {
    for (const off of this.#off.splice(0)) off()
    // Unfollowed, it would miss events: the next component to show the room starts from the newest page.
    this.timeline.clear()
    this.#before = undefined
    this.#meta({ status: 'joining', more: false })
    clearTimeout(this.#typingTimer)
    this.#typers.clear()
    this.#publishTyping()
  }

  /** The room is live (first join, or again after a reconnect): read the newest page once, and who is here. */
  #joined() {
    if (this.#retained === 0) return
    if (this.timeline.holding) void this.#loadNewest()
    else if (this.meta.get().status !== 'loading') this.#meta({ status: 'ready', error: undefined })
    void this.#askPresence()
  }

  async #loadNewest() {
    if (this.#loading) return
    this.#loading = true
    const session = this.#session
    this.#meta({ status: 'loading' })
    let page: HistoryPage | undefined
    let error: Error | undefined
    try {
      page = await this.client.history(this.room, { limit: this.#pageSize })
    } catch (err) {
      error = err as Error
    }
    this.#loading = false
    if (session !== this.#session || this.#retained === 0) {
      // Stopped meanwhile; started again: that start's page is still to read.
      if (this.#retained > 0 && this.timeline.holding) void this.#loadNewest()
      return
    }
    this.timeline.loaded(page)
    if (page) {
      this.#before = page.before
      this.#meta({ status: this.client.state === 'open' ? 'ready' : 'offline', more: page.more, error: undefined })
    } else this.#meta({ status: 'error', error: error?.message ?? 'history failed' })
  }

  /** The room's sequence restarted, or messages could not be recovered: start over from the newest page. */
  #reload() {
    this.timeline.clear()
    this.timeline.hold()
    this.#before = undefined
    void this.#loadNewest()
  }

  async #askPresence() {
    const asked = ++this.#presenceAsked
    try {
      const users = await this.client.presence(this.room)
      if (asked !== this.#presenceAsked) return // a newer answer is on its way
      this.#users = new Map(users.map((u) => [u.id, u]))
      this.#publishPresence()
    } catch {
      /* presence is a nicety: the room works without it */
    }
  }

  #presence(p: PresenceFrame) {
    if (p.event === 'join') this.#users.set(p.user.id, p.user)
    else if (p.event === 'leave') this.#users.delete(p.user.id)
    else if (p.event === 'batch') {
      for (const u of p.joined) this.#users.set(u.id, u)
      for (const u of p.left) this.#users.delete(u.id)
      if (p.truncated) void this.#askPresence() // the lists did not hold everyone
    } else return
    this.#publishPresence()
  }

  #publishPresence() {
    this.presence.set([...this.#users.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)))
  }

  #typed(user: User) {
    if (user.id === this.client.user?.id) return
    this.#typers.set(user.id, { user, until: Date.now() + TYPING_SHOWN_MS })
    this.#publishTyping()
  }

  /** Publishes who types now, and wakes up when the next one stops. */
  #publishTyping() {
    const now = Date.now()
    for (const [id, t] of this.#typers) if (t.until <= now) this.#typers.delete(id)
    const users = [...this.#typers.values()].map((t) => t.user)
    const before = this.typing.get()
    if (users.length !== before.length || users.some((u, i) => u !== before[i])) this.typing.set(users.length ? users : EMPTY_USERS)
    clearTimeout(this.#typingTimer)
    if (this.#typers.size) {
      const next = Math.min(...[...this.#typers.values()].map((t) => t.until))
      this.#typingTimer = setTimeout(() => this.#publishTyping(), Math.max(0, next - now) + 10)
    }
  }

  #meta(patch: Partial<RoomMeta>) {
    const m = this.meta.get()
    const next = { ...m, ...patch }
    if (next.status === m.status && next.more === m.more && next.loadingOlder === m.loadingOlder && next.error === m.error) return
    this.meta.set(next)
  }
}

const rooms = new WeakMap<ChatClient, Map<string, RoomController>>()

/** The one controller of a room of a client: every component that shows the room shares it. */
export function roomOf(client: ChatClient, room: string, options?: RoomOptions): RoomController {
  let map = rooms.get(client)
  if (!map) rooms.set(client, (map = new Map()))
  let r = map.get(room)
  if (!r) map.set(room, (r = new RoomController(client, room, options)))
  return r
}
