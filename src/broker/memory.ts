import type { Accepted, Broker, Deliver, EventDraft, Page, Position, Replay } from './types'
import { DEDUPE_WINDOW_MS, freshOrigin, roomTopic, summarizeShared } from './types'
import type { Tallies } from './types'
import { topicRoom } from '../core/topic'
import type { RoomOrigin } from './types'
import { Unavailable } from './types'
import type { Store } from '../store/types'
import { isMessageFrame } from '../protocol/server-frames'
import { MessageStates, Refused, byPinTime, neededMessage, project } from './message-rules'
import { withTallies } from '../protocol/server-frames'
import type { RoomRules } from './message-rules'
import { memoryLedger } from '../cluster/ledger'
import type { Ledger } from '../cluster/ledger'
import { ledgerPresence } from './presence'
import { memoryWindows } from './presence-windows'
import type { Caps, LoadMessages, MessageState, Pins, Sanctions } from './message-rules'

const MAX_DEDUPE_KEYS = 200_000

/**
 * The last seq in the log: what readers see. A seq taken but not yet committed by the store is
 * nobody's to read (its frame is not in the log yet), so positions, replays and summaries stop here.
 */
const top = (r: RoomLog) => r.first + r.frames.length - 1

interface RoomLog {
  /** roomTopic(room), made once: the same string each delivery, its hash computed once for every map it is looked up in. */
  topic: string
  /** The last seq taken. With a store it may run ahead of the log while commits are awaited: see `top`. */
  seq: number
  epoch: string
  /** frames[i] has seq `first + i`. */
  first: number
  frames: string[]
  /** Connections of this node live in the room (watch/unwatch): a watched room is never evicted. */
  watchers: number
  /** Date.now() of the last append (or of opening). */
  active: number
  /** The state of the room's recent messages (message-rules.ts): the newest 2 × HISTORY_LIMIT at least. */
  msgs: MessageStates
  standing: Sanctions
  /** The room's pinned messages (from the store's origin after a restart). */
  pins: Pins
  /** Its settings and slow mode's last chats (from the store's origin after a restart). */
  rules: RoomRules
  /** Readers' summaries shared while the room stands still (read-model.ts). */
  tallies?: Tallies
}

export interface MemoryBrokerOptions {
  historyLimit: number
  origin?: RoomOrigin
  store?: Pick<Store, 'save' | 'accepting'>
  /** A room nobody watches is forgotten once idle this long (its log, seq and epoch). */
  historyTtlMs?: number
  /** At most this many rooms are kept; past it, the least recently active unwatched room goes. */
  maxRooms?: number
  onEvict?: (room: string) => void
  reactionCaps?: Caps
  /** Message state beyond what this process holds (after a restart): PostgreSQL. */
  loadMessages?: LoadMessages
  /** The node's ledger (cluster/ledger.ts), where presence is a book; made here when absent. */
  ledger?: Ledger
}

/**
 * One node, everything in this process. The default engine. With a store, this node is the
 * sequencer of record: a message is delivered (and acknowledged) only once it is committed,
 * so a seq that anyone saw always survives a restart.
 */
