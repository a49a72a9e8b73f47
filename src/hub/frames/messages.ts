import type { Accepted, EventDraft } from '../../broker/types'
import { mutedMessage } from '../../broker/message-rules'
import { FrameError } from '../../core/errors'
import type { FrameOf } from '../../protocol/client-frames'
import { CHAT_HEAD, DM_HEAD, chatFrame, chatTailOfOwn, eventTail, frames, userJson } from '../../protocol/server-frames'
import type { RoomEvent, User } from '../../protocol/server-frames'
import { notAccepted } from '../append'
import { isoNow } from '../clock'
import { log } from '../../log'
import type { Conn } from '../connection'
import { answering } from '../context'
import type { HubContext, Handlers } from '../context'
import type { Attachment } from '../../uploads/service'
import { slowed } from '../polls'
import type { PollFrame, Polls } from '../polls'

/** Retry keys: unambiguous whatever the ids contain, one space per kind of send. */
export const dedupeKey = (...parts: string[]) => JSON.stringify(parts)

/** Sequences and fans out one chat message; `dedupe` is the sender's retry key, `files` its attachments. */
export type Publish = (
  room: string,
  from: User,
  body: string,
  data: unknown,
  dedupe?: string,
  fromJson?: string,
  replyTo?: string,
  files?: Attachment[],
  more?: PublishMore,
) => Promise<Accepted>

/**
 * Sends a dm as `from` to `to` outside any connection (the outbox): the rules and the append of
 * a client's dm; resolves with the pair's direct room besides the append's answer.
 */
export type SendDirect = (from: User, to: string, body: string, data: unknown, dedupe?: string) => Promise<Accepted & { room: string }>

/** What a chat may carry beyond the common case (v4): a poll; `moderator` exempts it from slow mode. */
export interface PublishMore {
  poll?: PollFrame
  moderator?: boolean
}

