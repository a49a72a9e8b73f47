import type { Server } from 'bun'
import type { Broker, Position } from '../broker/types'
import type { Config } from '../config'
import { FrameError } from '../core/errors'
import type { Identity } from '../core/identity'
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
import { createDelivery } from './delivery'
import { changeFrames } from './frames/changes'
import { messageFrames } from './frames/messages'
import { moderationFrames } from './frames/moderation'
import { pushFrames } from './frames/push'
import { pinFrames } from './frames/pins'
import { createPins } from './pins'
import { createSearch } from './search'
import { roomFrames } from './frames/rooms'
import { sessionFrames } from './frames/session'
import { createChanges } from './changes'
import { createModeration } from './moderation'
import { createMutes } from './mutes'
import { createRooms } from './rooms'
import { createSession } from './session'

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
}

/**
 * Connections, rooms on Bun topics, presence and limits, put together: the way out
 * (delivery.ts), a connection's life and its frames' dispatch (session.ts), and one module per
 * frame family (frames/), all appending through the one path of append.ts.
 */
export function createHub(deps: HubDeps) {
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
  const rooms = createRooms({ broker, store, metrics, send, audit, addMember: delivery.addMember, removeMember: delivery.removeMember })
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

  // A push's badge: the user's total unread, as `welcome` counts it.
  if (push) push.badge = async (user) => (await Promise.all((await members.of(user)).map((m) => rooms.summary(m.room, m.read, user)))).reduce((n, s) => n + s.unread, 0)
  const messages = messageFrames(h)
  const pushing = pushFrames(h)
  const session = createSession({
    h,
    delivery,
    conns,
    nodeId: deps.nodeId,
    chatNow: messages.chatNow,
    handlers: { ...messages.handlers, ...roomFrames(h), ...changeFrames(h), ...moderationFrames(h), ...sessionFrames(h), ...pinFrames(h, pins, search), ...pushing.handlers },
  })

  return {
    deliver: delivery.deliver,
    reset: (room: string, pos: Position) => session.reset(room, pos, (topic, frame) => server().publish(topic, frame)),
    open: session.open,
    message: session.message,
    close: session.close,
    sweep: session.sweep,
    drain: session.drain,
    pong: session.pong,
    publish: messages.publish,
    putDevice: pushing.putDevice,
    page: rooms.page,
    audit,
    conversations,
    changes,
    moderation,
    pins,
    search,
    get roomCount() {
      let n = 0
      for (const topic of delivery.local.keys()) if (topic.startsWith('r:')) n++
      return n
    },
    /** Each room with members on this node and how many (for the admin view). */
    *roomSizes(): Generator<[string, number]> {
      for (const [topic, set] of delivery.local) if (topic.startsWith('r:')) yield [topic.slice(2), set.size]
    },
    get draining() {
      return session.draining
    },
    get size() {
      return conns.size
    },
  }
}

export type Hub = ReturnType<typeof createHub>