export function memoryBroker(opts: MemoryBrokerOptions): Broker {
  const origin = opts.origin ?? freshOrigin
  const ttl = opts.historyTtlMs ?? Infinity
  const maxRooms = opts.maxRooms ?? Infinity
  const caps = opts.reactionCaps ?? { perMessage: 50, perUser: 10 }
  /** In order of activity, least recent first (an append moves its room to the end). */
  const rooms = new Map<string, RoomLog>()
  let newest: RoomLog | undefined
  /** Watches of rooms not opened yet: the count waits here. */
  const early = new Map<string, number>()
  /** Rooms whose origin is being read: their first appends wait for it, in order. */
  const opening = new Map<string, Promise<RoomLog>>()
  const dedupe = new Map<string, { at: number; value: unknown }>()
  /** Appends with a retry key that are not answered yet, by scoped key. */
  const inflight = new Map<string, Promise<Accepted>>()
  /** A retry key belongs to its room (as in Redis, where it lives in the room's slot). */
  const scoped = (room: string, key: string) => `${room}\n${key}`
  let deliver: Deliver = () => {}

  function log(room: string): RoomLog | Promise<RoomLog> {
    const r = rooms.get(room)
    if (r) return r
    let p = opening.get(room)
    if (!p) {
      p = origin(room).then((o) => {
        const fresh: RoomLog = {
          topic: roomTopic(room),
          seq: o.seq,
          epoch: o.epoch,
          first: o.seq + 1,
          frames: [],
          watchers: early.get(room) ?? 0,
          active: Date.now(),
          msgs: new MessageStates(opts.historyLimit * 2),
          standing: new Map(),
          pins: new Map((o.pins ?? []).map((p) => [p.msg, p])),
          rules: { settings: { slow_mode_s: o.settings?.slow_mode_s ?? 0 }, lastChat: new Map() },
        }
        early.delete(room)
        rooms.set(room, fresh)
        opening.delete(room)
        if (rooms.size > maxRooms) evictOldest()
        return fresh
      })
      p.catch(() => opening.delete(room))
      opening.set(room, p)
    }
    return p
  }
  /** Retry keys live DEDUPE_WINDOW_MS; past MAX_DEDUPE_KEYS the oldest go first (memory stays bounded). */
  const remember = (key: string, value: unknown) => {
    dedupe.set(key, { at: Date.now(), value })
    if (dedupe.size > MAX_DEDUPE_KEYS) dedupe.delete(dedupe.keys().next().value!)
  }
  const remembered = (key: string) => {
    const hit = dedupe.get(key)
    return hit && hit.at > Date.now() - DEDUPE_WINDOW_MS ? hit.value : undefined
  }

  function evict(room: string) {
    const r = rooms.get(room)
    rooms.delete(room)
    if (r === newest) newest = undefined
    opts.onEvict?.(room)
  }
  /** Past MAX_ROOMS: the least recently active room that no connection of this node is in. */
  function evictOldest() {
    for (const [room, r] of rooms) {
      if (r.watchers > 0) continue
      evict(room)
      return
    }
  }

  /**
   * The change checked and applied to the room's message state, and its seq taken, in one
   * synchronous step (no change races another); an answer instead when there is nothing to publish.
   */
  function sequence(r: RoomLog, draft: EventDraft): number | Accepted {
    const verdict = project(r.msgs, draft.event, r.seq + 1, caps, draft.moderator, r.standing, r.pins, r.rules)
    if (!verdict.ok) throw new Refused(verdict.code, verdict.message, verdict.retryAfter)
    if (verdict.noop) return { id: draft.event.id, seq: top(r), duplicate: false, noop: true }
    if (verdict.tallies) {
      // A vote's or close's tallies are known only now: into its frame and its stored event.
      draft.tail = withTallies(draft.tail, verdict.tallies)
      draft.event.extra = { ...draft.event.extra, tallies: verdict.tallies }
    }
    return ++r.seq
  }

  /** The half of an append after its seq (and the store's commit): log, deliver, remember. */
  function publish(
    room: string,
    r: RoomLog,
    seq: number,
    draft: EventDraft,
    key: string | undefined,
    except: string | undefined,
  ): Accepted {
    const frame = draft.head + seq + draft.tail
    r.frames.push(frame)
    r.active = Date.now()
    if (r !== newest) {
      // Most recently active last: the eviction order of MAX_ROOMS.
      rooms.delete(room)
      rooms.set(room, r)
      newest = r
    }
    // Trim in chunks so that appends stay O(1) amortised.
    if (r.frames.length >= opts.historyLimit * 2 || r.frames.length > opts.historyLimit + 1024) {
      const drop = r.frames.length - opts.historyLimit
      r.frames.splice(0, drop)
      r.first += drop
    }
    deliver(r.topic, frame, except)
    const accepted = { id: draft.event.id, seq, duplicate: false }
    if (key !== undefined) remember(key, accepted)
    return accepted
  }

  /** One append whose retry key (scoped to the room) is `k`; the caller has checked it is new. */
  async function appendOnce(room: string, draft: EventDraft, k: string | undefined, except: string | undefined): Promise<Accepted> {
    const l = log(room)
    // Synchronous when the room is open, so that appends keep the order they were made in.
    const r = l instanceof Promise ? await l : l
    if (opts.store && !opts.store.accepting()) throw new Unavailable('the store is not keeping up: message refused')
    const needed = neededMessage(draft.event)
    if (needed !== undefined && opts.loadMessages && !r.msgs.has(needed)) {
      const loaded = (await opts.loadMessages(room, [needed])).get(needed)
      if (loaded && !r.msgs.has(needed)) r.msgs.set(needed, loaded)
    }
    const s = sequence(r, draft)
    if (typeof s !== 'number') return s
    // Commits resolve in seq order, so deliveries keep it too.
    if (opts.store) await opts.store.save([{ ...draft.event, seq: s }])
    return publish(room, r, s, draft, k, except)
  }

  const sweep = setInterval(
    () => {
      const now = Date.now()
      for (const [key, entry] of dedupe) if (entry.at < now - DEDUPE_WINDOW_MS) dedupe.delete(key)
      if (Number.isFinite(ttl)) for (const [room, r] of rooms) if (r.watchers === 0 && now - r.active > ttl) evict(room)
    },
    Math.min(10_000, Number.isFinite(ttl) ? Math.max(250, ttl / 4) : 10_000),
  )
  sweep.unref()

  return {
    kind: 'memory',
    async start(d) {
      deliver = d
    },
    append(room, draft, key, except): Promise<Accepted> {
      if (key === undefined) return appendOnce(room, draft, undefined, except)
      const k = scoped(room, key)
      const prior = remembered(k) as Accepted | undefined
      if (prior) return Promise.resolve({ ...prior, duplicate: true })
      // A copy that arrives while the first is still waiting (for the room's origin, for the
      // store's commit) shares its outcome: it must not be sequenced a second time.
      const pending = inflight.get(k)
      if (pending) return pending.then((a) => ({ ...a, duplicate: true }))
      const p = appendOnce(room, draft, k, except)
      inflight.set(k, p)
      const settled = () => inflight.delete(k)
      p.then(settled, settled)
      return p
    },
    appendNow(room, draft, key, except) {
      if (opts.store) return undefined
      const r = rooms.get(room)
      if (!r) return undefined
      const k = key === undefined ? undefined : scoped(room, key)
      if (k !== undefined) {
        const prior = remembered(k) as Accepted | undefined
        if (prior) return { ...prior, duplicate: true }
        if (inflight.has(k)) return undefined
      }
      const needed = neededMessage(draft.event)
      if (needed !== undefined && opts.loadMessages && !r.msgs.has(needed)) return undefined
      const s = sequence(r, draft)
      if (typeof s !== 'number') return s
      return publish(room, r, s, draft, k, except)
    },
    async relay(topic, frame, except) {
      deliver(topic, frame, except)
    },
    async watch(topic) {
      const room = topicRoom(topic)
      if (room === undefined) return
      const r = rooms.get(room)
      if (r) r.watchers++
      else early.set(room, (early.get(room) ?? 0) + 1)
    },
    caughtUp: async () => {},
    unwatch(topic) {
      const room = topicRoom(topic)
      if (room === undefined) return
      const r = rooms.get(room)
      if (r) r.watchers = Math.max(0, r.watchers - 1)
      else {
        const n = (early.get(room) ?? 0) - 1
        if (n > 0) early.set(room, n)
        else early.delete(room)
      }
    },
    async position(room): Promise<Position> {
      const r = await log(room)
      return { seq: top(r), epoch: r.epoch }
    },
    async since(room, since): Promise<Replay> {
      const r = await log(room)
      const epoch = r.epoch
      const seq = top(r)
      const kept = r.first + r.frames.length - opts.historyLimit // first seq within the promised window
      const oldest = Math.max(r.first, kept)
      if (since > seq) return { seq, epoch, frames: [], complete: false }
      return { seq, epoch, frames: r.frames.slice(Math.max(since + 1, oldest) - r.first), complete: since + 1 >= oldest }
    },
    async page(room, before, limit): Promise<Page> {
      const r = await log(room)
      const oldest = Math.max(r.first, r.first + r.frames.length - opts.historyLimit)
      const end = Math.min(before === undefined ? top(r) + 1 : before, top(r) + 1) // exclusive
      const start = Math.max(oldest, end - limit)
      if (end <= start) return { frames: [], more: false }
      return { frames: r.frames.slice(start - r.first, end - r.first), more: start > oldest }
    },
    async summary(room, read, user) {
      const r = await log(room)
      const kept = Math.max(r.first, r.first + r.frames.length - opts.historyLimit)
      const seq = top(r)
      function* newestFirst(): Generator<[number, string]> {
        for (let s = seq; s >= kept; s--) yield [s, r.frames[s - r.first]!]
      }
      return summarizeShared(r, { seq, epoch: r.epoch }, kept, read, user, newestFirst, isMessageFrame)
    },
    async messages(room, ids) {
      const r = await log(room)
      const out = new Map<string, MessageState>()
      for (const id of ids) {
        const m = r.msgs.get(id)
        if (m) out.set(id, m)
      }
      return out
    },
    async pins(room) {
      return [...(await log(room)).pins.values()].sort(byPinTime)
    },
    async settings(room) {
      return { ...(await log(room)).rules.settings }
    },
    presence: ledgerPresence((opts.ledger ?? memoryLedger()).book('presence')),
    windows: memoryWindows(),
    problem: () => undefined,
    async close() {
      clearInterval(sweep)
    },
  }
}