/** chat and dm: messages, each an event of its room's log. */
export function messageFrames(h: HubContext, polls: Polls) {
  const { config, broker, metrics, members, webhooks, push } = h

  /** The frame's room, else the default room; with `DEFAULT_ROOM=` (none) a `chat` must name one. */
  function roomOf(f: FrameOf<'chat'>): string {
    const room = f.room ?? config.DEFAULT_ROOM
    if (room === '') throw new FrameError('bad_request', 'room: required (this server has no default room)')
    return room
  }

  async function chat(c: Conn, f: FrameOf<'chat'>) {
    const room = roomOf(f)
    await h.live(c, room)
    const m = h.mutes.until(c, room)
    const muted = typeof m === 'number' ? m : await m
    if (muted > Date.now()) throw new FrameError('forbidden', mutedMessage(room, muted))
    const files = f.attachments?.length ? await attachments(c, f.attachments) : undefined
    let body = h.words.filterText(f.body)
    let data: unknown = f.data
    if (webhooks?.beforePublish)
      ({ body, data } = await webhooks.beforePublish({ room, user: c.identity.user, body, data, reply_to: f.reply_to }))
    // A poll's texts are written for others like the body: the word filter reads them too.
    const poll =
      f.poll &&
      polls.shape({
        ...f.poll,
        question: h.words.filterText(f.poll.question, 'poll.question'),
        options: f.poll.options.map((o, i) => h.words.filterText(o, `poll.options[${i}]`)),
      })
    const started = performance.now()
    const send = (more: PublishMore) =>
      publish(
        room,
        c.identity.user,
        body,
        data,
        f.id && dedupeKey('chat', room, c.identity.user.id, f.id),
        c.fromJson,
        f.reply_to,
        files,
        more,
      )
    let accepted: Accepted
    try {
      accepted = await send({ poll })
    } catch (err) {
      // Slow mode spares owners and moderators: their role is looked up only when a chat was slowed.
      if (!slowed(err) || !(await h.moderation.moderates(c.identity, c.identity.user.id, room))) throw err
      accepted = await send({ poll, moderator: true })
    }
    chatDone(c, f, room, accepted, started)
  }

  /**
   * `chat` without a promise, for the common case: a room the connection is live in, its mute
   * state known, no pre-publish hook, an engine that appends synchronously (memory, no store).
   * False when the frame needs `chat` (nothing was done then).
   */
  function chatNow(c: Conn, f: FrameOf<'chat'>): boolean {
    // A reply waits for the thread lists (`chat`), so that its sender's `threads` right after its ack has it.
    if (
      !broker.appendNow ||
      webhooks?.beforePublish ||
      f.attachments?.length ||
      f.poll ||
      f.reply_to !== undefined ||
      f.send_at !== undefined
    )
      return false
    const room = f.room ?? config.DEFAULT_ROOM
    if (room === '') return false // `chat` answers bad_request
    if (c.joining.has(room) || !c.rooms.has(room) || !h.mutes.knownFree(c, room)) return false
    const started = performance.now()
    const from = c.identity.user
    const m = draft(room, from, h.words.filterText(f.body), f.data, c.fromJson, f.reply_to)
    let accepted: Accepted | undefined
    try {
      accepted = broker.appendNow(room, m, f.id && dedupeKey('chat', room, from.id, f.id))
    } catch (err) {
      // Slowed: `chat` answers it (and spares an owner or moderator); nothing was appended.
      if (slowed(err)) return false
      throw notAccepted(metrics, room, 'chat', err)
    }
    if (!accepted) return false
    published(room, from, m, accepted)
    chatDone(c, f, room, accepted, started)
    return true
  }

  function chatDone(c: Conn, f: FrameOf<'chat'>, room: string, accepted: Accepted, started: number) {
    metrics.publishLatency.observe((performance.now() - started) / 1000)
    if (c.member.has(room)) members.touch(room, c.identity.user.id, accepted.seq)
    if (f.id) h.send(c, frames.ack(f.id, accepted.id, accepted.seq), 'ack')
  }

  /** A chat event made here: its id and time, and its frame's tail encoded once. */
  function draft(
    room: string,
    from: User,
    body: string,
    data: unknown,
    fromJson?: string,
    replyTo?: string,
    files?: Attachment[],
    more?: PublishMore,
  ): EventDraft {
    const id = Bun.randomUUIDv7()
    const ts = isoNow()
    const poll = more?.poll
    const tail = chatTailOfOwn(id, room, fromJson ?? userJson(from), body, data, ts, replyTo, files, poll)
    const event: RoomEvent = { type: 'chat', id, room, from, body, data, ts }
    // In the frame's order (chatTailOfOwn): reply_to, then attachments, then poll.
    if (replyTo !== undefined || files || poll)
      event.extra = {
        ...(replyTo !== undefined ? { reply_to: replyTo } : {}),
        ...(files ? { attachments: files } : {}),
        ...(poll ? { poll } : {}),
      }
    return { event, head: CHAT_HEAD, tail, ...(more?.moderator ? { moderator: true } : {}) }
  }

  /** The uploads a message names, checked to be the sender's (bad_request naming the id otherwise). */
  async function attachments(c: Conn, ids: string[]): Promise<Attachment[]> {
    if (!h.uploads) throw new FrameError('bad_request', 'attachments: uploads are not enabled on this server')
    return h.uploads.attachments(ids, c.identity.user.id)
  }

  /**
   * Appends a message carrying files: where they were sent is recorded first (so that no
   * accepted message's file is ever reaped as an orphan), and undone when the append is
   * refused or was a retry of a message already accepted (which holds its own record).
   */
  async function appendWithFiles(
    room: string,
    m: EventDraft,
    files: Attachment[] | undefined,
    key?: string,
    except?: string,
  ): Promise<Accepted> {
    if (!files || !h.uploads) return h.append(room, m, key, except)
    const ref = { room, msg: m.event.id }
    await h.uploads.link(
      files.map((a) => a.id),
      ref,
    )
    let accepted: Accepted
    try {
      accepted = await h.append(room, m, key, except)
    } catch (err) {
      await h.uploads.unlink(ref).catch(() => {})
      throw err
    }
    if (accepted.duplicate) await h.uploads.unlink(ref).catch(() => {})
    return accepted
  }

  function published(room: string, from: User, m: EventDraft, accepted: Accepted) {
    if (accepted.duplicate) return
    metrics.published.inc()
    webhooks?.created?.(room, from, chatFrame(accepted.seq, m.tail))
    push?.created(room, from, accepted.seq, accepted.id, m.event.body!, 'chat')
    h.previews?.created(room, accepted.id, m.event.body!)
  }

  /** Sequences and fans out one chat message (from a client or the publish API). */
  const publish: Publish = async (room, from, body, data, dedupe, fromJson, replyTo, files, more) => {
    const m = draft(room, from, body, data, fromJson, replyTo, files, more)
    const accepted = await appendWithFiles(room, m, files, dedupe)
    published(room, from, m, accepted)
    if (more?.poll && !accepted.duplicate) polls.opened(room, accepted.id, more.poll)
    if (replyTo !== undefined && !accepted.duplicate)
      await h.threads.replied(room, replyTo, from, accepted.seq, m.event.ts).catch((err) => {
        metrics.brokerErrors.inc()
        log.warn('a reply is not in the thread lists', { room, msg: replyTo, err })
      })
    return accepted
  }

  /**
   * A connection's dms to one user, one after the other: the first to a new conversation
   * waits for its room and its join, and the next must not overtake it.
   */
  const dmQueues = new Map<string, Promise<void>>()
  function dm(c: Conn, f: FrameOf<'dm'>): Promise<void> {
    const k = `${c.id}\n${f.to}`
    const done = (dmQueues.get(k) ?? Promise.resolve()).then(() => dmNow(c, f))
    const tail = done.catch(() => {})
    dmQueues.set(k, tail)
    void tail.then(() => dmQueues.get(k) === tail && dmQueues.delete(k))
    return done
  }

  /** A dm is a message of the pair's direct room; the sending connection does not get it back. */
  async function dmNow(c: Conn, f: FrameOf<'dm'>) {
    const from = c.identity.user
    if (c.identity.ephemeral)
      throw new FrameError('forbidden', 'dm: an anonymous user has no conversations (connect with ?user= or a token)')
    // Refused when the recipient blocks the sender: never stored, so never in their unread.
    if (f.to !== from.id && (await members.blocking(from.id, [f.to])).size > 0)
      throw new FrameError('forbidden', `to: ${f.to} does not accept direct messages from you`)
    // Checked first: a refused dm opens no conversation.
    const body = h.words.filterText(f.body)
    const files = f.attachments?.length ? await attachments(c, f.attachments) : undefined
    const room = await h.conversations.direct(from, f.to, c.id)
    if (!c.rooms.has(room)) await h.memberJoin(c, room, (await members.get(room, from.id))?.read ?? 0)
    const accepted = await appendDm(room, from, f.to, body, f.data, files, f.id && dedupeKey('dm', from.id, f.id), c.id)
    if (f.id) h.send(c, frames.ack(f.id, accepted.id, accepted.seq, room), 'ack')
  }

  /** A dm appended to its direct room (`except`: the sending connection, which does not get it back). */
  async function appendDm(
    room: string,
    from: User,
    to: string,
    body: string,
    data: unknown,
    files: Attachment[] | undefined,
    key?: string,
    except?: string,
  ): Promise<Accepted> {
    const event: RoomEvent = {
      type: 'dm',
      id: Bun.randomUUIDv7(),
      room,
      from,
      body,
      data,
      ts: isoNow(),
      extra: files ? { to, attachments: files } : { to },
    }
    const tail = eventTail(event)
    const accepted = await appendWithFiles(room, { event, head: DM_HEAD, tail }, files, key, except)
    if (!accepted.duplicate) {
      metrics.published.inc()
      webhooks?.created?.(room, from, DM_HEAD + accepted.seq + tail)
      push?.created(room, from, accepted.seq, accepted.id, body, 'dm')
    }
    members.touch(room, from.id, accepted.seq)
    return accepted
  }

  /**
   * A dm sent with no connection at hand (a scheduled one at its time, an outbox row): the rules
   * and the append of a client's dm; resolves with the pair's direct room besides the append's answer.
   */
  const sendDirect: SendDirect = async (from, to, body, data, dedupe) => {
    if (to !== from.id && (await members.blocking(from.id, [to])).size > 0)
      throw new FrameError('forbidden', `to: ${to} does not accept direct messages from ${from.id}`)
    const room = await h.conversations.direct(from, to, '')
    return { ...(await appendDm(room, from, to, body, data, undefined, dedupe)), room }
  }

  const handlers: Handlers<'chat' | 'dm'> = { chat: answering(chat), dm: answering(dm) }
  return { handlers, chatNow, publish, sendDirect }
}
