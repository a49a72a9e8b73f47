import type { Broker } from '../broker/types'
import { userTopic } from '../broker/types'
import { mutedMessage } from '../broker/message-rules'
import { FrameError } from '../core/errors'
import type { Identity, User } from '../core/identity'
import { log } from '../log'
import type { Members } from '../members/types'
import type { ScheduledMessage, ScheduledQueue } from '../members/scheduled'
import type { Metrics } from '../metrics'
import { frames, scheduledJson } from '../protocol/server-frames'
import type { HubWebhooks } from '../webhooks'
import { notAccepted } from './append'
import type { Conn } from './connection'
import type { Conversations } from './conversations'

/** How far ahead a message may be scheduled (PROTOCOL-v4: at most 30 days). */
export const SCHEDULE_MAX_AHEAD_MS = 30 * 24 * 3600 * 1000
/** Pending scheduled messages per user: the bound on what one user makes the cluster keep and send. */
export const SCHEDULED_MAX_PER_USER = 100
/**
 * How long a node's claim holds a due message: another node takes it only after that (the first
 * died sending it). Well under the append's retry window (DEDUPE_WINDOW_MS), so that the second
 * send of a message the first node did append is answered as a duplicate, not sent twice.
 */
export const SCHEDULED_LEASE_MS = 30_000
const CLAIM_BATCH = 50

/** The scheduled id of a frame with a client id: the same for every retry of it by that user. */
const retryId = (user: string, id: string) =>
  `s${new Bun.CryptoHasher('sha256')
    .update(JSON.stringify(['scheduled', user, id]))
    .digest('hex')
    .slice(0, 32)}`

/** What a scheduled message is sent with at its time: the hub's own paths of a chat and a dm, as the user. */
export interface ScheduledSenders {
  chat(room: string, from: User, body: string, data: unknown, dedupe: string, replyTo?: string): Promise<unknown>
  dm(from: User, to: string, body: string, data: unknown, dedupe: string): Promise<unknown>
}

/** What a `chat` or `dm` frame with `send_at` asks. */
export interface ScheduleInput {
  room?: string
  to?: string
  body: string
  data?: unknown
  reply_to?: string
  send_at: string
  attachments?: string[]
  id?: string
}

/** Scheduled messages (see createScheduler). */
export interface Scheduler {
  /** Keeps the message for its time (the caller acks it: `ack {id, scheduled, send_at}`). */
  schedule(c: Conn, f: ScheduleInput, member: boolean): Promise<{ scheduled: string; send_at: string }>
  list(user: string, room?: string): Promise<string[]>
  unschedule(user: string, id: string): Promise<void>
  /** Claims the due messages and sends each (one pass; the timer calls it). */
  tick(): Promise<void>
  stop(): void
}

/**
 * Scheduled messages (PROTOCOL-v4): kept by the queue engine until `send_at`, then sent by
 * whichever node claims them as the user's own message, through the same rules as a message
 * sent then (room allowed, ban, mute, membership, blocks, the pre-publish hook, the
 * sequencer's own checks); a refusal reaches the user's connections as `error {code, scheduled}`.
 */
