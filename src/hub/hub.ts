import type { Server } from 'bun'
import type { Broker, Deliver, Position } from '../broker/types'
import type { Config } from '../config'
import { FrameError } from '../core/errors'
import type { Identity } from '../core/identity'
import { topicRoom } from '../core/topic'
import type { Members } from '../members/types'
import type { Metrics } from '../metrics'
import type { AuditEntry, Store } from '../store/types'
import type { Uploads } from '../uploads/service'
import type { Online } from '../cluster/online'
import type { HubPush } from '../push'
import type { HubWebhooks } from '../webhooks'
import type { EventInput } from '../webhooks/events'
import { appender } from './append'
import type { Conn } from './connection'
import type { HubContext } from './context'
import { createConversations } from './conversations'
import type { Conversations } from './conversations'
import { createDelivery } from './delivery'
import { changeFrames } from './frames/changes'
import { messageFrames } from './frames/messages'
import { moderationFrames } from './frames/moderation'
import { pushFrames } from './frames/push'
import { pinFrames } from './frames/pins'
import { createPins } from './pins'
import { createPolls } from './polls'
import type { Polls } from './polls'
import { pollFrames } from './frames/polls'
import type { Pins } from './pins'
import { createSearch } from './search'
import type { Search } from './search'
import { roomFrames } from './frames/rooms'
import { sessionFrames } from './frames/session'
import { createChanges } from './changes'
import type { Changes } from './changes'
import { createModeration } from './moderation'
import type { Moderation } from './moderation'
import { createMutes } from './mutes'
import { createRooms } from './rooms'
import { presenceEvents } from './presence-events'
import { log } from '../log'
import type { Rooms } from './rooms'
import { createSession } from './session'
import { createHubThreads } from './threads'
import { createScheduler } from './scheduled'
import { scheduledFrames } from './frames/scheduled'
import { memoryScheduled } from '../members/scheduled'
import type { ScheduledQueue } from '../members/scheduled'
import { threadFrames } from './frames/threads'
import { memoryThreads } from '../members/threads'
import type { Threads } from '../members/threads'
import type { Session } from './session'
import type { Publish, SendDirect } from './frames/messages'
import type { DeviceInput, DevicePut } from './frames/push'
import { createWordFilter } from './word-filter'
import { createPreviews } from './previews'
import type { PreviewCache, Previews } from './previews'
import type { WordFilter } from './word-filter'

export { dedupeKey } from './frames/messages'

export interface HubDeps {
  config: Config
  broker: Broker
  metrics: Metrics
  nodeId: string
  server: () => Server<unknown> | null | undefined
  /** PostgreSQL when persistence is on: history beyond the broker's log, users, sessions, audit. */
  store?: Store
  members: Members
  /** Verifies a `refresh` token; undefined when auth is off. */
  refresh?: (token: string) => Promise<Identity>
  /** Webhooks and the pre-publish hook (src/webhooks); absent when off. */
  webhooks?: HubWebhooks
  /** Attachments: the uploads chat and dm may carry. */
  uploads?: Uploads
  /** Push notifications (src/push); absent when no provider is configured. */
  push?: HubPush
  /** Who is online, cluster-wide (webhooks and push follow it); absent when nothing does. */
  online?: Pick<Online, 'live' | 'idle'>
  /** The word filter; made from MODERATION_WORDS_FILE when not given (main makes it first, to name the variable on a bad file). */
  words?: WordFilter
  /** Link previews' cache (shared with Redis); this node's LRU when absent. Used only with LINK_PREVIEWS. */
  previewCache?: PreviewCache
  /** The users' thread lists and markers (chosen beside the memberships); absent: in this process. */
  threads?: Threads
  /** The pending scheduled messages (chosen beside the memberships); absent: in this process, not durable. */
  scheduled?: ScheduledQueue
}

