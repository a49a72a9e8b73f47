import type { Accepted, Broker } from '../broker/types'
import { Refused, SERVER_ID } from '../broker/message-rules'
import { FrameError } from '../core/errors'
import { pollClosed } from '../core/room-log'
import type { MessageState } from '../core/room-log'
import { POLL_MAX_OPEN_MS } from '../protocol/client-frames'
import type { FrameOf } from '../protocol/client-frames'
import { eventHead, eventTail } from '../protocol/server-frames'
import type { RoomEvent, User } from '../protocol/server-frames'
import type { Store } from '../store/types'
import { log } from '../log'
import type { Append } from './append'

/** A poll as a new chat's frame carries it: no votes yet, open, the sender's `mine` empty (as everyone's). */
export interface PollFrame {
  question: string
  options: { text: string; votes: number }[]
  multiple: boolean
  anonymous: boolean
  closed: boolean
  mine: number[]
  closes_at?: string
}

/** Polls and slow mode (see createPolls). */
export interface Polls {
  /** The `poll` of a new chat's frame from the client's; bad_request for a closes_at not ahead (or past a year). */
  shape(poll: NonNullable<FrameOf<'chat'>['poll']>): PollFrame
  /** A poll was appended through this node: its close is appended at closes_at. */
  opened(room: string, msg: string, poll: PollFrame): void
  /** Replaces `actor`'s vote (`[]` withdraws): a `vote` event, its tallies filled in by the sequencer. */
  vote(room: string, actor: User, msg: string, options: number[]): Promise<Accepted>
  /** A `poll_closed` event: by its author, a moderator (`moderator`) or the server. */
  close(room: string, actor: User, msg: string, moderator: boolean): Promise<Accepted>
  /** A `settings` event (slow mode): owners and moderators (`moderator`) only, checked by the sequencer too. */
  settings(room: string, actor: User, slowModeS: number, moderator: boolean): Promise<Accepted>
  /** Clears the timers of this node (drain, tests). */
  stop(): void
}

