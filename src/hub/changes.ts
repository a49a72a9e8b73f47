import type { Accepted, Broker, Page } from '../broker/types'
import { current, messageIdOf } from '../broker/message-rules'
import type { Append } from './append'
import { eventFrame, eventHead, eventTail, isMessageFrame } from '../protocol/server-frames'
import type { EventType, RoomEvent, User } from '../protocol/server-frames'
import { FrameError } from '../core/errors'
import type { Store } from '../store/types'
import { RawJson } from '../webhooks/events'
import { log } from '../log'
import type { EventInput } from '../webhooks/events'

/** The webhook event of a change (the event's own frame is its `message`). */
const hookType = (type: EventType, op: unknown) =>
  type === 'edit' ? 'message.edited' : type === 'delete' ? 'message.deleted' : op === 'remove' ? 'reaction.removed' : 'reaction.added'

/** Edits, deletes and reactions (see createChanges). */
export interface Changes {
  edit(room: string, actor: User, msg: string, body: string, data?: unknown, moderator?: boolean): Promise<Accepted>
  remove(room: string, actor: User, msg: string, moderator: boolean): Promise<Accepted>
  react(room: string, actor: User, msg: string, reaction: string, op: 'add' | 'remove'): Promise<Accepted>
  /** A page of history with each message shown in its current state, for `viewer`. */
  present(room: string, p: Page, viewer: string): Promise<Page>
  /** The replies to `parent`, `limit` at most with seq < before, oldest first, read through `page`. */
  thread(
    page: (before: number | undefined, limit: number) => Promise<Page>,
    parent: string,
    before: number | undefined,
    limit: number,
  ): Promise<Page>
}

/**
 * Edits, deletes and reactions: each is an event of the room's log, checked against the
 * message's state by the sequencer (the broker) in the same step as its append.
 */
export function createChanges(deps: {
  broker: Broker
  append: Append
  store?: Pick<Store, 'messages'>
  emit?: (e: EventInput) => void
  /** A message's delete was accepted by the room's log: what it carried (attachments) goes. */
  deleted?: (room: string, msg: string) => Promise<unknown>
}): Changes {
  const { broker, append, store, emit, deleted } = deps

  /** Appends a change; refused changes become the frame error they name. */
  async function change(
    room: string,
    type: EventType,
    actor: User,
    fields: { extra: Record<string, unknown>; body?: string; data?: unknown },
    moderator = false,
  ) {
    if (!broker.messages) throw new FrameError('unavailable', `${type}: this engine (${broker.kind}) does not keep message state yet`)
    const event: RoomEvent = { type, id: Bun.randomUUIDv7(), room, from: actor, ts: new Date().toISOString(), ...fields }
    const tail = eventTail(event)
    const accepted = await append(room, { event, head: eventHead(type), tail, moderator })
    if (emit && !accepted.duplicate && !accepted.noop)
      emit({
        type: hookType(type, fields.extra.op),
        room,
        user: actor,
        msg: fields.extra.msg,
        ...(type === 'react' ? { reaction: fields.extra.reaction } : {}),
        message: new RawJson(eventFrame(type, accepted.seq, tail)),
      })
    // After the log accepted it: a refused delete leaves the files alone.
    if (type === 'delete' && deleted && !accepted.duplicate && !accepted.noop)
      await deleted(room, fields.extra.msg as string).catch((err) =>
        log.warn('attachments of a deleted message not removed', { room, msg: fields.extra.msg, err }),
      )
    return accepted
  }

  const edit = (room: string, actor: User, msg: string, body: string, data?: unknown, moderator = false) =>
    change(room, 'edit', actor, { extra: { msg }, body, data }, moderator)
  const remove = (room: string, actor: User, msg: string, moderator: boolean) =>
    change(room, 'delete', actor, { extra: { msg } }, moderator)
  const react = (room: string, actor: User, msg: string, reaction: string, op: 'add' | 'remove') =>
    change(room, 'react', actor, { extra: { msg, reaction, op } })

  /** A page of history with each message shown in its current state, for `viewer`. */
  async function present(room: string, p: Page, viewer: string): Promise<Page> {
    if (!broker.messages) return p
    const ids = p.frames
      .filter(isMessageFrame)
      .map(messageIdOf)
      .filter((x): x is string => !!x)
    if (!ids.length) return p
    const states = await broker.messages(room, ids)
    // What the broker no longer holds (older pages, a restarted node), the store does.
    const missing = ids.filter((id) => !states.has(id))
    if (store && missing.length) for (const [id, m] of await store.messages(room, missing)) states.set(id, m)
    return { ...p, frames: p.frames.map((f) => (isMessageFrame(f) ? current(f, states.get(messageIdOf(f)!), viewer) : f)) }
  }

  /**
   * The replies to `parent`, `limit` at most with seq < before, oldest first: read back through
   * the room's pages (bounded by what the log and store hold).
   */
  async function thread(
    page: (before: number | undefined, limit: number) => Promise<Page>,
    parent: string,
    before: number | undefined,
    limit: number,
  ): Promise<Page> {
    const needle = `,"reply_to":${JSON.stringify(parent)},`
    const found: string[] = []
    let cursor = before
    for (let rounds = 0; rounds < 100; rounds++) {
      const p = await page(cursor, 100)
      for (let i = p.frames.length - 1; i >= 0; i--) {
        const f = p.frames[i]!
        if (isMessageFrame(f) && f.includes(needle)) found.push(f)
        if (found.length > limit) return { frames: found.slice(0, limit).reverse(), more: true }
      }
      if (!p.more || !p.frames.length) break
      cursor = JSON.parse(p.frames[0]!).seq
    }
    return { frames: found.slice(0, limit).reverse(), more: found.length > limit }
  }

  return { edit, remove, react, present, thread }
}