export function createScheduler(deps: {
  queue: ScheduledQueue
  broker: Broker
  members: Members
  conversations: Pick<Conversations, 'mayUse'>
  metrics: Metrics
  webhooks?: HubWebhooks
  send: ScheduledSenders
  /** How often this node looks for due messages (others' included). */
  pollMs?: number
}): Scheduler {
  const { queue, broker, members, conversations, metrics, webhooks, send } = deps
  const pollMs = deps.pollMs ?? 1000

  function sendAt(raw: string): number {
    const at = Date.parse(raw)
    const now = Date.now()
    if (Number.isNaN(at)) throw new FrameError('bad_request', 'send_at: must be an ISO 8601 time')
    if (at <= now) throw new FrameError('bad_request', `send_at: ${raw} is not in the future`)
    if (at > now + SCHEDULE_MAX_AHEAD_MS) throw new FrameError('bad_request', 'send_at: at most 30 days ahead')
    return at
  }

  async function schedule(c: Conn, f: ScheduleInput, member: boolean): Promise<{ scheduled: string; send_at: string }> {
    const at = sendAt(f.send_at)
    if (f.attachments?.length) throw new FrameError('bad_request', 'attachments: a scheduled message cannot carry attachments')
    const m: ScheduledMessage = {
      // A retry of the frame (the same client id, a client's outbox after a reconnect) is the same scheduled message.
      scheduled: f.id === undefined ? Bun.randomUUIDv7() : retryId(c.identity.user.id, f.id),
      user: { id: c.identity.user.id, name: c.identity.user.name },
      ...(c.identity.rooms ? { rooms: c.identity.rooms } : {}),
      ...(f.room !== undefined ? { room: f.room } : { to: f.to }),
      body: f.body,
      ...(f.data !== undefined ? { data: f.data } : {}),
      ...(f.reply_to !== undefined ? { reply_to: f.reply_to } : {}),
      send_at: new Date(at).toISOString(),
      ...(member ? { member } : {}),
    }
    if ((await queue.add(m, SCHEDULED_MAX_PER_USER)) === 'limit')
      throw new FrameError('limit', `scheduled: at most ${SCHEDULED_MAX_PER_USER} pending scheduled messages per user`)
    // Sent on time by this node when it is soon; the poll (any node) catches the rest.
    if (at - Date.now() < 60_000) setTimeout(() => void tick(), Math.max(0, at - Date.now())).unref()
    return { scheduled: m.scheduled, send_at: m.send_at }
  }

  /** The rules of a message sent now, for a user with no connection at hand. */
  async function check(m: ScheduledMessage, room: string) {
    const identity: Identity = { user: m.user, ...(m.rooms ? { rooms: m.rooms } : {}) }
    if (!(await conversations.mayUse(identity, room))) throw new FrameError('forbidden', `room: not allowed to write in ${room}`)
    const standing = await members.standing(room, m.user.id)
    if (standing.banned) throw new FrameError('forbidden', `room: banned from ${room}`)
    if (standing.mutedUntil !== undefined && standing.mutedUntil > Date.now())
      throw new FrameError('forbidden', mutedMessage(room, standing.mutedUntil))
    if (m.member && !(await members.get(room, m.user.id))) throw new FrameError('forbidden', `room: no longer a member of ${room}`)
  }

  async function fire(m: ScheduledMessage) {
    const key = JSON.stringify(['scheduled', m.scheduled])
    try {
      if (m.room !== undefined) {
        await check(m, m.room)
        let { body, data } = m
        if (webhooks?.beforePublish)
          ({ body, data } = await webhooks.beforePublish({ room: m.room, user: m.user, body, data, reply_to: m.reply_to }))
        await send.chat(m.room, m.user, body, data, key, m.reply_to)
      } else await send.dm(m.user, m.to!, m.body, m.data, key)
    } catch (err) {
      const e = notAccepted(metrics, m.room ?? 'dm', m.room !== undefined ? 'chat' : 'dm', err)
      log.info('scheduled message refused', { scheduled: m.scheduled, user: m.user.id, code: e.code })
      await broker.relay(userTopic(m.user.id), frames.scheduledError(e.code, e.message, m.scheduled))
    }
  }

  let ticking: Promise<void> | undefined
  /** One pass at a time on this node; claims keep other nodes' passes off the same messages. */
  function tick(): Promise<void> {
    ticking ??= (async () => {
      try {
        for (;;) {
          const due = await queue.claim(Date.now(), CLAIM_BATCH, SCHEDULED_LEASE_MS)
          for (const m of due) {
            await fire(m)
            await queue.done(m)
          }
          if (due.length < CLAIM_BATCH) break
        }
      } catch (err) {
        log.warn('scheduled messages: a pass failed (retried at the next one)', { err })
      } finally {
        ticking = undefined
      }
    })()
    return ticking
  }
  const timer = setInterval(() => void tick(), pollMs)
  timer.unref()

  return {
    schedule,
    async list(user, room) {
      return (await queue.list(user, room)).map(scheduledJson)
    },
    async unschedule(user, id) {
      if (!(await queue.remove(user, id))) throw new FrameError('not_found', `scheduled: you have no pending scheduled message ${id}`)
    },
    tick,
    stop: () => clearInterval(timer),
  }
}
