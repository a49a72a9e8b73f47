import type { Broker, Page, Replay, Summary } from '../broker/types'
import { UNREAD_CAP, roomTopic, summarize } from '../broker/types'
import { log } from '../log'
import type { Metrics } from '../metrics'
import { eventSeq, frames, isMessageFrame } from '../protocol/server-frames'
import type { MemberState, User } from '../protocol/server-frames'
import type { AuditEntry, Store } from '../store/types'
import type { Role } from '../members/types'
import { NO_JOINS } from './connection'
import type { Conn, Joining } from './connection'
import { FrameError } from '../core/errors'
import type { RoomSettings } from '../core/room-log'

export interface RoomsDeps {
  broker: Broker
  store?: Store
  metrics: Metrics
  send: (c: Conn, frame: string, type: keyof Metrics['framesOut']) => void
  audit: (entry: AuditEntry) => void
  addMember: (topic: string, c: Conn) => void
  removeMember: (topic: string, c: Conn) => void
  /** Tells the room a user's first (`join`) or last (`leave`) connection in it, cluster-wide (hub/presence-events.ts). */
  announce: (room: string, event: 'join' | 'leave', user: User) => void
}

export interface JoinOptions {
  since?: number
  epoch?: string
  id?: string
  /** The user is a member: `joined` carries its marker and unread count. */
  member?: { read: number }
  /** The user's role in the room, for `joined` (answers to a `join` frame only). */
  role?: Role
  /** Told the member's state as `joined` will carry it. */
  onState?: (s: MemberState) => void
}

/** A join whose past is read and whose live stream is buffered: `commit` makes it live. */
export type Prepared = () => void

/** What this node delivers on a topic, held back (see Rooms.hold). */
export type Held = string[] & { release(): void }

/** Live rooms and the past of a room (see createRooms). */
export interface Rooms {
  /** Makes a connection live in a room, replaying what it missed when `since` is given. */
  join(c: Conn, room: string, o?: JoinOptions): Promise<void>
  /** The asynchronous half of a join; call the result to go live (undefined: nothing left to do). */
  prepare(c: Conn, room: string, o: JoinOptions): Promise<Prepared | undefined>
  leave(c: Conn, room: string): void
  /** History before `before`: the broker's log, then the store for older events. */
  page(room: string, before: number | undefined, limit: number): Promise<Page>
  /** Where a room stands for a reader: unread count after `read`, last message. */
  summary(room: string, read: number, user: string): Promise<Summary>
  /** Every frame this node delivers on a topic passes here first (joins in progress buffer it). */
  overhear(topic: string, frame: string): void
  /** Holds back what this node delivers on `topic` until `release()`. */
  hold(topic: string): Held
  /** Resolves when the presence writes under way are done and their events handed to `announce` (a draining node). */
  settled(): Promise<void>
}

/**
 * Live rooms on Bun topics, and the past of a room: joining with recovery (the exact
 * replay/live boundary), leaving, pages of history and summaries (unread, last message) from
 * the broker's log and the store. Who may join is decided before (hub).
 */