/** The hub as the faces, the HTTP API and main see it (see createHub). */
export interface Hub {
  /** Called by the broker for every frame of a watched topic: the hub's sockets, then each delivery hook (onDeliver). */
  deliver: (topic: string, frame: string, except?: string) => void
  onDeliver: HubHooks['onDeliver']
  onDrain: HubHooks['onDrain']
  /** A room's sequence restarted (Redis came back empty): its members here start over from `pos`. */
  reset(room: string, pos: Position): void
  open: Session['open']
  start: Session['start']
  message: Session['message']
  close: Session['close']
  sweep: Session['sweep']
  /** Closes every socket with 1001; resolves with how many were left after `graceMs`, each drain hook's (onDrain) counted in. */
  drain: (graceMs: number) => Promise<number>
  pong: Session['pong']
  /** Sequences and fans out one chat message (the publish API). */
  publish: Publish
  /** Sends one dm outside any connection (the outbox), by the rules of a client's dm. */
  sendDirect: SendDirect
  /** Adds or replaces a device of a user (the push API). */
  putDevice(user: string, id: string, a: DeviceInput): Promise<DevicePut>
  /** The user's total unread, as `welcome` counts it (a push's badge). */
  badge(user: string): Promise<number>
  /** History of a room: the broker's log, then the store. */
  page: Rooms['page']
  audit(entry: AuditEntry): void
  conversations: Conversations
  changes: Changes
  moderation: Moderation
  pins: Pins
  search: Search
  /** The word filter (main rereads it on SIGHUP). */
  words: WordFilter
  /** Link previews (LINK_PREVIEWS); absent when off. */
  previews?: Previews
  /** Polls and slow mode (v4). */
  polls: Polls
  /** Rooms with members on this node. */
  readonly roomCount: number
  /** Each room with members on this node and how many (for the admin view). */
  roomSizes(): Generator<[string, number]>
  readonly draining: boolean
  /** Connections open on this node. */
  readonly size: number
}

/**
 * Another face's part in the way out (the Pusher face, src/pusher), registered with
 * `hub.onDeliver` where the parts are wired (app.ts).
 */
export interface DeliveryHook {
  /**
   * True for a topic only that face has (Pusher's user topics, core/topic.ts): its frames go to
   * the hook's `deliver` alone, never to the hub's sockets.
   */
  owns?(topic: string): boolean
  /** Every frame of a watched topic, after the hub's own sockets got it (one encoded frame, as the broker gave it). */
  deliver: Deliver
  /**
   * A frame of this node alone for the local subscribers of a hub topic, never relayed nor
   * overheard: a room's restart (`joined` at the new epoch). A face whose sockets subscribe to
   * the hub's topics outside Bun (SSE streams) takes it; a face with its own frames ignores it.
   */
  local?(topic: string, frame: string): void
  /**
   * True while the face has nobody on this node to deliver to (and so no topic of its own
   * watched): the hub passes it by with one field read a frame, so a face that is wired but
   * unused (SSE on a node of WebSockets only) adds nothing to the chat path. The face keeps it.
   */
  idle?: boolean
}

/** Another face's part in the graceful drain, registered with `hub.onDrain` (app.ts). */
export interface DrainHook {
  /** Before the hub drains: the face refuses new sockets and tells its open ones to go. */
  begin(): void
  /** After the hub's drain (given the same grace): how many of the face's connections are still open. */
  end(graceMs: number): Promise<number>
}

/** How another face plugs into the hub (centrifuge's On*()): registered where the parts are wired, before traffic. */
export interface HubHooks {
  /** Another face's sockets get the frames the hub delivers (see the hub's deliver). */
  onDeliver(hook: DeliveryHook): void
  /** Another face drains with the hub (see the hub's drain). */
  onDrain(hook: DrainHook): void
}

/**
 * Connections, rooms on Bun topics, presence and limits, put together: the way out
 * (delivery.ts), a connection's life and its frames' dispatch (session.ts), and one module per
 * frame family (frames/), all appending through the one path of append.ts.
 */