const SERVER: User = { id: SERVER_ID, name: 'server' }
/** Polls whose anonymity this node knows, at most (past it the map starts over). */
const KNOWN_POLLS_MAX = 10_000
/** setTimeout's longest delay; a later close re-arms its timer. */
const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * Polls (chats carrying `poll`) and slow mode: votes, closes and settings are events of the room's
 * log, each checked and applied by its sequencer (broker/message-rules.ts `project`, append.lua) in
 * the step that appends it, so tallies hold with voters on every node at once. A poll's close at
 * `closes_at` is a timer of the node that appended it; the rule refuses a second close, so timers of
 * several nodes (or a restart's) never close twice, and a vote past `closes_at` is refused
 * (`closed`) even before the close is appended (it then appends it).
 */
export function createPolls(deps: { broker: Broker; append: Append; store?: Pick<Store, 'messages'> }): Polls {
  const { broker, append, store } = deps
  const timers = new Map<string, ReturnType<typeof setTimeout>>()
  /**
   * Whether a poll is anonymous, by room and message: it never changes, so a vote after the
   * first on this node needs no read before its append (bench/events.ts: the read cost a vote
   * about as much as the append). The sequencer still checks it.
   */
  const anonymity = new Map<string, boolean>()

  function shape(poll: NonNullable<FrameOf<'chat'>['poll']>): PollFrame {
    let closes_at: string | undefined
    if (poll.closes_at !== undefined) {
      const at = Date.parse(poll.closes_at)
      if (at <= Date.now()) throw new FrameError('bad_request', 'poll.closes_at: must be in the future')
      if (at > Date.now() + POLL_MAX_OPEN_MS) throw new FrameError('bad_request', 'poll.closes_at: must be at most a year ahead')
      closes_at = new Date(at).toISOString()
    }
    return {
      question: poll.question,
      options: poll.options.map((text) => ({ text, votes: 0 })),
      multiple: poll.multiple === true,
      anonymous: poll.anonymous === true,
      closed: false,
      mine: [],
      ...(closes_at ? { closes_at } : {}),
    }
  }

  function opened(room: string, msg: string, poll: PollFrame) {
    if (poll.closes_at) arm(room, msg, Date.parse(poll.closes_at))
  }

  function arm(room: string, msg: string, at: number) {
    const k = `${room}\n${msg}`
    clearTimeout(timers.get(k))
    const wait = at - Date.now()
    const t = setTimeout(
      () => {
        timers.delete(k)
        if (wait > MAX_TIMER_MS) return arm(room, msg, at)
        void closeBy(room, msg)
      },
      Math.max(0, Math.min(wait, MAX_TIMER_MS)),
    )
    t.unref?.()
    timers.set(k, t)
  }

  /** The server closes a poll whose time is up; a close another node (or an author) appended first is refused, and that is fine. */
  async function closeBy(room: string, msg: string) {
    try {
      await close(room, SERVER, msg, true)
    } catch (err) {
      if (err instanceof FrameError && ['closed', 'not_found'].includes(err.code)) return
      log.warn('poll not closed at its closes_at', { room, msg, err })
    }
  }

  /** The message's state as the engine (else the store) holds it: not_found, or bad_request when it has no poll. */
  async function pollOf(room: string, msg: string): Promise<NonNullable<MessageState['poll']>> {
    if (!broker.messages) throw new FrameError('unavailable', `vote: this engine (${broker.kind}) keeps no message state`)
    let m = (await broker.messages(room, [msg])).get(msg)
    if (!m && store) m = (await store.messages(room, [msg])).get(msg)
    if (!m || m.deleted) throw new FrameError('not_found', `msg: no message ${msg} in ${room}`)
    if (!m.poll) throw new FrameError('bad_request', `msg: ${msg} is not a poll`)
    return m.poll
  }

  function draft(type: 'vote' | 'poll_closed' | 'settings', room: string, actor: User, extra: Record<string, unknown>, moderator = false) {
    const event: RoomEvent = { type, id: Bun.randomUUIDv7(), room, from: actor, ts: new Date().toISOString(), extra }
    return { event, head: eventHead(type), tail: eventTail(event), moderator }
  }

  async function vote(room: string, actor: User, msg: string, options: number[]) {
    // Whether the frame names the voter is the poll's (it never changes); the sequencer checks it again.
    const k = `${room}\n${msg}`
    let anonymous = anonymity.get(k)
    if (anonymous === undefined) {
      anonymous = (await pollOf(room, msg)).anonymous
      if (anonymity.size >= KNOWN_POLLS_MAX) anonymity.clear()
      anonymity.set(k, anonymous)
    }
    const sorted = [...options].sort((a, b) => a - b)
    const extra = { msg, options: sorted, tallies: null, ...(anonymous ? { anonymous: true } : {}) }
    try {
      return await append(room, draft('vote', room, actor, extra))
    } catch (err) {
      // Past its closes_at and its close not appended (the node that armed it went away): appended now.
      if (err instanceof FrameError && err.code === 'closed') void closeIfDue(room, msg)
      throw err
    }
  }

  /** A poll past its closes_at whose close is not appended: the server appends it. */
  async function closeIfDue(room: string, msg: string) {
    const poll = await pollOf(room, msg).catch(() => undefined)
    if (poll && !poll.closed && pollClosed(poll, Date.now())) await closeBy(room, msg)
  }

  const close = (room: string, actor: User, msg: string, moderator: boolean) =>
    append(room, draft('poll_closed', room, actor, { msg, tallies: null }, moderator))

  const settings = (room: string, actor: User, slowModeS: number, moderator: boolean) => {
    if (!broker.settings) throw new FrameError('unavailable', `settings: this engine (${broker.kind}) keeps no room settings`)
    return append(room, draft('settings', room, actor, { slow_mode_s: slowModeS }, moderator))
  }

  function stop() {
    for (const t of timers.values()) clearTimeout(t)
    timers.clear()
  }

  return { shape, opened, vote, close, settings, stop }
}

/** True for a refusal of slow mode (the engine's or the hub's error): an owner's or moderator's chat is tried again as theirs. */
export const slowed = (err: unknown) => (err instanceof Refused || err instanceof FrameError) && err.code === 'slow_mode'