export function createRooms(deps: RoomsDeps): Rooms {
  const { broker, store, metrics, send, audit, addMember, removeMember, announce } = deps
  /** Buffers of joins in progress, by topic: frames delivered meanwhile land here too. */
  const recovering = new Map<string, Set<string[]>>()
  /** Presence writes in flight: a draining node waits for them, so that their events are not lost with it. */
  const writes = new Set<Promise<unknown>>()
  function tracked(p: Promise<unknown>) {
    writes.add(p)
    void p.finally(() => writes.delete(p))
  }

  /** Every frame this node delivers on a topic passes here first, for the joins in progress. */
  function overhear(topic: string, frame: string) {
    const buffers = recovering.get(topic)
    if (buffers) for (const b of buffers) b.push(frame)
  }

  // ---- reading the past: the broker's log first, the store for what it no longer holds ----

  async function readSince(room: string, since: number): Promise<Replay> {
    const r = await broker.since(room, since)
    const from = r.from ?? since // past `since` when the epoch started later
    if (r.complete || !store || from >= r.seq) return r
    const firstHeld = r.frames.length ? eventSeq(r.frames[0]!) : r.seq + 1
    const head = await store.range(room, from, firstHeld - 1)
    const frames = head.concat(r.frames)
    return { ...r, frames, complete: frames.length === r.seq - from }
  }

  async function page(room: string, before: number | undefined, limit: number): Promise<Page> {
    const recent = await broker.page(room, before, limit)
    if (!store) return recent
    const first = recent.frames.length ? eventSeq(recent.frames[0]!) : before
    if (recent.frames.length === limit) return { frames: recent.frames, more: recent.more || (first ?? 1) > 1 }
    const older = await store.page(room, first, limit - recent.frames.length)
    return { frames: older.frames.concat(recent.frames), more: older.more }
  }

  /** Where a room stands for a reader: the broker's log first, the store for what it no longer holds. */
  async function summary(room: string, read: number, user: string): Promise<Summary> {
    const s = await broker.summary(room, read, user)
    if (!store || (s.complete && s.last !== undefined) || s.seq === 0) return s
    const [unread, last] = await Promise.all([
      s.complete ? 0 : store.unread(room, read, s.counted, user, UNREAD_CAP - s.unread),
      s.last ?? store.last(room, s.seq + 1),
    ])
    return { ...s, unread: s.unread + unread, complete: true, last }
  }

  /** Unread messages after `read` counted in a complete replay (which reaches back past `read`). */
  function replayUnread(pos: Replay, replay: string[], read: number, user: string): number {
    const newestFirst = replay.map((f) => [eventSeq(f), f] as [number, string]).reverse()
    return summarize(pos, read, user, newestFirst, isMessageFrame).unread
  }

  // ---- rooms ----

  /**
   * Makes `c` live in `room`. With `since` (and a matching `epoch`), first replays what it
   * missed. The boundary is exact: the topic's frames are buffered while the log is read,
   * then the replay, `joined`, the buffered frames newer than the replay and the Bun
   * subscription happen in one synchronous step, so nothing is skipped or sent twice.
   */
  async function join(c: Conn, room: string, o: JoinOptions = {}): Promise<void> {
    ;(await prepare(c, room, o))?.()
  }

  /**
   * The asynchronous half of a join: reads the past while the topic is buffered. Resolves with
   * the synchronous half (or undefined when there is nothing more to do), so that a connection
   * joining many rooms at once sends its `welcome` before any of them goes live.
   */
  async function prepare(c: Conn, room: string, o: JoinOptions): Promise<Prepared | undefined> {
    const { since, epoch, id, member } = o
    const topic = roomTopic(room)
    const pending = c.joining.get(room)
    if (pending) {
      await pending.done
      if (!c.rooms.has(room)) throw new FrameError('unavailable', `room: joining ${room} failed`)
    }
    const boundary = c.rooms.get(room)
    if (boundary !== undefined) {
      await rejoin(c, room, boundary, o).catch((err) => joinFailed(c, room, err))
      return undefined
    }

    let finish!: () => void
    const joining: Joining = { buffer: [], done: new Promise<void>((r) => (finish = r)) }
    if (c.joining === NO_JOINS) c.joining = new Map()
    c.joining.set(room, joining)
    let buffers = recovering.get(topic)
    if (!buffers) recovering.set(topic, (buffers = new Set()))
    buffers.add(joining.buffer)
    let watched = false
    const release = () => {
      buffers.delete(joining.buffer)
      if (buffers.size === 0) recovering.delete(topic)
      if (c.joining.get(room) === joining) c.joining.delete(room)
      finish()
    }
    try {
      watched = true // counted even if it fails: unwatched below either way
      await broker.watch(topic)
      // Asked now, with the reads below (one round trip to Redis, auto-pipelined), awaited after them.
      const settingsRead = settingsOf(room)
      settingsRead.catch(() => {}) // awaited below; a failure before then must not be unhandled
      let replay: string[] = []
      let recovered = false
      let state: MemberState | undefined
      let pos: { seq: number; epoch: string }
      if (since !== undefined) {
        const r = await readSince(room, since)
        pos = r
        if (r.complete && (epoch === undefined || epoch === r.epoch)) {
          replay = r.frames
          recovered = true
        }
        // The count must end where the replay does (`joined`'s seq): what comes later arrives
        // live and the client counts it. A summary read afterwards could hold it already.
        if (member)
          state = {
            read: member.read,
            unread:
              recovered && since <= member.read
                ? replayUnread(r, replay, member.read, c.identity.user.id)
                : (await summary(room, member.read, c.identity.user.id)).unread,
          }
      } else if (member) {
        const s = await summary(room, member.read, c.identity.user.id)
        pos = s
        state = { read: member.read, unread: s.unread }
      } else pos = await broker.position(room)
      if (state) o.onState?.(state)
      const settings = await settingsRead
      await broker.caughtUp(room, pos.seq)
      if (c.closing || c.joining.get(room) !== joining) {
        broker.unwatch(topic)
        release()
        return undefined
      }
      return () => {
        try {
          if (c.closing || c.joining.get(room) !== joining) return void broker.unwatch(topic)
          c.ws.cork(() => {
            for (const f of replay) send(c, f, 'chat')
            send(c, frames.joined(room, pos.seq, pos.epoch, recovered, id, state, o.role, settings), 'joined')
            for (const f of joining.buffer) {
              const seq = eventSeq(f)
              if (seq === -1 || seq > pos.seq) send(c, f, seq === -1 ? 'presence' : 'chat')
            }
            c.ws.subscribe(topic)
          })
          c.rooms.set(room, pos.seq)
          addMember(topic, c)
          audit({ event: 'join', user: c.identity.user.id, conn: c.id, room })
          tracked(
            broker.presence
              .add(room, c.identity.user, c.id)
              .then((first) => first && announce(room, 'join', c.identity.user))
              .catch((err) => log.warn('presence not recorded', { room, conn: c.id, err })),
          )
        } finally {
          release()
        }
      }
    } catch (err) {
      if (watched) broker.unwatch(topic)
      release()
      joinFailed(c, room, err)
    }
  }

  /** A join (first or again) the engine could not answer (Redis saturated or away): `unavailable`, not the server's fault. */
  function joinFailed(c: Conn, room: string, err: unknown): never {
    if (err instanceof FrameError) throw err
    metrics.brokerErrors.inc()
    log.warn('join failed', { room, conn: c.id, err })
    throw new FrameError('unavailable', `room: ${room} could not be joined right now`)
  }

  /** The room's settings as `joined` carries them (v4); none from an engine that keeps none. */
  function settingsOf(room: string): Promise<RoomSettings | undefined> {
    return broker.settings ? broker.settings(room) : Promise.resolve(undefined)
  }

  /** A join for a room the connection is already live in: replay up to where its live stream began. */
  async function rejoin(c: Conn, room: string, boundary: number, o: JoinOptions) {
    const { since, epoch, id, member } = o
    const [state, settings] = await Promise.all([
      member ? summary(room, member.read, c.identity.user.id).then((s) => ({ read: member.read, unread: s.unread })) : undefined,
      settingsOf(room),
    ])
    if (since === undefined) {
      const pos = await broker.position(room)
      return send(c, frames.joined(room, pos.seq, pos.epoch, false, id, state, o.role, settings), 'joined')
    }
    const r = await readSince(room, since)
    const ok = r.complete && (epoch === undefined || epoch === r.epoch)
    const replay = ok ? r.frames.slice(0, Math.max(0, boundary - (r.from ?? since))) : []
    c.ws.cork(() => {
      for (const f of replay) send(c, f, 'chat')
      send(c, frames.joined(room, r.seq, r.epoch, ok, id, state, o.role, settings), 'joined')
    })
  }

  function leave(c: Conn, room: string) {
    c.joining.delete(room) // a join in progress sees this and gives up
    if (!c.rooms.delete(room)) return
    const topic = roomTopic(room)
    if (!c.closing) c.ws.unsubscribe(topic)
    removeMember(topic, c)
    audit({ event: 'leave', user: c.identity.user.id, conn: c.id, room })
    broker.unwatch(topic)
    tracked(
      broker.presence
        .remove(room, c.identity.user.id, c.id)
        .then((last) => last && announce(room, 'leave', c.identity.user))
        .catch((err) => log.warn('presence not removed', { room, conn: c.id, err })),
    )
  }

  /**
   * Holds back what this node delivers on `topic` until the returned function is called with
   * the frames' destination (a connection's user topic until its `welcome` is out).
   */
  function hold(topic: string): Held {
    let buffers = recovering.get(topic)
    if (!buffers) recovering.set(topic, (buffers = new Set()))
    const held = [] as unknown as Held
    buffers.add(held)
    held.release = () => {
      buffers.delete(held)
      if (buffers.size === 0 && recovering.get(topic) === buffers) recovering.delete(topic)
    }
    return held
  }

  async function settled() {
    await Promise.all([...writes])
  }

  return { join, prepare, leave, page, summary, overhear, hold, settled }
}