export function createHub(deps: HubDeps): Hub {
  const { config, broker, metrics, store, members, webhooks, uploads, push } = deps
  const conns = new Map<string, Conn>()
  const server = () => {
    const s = deps.server()
    if (!s) throw new Error('server not listening')
    return s
  }
  const audit = (entry: AuditEntry) => store?.audit(entry)
  const mutes = createMutes(members)
  const delivery = createDelivery({
    config,
    metrics,
    server,
    conns,
    audit,
    overhear: (topic, frame) => rooms.overhear(topic, frame),
    control: (topic, frame, except) => session.control(topic, frame, except),
    moderation: mutes.note,
    live: deps.online?.live,
    idle: deps.online?.idle,
  })
  const { send, sendError } = delivery
  const append = appender(broker, metrics)
  const presence = presenceEvents({
    broker,
    max: config.PRESENCE_EVENTS_MAX,
    windowMs: config.PRESENCE_BATCH_MS,
    onError: (room, err) => {
      metrics.brokerErrors.inc()
      log.warn('presence event not relayed', { room, err })
    },
  })
  // The joins and leaves no call of this node returned (a dead node's users reaped here) are announced alike.
  broker.presence.onEdge(presence.announce)
  const rooms = createRooms({
    broker,
    store,
    metrics,
    send,
    audit,
    addMember: delivery.addMember,
    removeMember: delivery.removeMember,
    announce: presence.announce,
  })
  const emit = webhooks?.emit && ((e: EventInput) => webhooks.emit!(e))
  const changes = createChanges({ broker, append, store, emit, deleted: uploads && ((room, msg) => uploads.deleted({ room, msg })) })
  const conversations = createConversations({
    config,
    broker,
    members,
    rooms,
    emit: webhooks?.emit,
    present: async (room, frames, viewer) => (await changes.present(room, { frames, more: false }, viewer)).frames,
  })
  const moderation = createModeration({ broker, append, members, audit, emit })
  const pins = createPins({ broker, append, rooms, changes })
  const search = createSearch({ store, members, broker })
  const words = deps.words ?? createWordFilter({ file: config.MODERATION_WORDS_FILE, action: config.MODERATION_WORDS_ACTION })
  const previews = config.LINK_PREVIEWS
    ? createPreviews({ append, metrics, allow: config.OUTBOUND_ALLOW, timeoutMs: config.LINK_PREVIEW_TIMEOUT_MS, cache: deps.previewCache })
    : undefined
  const polls = createPolls({ broker, append, store })
  const threads = createHubThreads({ broker, store, threads: deps.threads ?? memoryThreads(), rooms, changes, conversations })

  const h: HubContext = {
    config,
    broker,
    metrics,
    store,
    members,
    webhooks,
    uploads,
    push,
    refresh: deps.refresh,
    append,
    rooms,
    conversations,
    changes,
    moderation,
    mutes,
    words,
    previews,
    threads,
    send,
    sendError,
    audit,
    async mayUse(c, room, verb) {
      if (!(await conversations.mayUse(c.identity, room))) throw new FrameError('forbidden', `room: not allowed to ${verb} ${room}`)
    },
    async live(c, room) {
      const pending = c.joining.get(room)
      if (pending) await pending.done
      if (!c.rooms.has(room)) throw new FrameError('forbidden', `room: not a member of ${room}`)
    },
    memberJoin(c, room, read, since, id) {
      c.member.add(room)
      return rooms.join(c, room, { since, id, member: { read } })
    },
  }

  const messages = messageFrames(h, polls)
  const scheduler = createScheduler({
    queue: deps.scheduled ?? memoryScheduled(),
    broker,
    members,
    conversations,
    metrics,
    webhooks,
    send: {
      chat: (room, from, body, data, dedupe, replyTo) =>
        messages.publish(room, from, words.filterText(body), data, dedupe, undefined, replyTo),
      dm: (from, to, body, data, key) => messages.sendDirect(from, to, words.filterText(body), data, key),
    },
  })
  const pushing = pushFrames(h)
  const session = createSession({
    h,
    delivery,
    conns,
    nodeId: deps.nodeId,
    chatNow: messages.chatNow,
    handlers: {
      ...messages.handlers,
      ...roomFrames(h),
      ...threadFrames(h),
      ...changeFrames(h),
      ...moderationFrames(h),
      ...sessionFrames(h),
      ...pinFrames(h, pins, search),
      ...pollFrames(h, polls),
      ...pushing.handlers,
      ...scheduledFrames(h, scheduler, messages.handlers, config.DEFAULT_ROOM),
    },
  })

  const deliveryHooks: DeliveryHook[] = []
  const drainHooks: DrainHook[] = []

  /**
   * The broker's frames (every watched topic) on their way out: to this hub's sockets
   * (delivery.ts, one publish per frame), then to every other face's (deliveryHooks). A
   * topic a face owns goes to that face alone. An idle hook (nobody of its face here) is passed by.
   */
  function deliver(topic: string, frame: string, except?: string) {
    for (let i = 0; i < deliveryHooks.length; i++) {
      const hook = deliveryHooks[i]!
      if (!hook.idle && hook.owns?.(topic)) return hook.deliver(topic, frame, except)
    }
    delivery.deliver(topic, frame, except)
    for (let i = 0; i < deliveryHooks.length; i++) {
      const hook = deliveryHooks[i]!
      if (!hook.idle) hook.deliver(topic, frame, except)
    }
  }

  /** The graceful drain: every face is told first, the hub's sockets drain, then each face's count is added. */
  async function drain(graceMs: number): Promise<number> {
    for (const hook of drainHooks) hook.begin()
    // A draining node claims no more scheduled messages: the others (or its successor) send them.
    scheduler.stop()
    let left = await session.drain(graceMs)
    // The leaves of the sockets just closed, and the windows of this node's big rooms, would die with it.
    await rooms.settled()
    await presence.drain()
    for (const hook of drainHooks) left += await hook.end(graceMs)
    polls.stop()
    return left
  }

  const hooks: HubHooks = {
    onDeliver: (hook) => void deliveryHooks.push(hook),
    onDrain: (hook) => void drainHooks.push(hook),
  }

  return {
    deliver,
    onDeliver: hooks.onDeliver,
    onDrain: hooks.onDrain,
    reset: (room: string, pos: Position) =>
      session.reset(room, pos, (topic, frame) => {
        server().publish(topic, frame)
        for (let i = 0; i < deliveryHooks.length; i++) if (!deliveryHooks[i]!.idle) deliveryHooks[i]!.local?.(topic, frame)
      }),
    open: session.open,
    start: session.start,
    message: session.message,
    close: session.close,
    sweep: session.sweep,
    drain,
    pong: session.pong,
    publish: messages.publish,
    sendDirect: messages.sendDirect,
    putDevice: pushing.putDevice,
    /** The user's total unread, as `welcome` counts it (a push's badge). */
    badge: async (user: string) =>
      (await Promise.all((await members.of(user)).map((m) => rooms.summary(m.room, m.read, user)))).reduce((n, s) => n + s.unread, 0),
    page: rooms.page,
    audit,
    conversations,
    changes,
    moderation,
    pins,
    search,
    words,
    previews,
    polls,
    get roomCount() {
      return delivery.roomTopics.size
    },
    /** Each room with members on this node and how many (for the admin view). */
    *roomSizes(): Generator<[string, number]> {
      for (const topic of delivery.roomTopics) yield [topicRoom(topic)!, delivery.local.get(topic)?.size ?? 0]
    },
    get draining() {
      return session.draining
    },
    get size() {
      return conns.size
    },
  }
}
