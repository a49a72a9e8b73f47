import { CHAT_HEAD, DM_HEAD, eventHead, eventSeq, frames, isMessageFrame } from '../protocol/server-frames'
import type Redis from 'ioredis'
import { log } from '../log'
import type { Store } from '../store/types'
import { archiveRepair } from './redis-archive'
import type { RedisConnections } from './redis-connect'
import type { Cluster } from '../cluster/heartbeat'
import { redisLedger } from '../cluster/ledger'
import type { Ledger } from '../cluster/ledger'
import { ledgerPresence } from './presence'
import { redisWindows } from './redis-presence-windows'
import type { Presence, PresenceEdge } from './presence'
import { RESET_HEAD, appendScript, hotScripts, redisKeys, withScripts } from './redis-scripts'
import type { AppendResult } from './redis-scripts'
import { appendBatches } from './append-batch'
import { DEFAULT_PINS_PER_ROOM, Refused, byPinTime, neededMessage } from './message-rules'
import type { Caps, LoadMessages, MessageState, Pin, PollState, ThreadSummary } from './message-rules'
import type { Accepted, Broker, Deliver, EventDraft, Page, Position, Replay, RoomOrigin } from './types'
import { DEDUPE_WINDOW_MS, UNREAD_CAP, freshEpoch, freshOrigin, fromNeedle, roomTopic, summarizeShared } from './types'
import type { Tallies } from './types'
import { isRoomTopic, topicRoom } from '../core/topic'

/** An event's own arguments of append.lua (head, tail, msgId, except, command, author JSON, retry field). */
type AppendArgs = [string, string, string, string, string, string, string]

export interface RedisBrokerOptions {
  /** The node's connections (made once, in main). */
  redis: RedisConnections
  /** A Redis Cluster (keys per room in one slot, sharded pub/sub), not one Redis. */
  cluster?: boolean
  /** The cluster's heartbeat: a dead node's presence entries are reaped when it sees one. */
  nodes: Cluster
  /** The node's ledger (cluster/ledger.ts), where presence is a book; made here when absent (tests). */
  ledger?: Ledger
  prefix: string
  nodeId: string
  historyLimit: number
  reactionCaps?: Caps
  /** Message state the room's hash no longer holds (trimmed, or Redis restarted): PostgreSQL. */
  loadMessages?: LoadMessages
  /** A room's state and stream expire once idle this long (0 = never). */
  historyTtlMs?: number
  origin?: RoomOrigin
  /**
   * With persistence: messages are archived after they are acknowledged, and a repair loop
   * copies into the store whatever the room streams hold but the store lacks (a node that
   * died before writing, a backlog that overflowed during an outage). A gap repair reads what
   * the room's stream no longer holds from it.
   */
  store?: Pick<Store, 'save' | 'stored' | 'accepting' | 'range'>
  onError?: (err: unknown) => void
}

/** A poll's state as append.lua keeps it in the message's `p` (see its header). */
interface LuaPoll {
  n: number
  m: boolean
  an: boolean
  z?: number
  c?: boolean
  t: number[]
  v: Record<string, number[]> | []
}

const pollToLua = (p: PollState): LuaPoll => ({
  n: p.options,
  m: p.multiple,
  an: p.anonymous,
  z: p.closes_at,
  c: p.closed || undefined,
  t: p.tallies,
  v: { ...p.votes },
})

function pollFromLua(p: LuaPoll): PollState {
  const votes: Record<string, number[]> = Object.create(null)
  // cjson writes an empty table as `{}`, but one it read as `[]` back as `[]`.
  if (!Array.isArray(p.v)) for (const u in p.v) votes[u] = p.v[u]!
  return {
    options: p.n,
    multiple: p.m === true,
    anonymous: p.an === true,
    ...(typeof p.z === 'number' ? { closes_at: p.z } : {}),
    ...(p.c ? { closed: true } : {}),
    tallies: p.t,
    votes,
  }
}

/** A room's position, and the seq its epoch started from when the state knows it (`fs`). */
interface Start extends Position {
  start?: number
}

/** Per watched room: the last seq handed to the hub, so that a gap is seen and repaired. */
interface RoomStream {
  last: number
  /** The room's epoch when last seen; a different one means its sequence restarted. */
  epoch?: string
  repairing: boolean
  /** Set while the channel is being subscribed again after a reconnect. */
  held: boolean
  /** Payloads (see `split`) held back while a gap is repaired or the channel resubscribed. */
  pending: string[]
  waiters: { seq: number; resolve: () => void }[]
  /**
   * The frames this node handed over last, in order: seqs `tailFirst` … `last`, no gap. A resume
   * or an unread count that they cover is answered here, not by Redis: in a reconnect storm
   * every client of a room asks for the same few hundred recent events.
   */
  tail: string[]
  tailFirst: number
  tailBytes: number
  /**
   * The most local connections the room has had while watched: the tail's size follows it, not
   * the count now, since a storm closes nearly everyone just before they all ask for the tail.
   */
  peak: number
  /** The seq the epoch started from, when Redis said (`fs`): no event of the epoch is at or below it. */
  fs?: number
  /**
   * The seq of the oldest entry Redis's stream of the room held when last asked (0: not known).
   * The stream is only ever trimmed from the front within an epoch, so a resume from before it
   * cannot be replayed from Redis: without a store it is answered "not recovered" here.
   */
  logFirst: number
  /** The read of frames before the tail in flight (see `head`): resumes it covers wait for it. */
  headRead?: { since: number; done: Promise<unknown> }
  /** Readers' summaries shared while the tail stands still (read-model.ts). */
  tallies?: Tallies
  /**
   * The room's settings as Redis last said, while no `settings` event was handed over since:
   * every join of a watched room reads them, and only such an event (which this node hands
   * over, in order) changes them. `settingsGen` counts those events, so that a read that one
   * passed while it was in flight is not kept.
   */
  settings?: { slow_mode_s: number }
  settingsGen: number
}

const newStream = (): RoomStream => ({
  last: -1,
  repairing: false,
  held: false,
  pending: [],
  waiters: [],
  tail: [],
  tailFirst: 0,
  tailBytes: 0,
  peak: 1,
  logFirst: 0,
  settingsGen: 0,
})

/**
 * A room's tail keeps TAIL_FRAMES_PER_WATCHER frames and TAIL_BYTES_PER_WATCHER bytes (UTF-16
 * units) per local connection the room has had at most, up to `maxFrames` (tailFrames) and
 * TAIL_BYTES_MAX: a big room (where a storm asks the same thing thousands of times) keeps the
 * most, and a node of many small rooms stays small. `maxFrames` passes both UNREAD_CAP (an unread
 * count that reaches the cap is still answered here) and HISTORY_LIMIT with the slack of Redis's
 * approximate trim: a big room's full tail then reaches back as far as the room's stream does,
 * so a resume from before it is known not to be recoverable from Redis without asking it.
 */
const TAIL_FRAMES_PER_WATCHER = 8
const TAIL_BYTES_PER_WATCHER = 1024
const TAIL_BYTES_MIN = 64 * 1024
const TAIL_BYTES_MAX = 8 * 1024 * 1024
/** `XADD MAXLEN ~` trims whole stream nodes (100 entries by default): the stream may hold this many more. */
const TRIM_SLACK = 128
const TAIL_FRAMES_MAX = 16_384

/** The most frames a room's tail keeps, for a HISTORY_LIMIT. */
export const tailFrames = (historyLimit: number) => Math.min(TAIL_FRAMES_MAX, Math.max(UNREAD_CAP + 24, historyLimit + TRIM_SLACK))

/** Forgets the tail: it starts again after `last`. What was known of the epoch's stream goes with it. */
function clearTail(stream: RoomStream) {
  stream.tail = []
  stream.tailFirst = stream.last + 1
  stream.tailBytes = 0
  stream.fs = undefined
  stream.logFirst = 0
  forgetSettings(stream)
}

/** The settings kept for the room are stale, and so is any read of them in flight. */
function forgetSettings(stream: RoomStream) {
  stream.settings = undefined
  stream.settingsGen++
}

/** `frames` are exactly the events `from + 1 … to`, in order (seqs are contiguous in a room's log). */
const covers = (frames: string[], from: number, to: number) =>
  from >= to || (frames.length === to - from && eventSeq(frames[0]!) === from + 1)

/** [frames, bytes] the room's tail keeps now. */
function tailCaps(stream: RoomStream, maxFrames: number): [number, number] {
  return [
    Math.min(maxFrames, TAIL_FRAMES_PER_WATCHER * stream.peak),
    Math.min(TAIL_BYTES_MAX, Math.max(TAIL_BYTES_MIN, TAIL_BYTES_PER_WATCHER * stream.peak)),
  ]
}

function keepInTail(stream: RoomStream, frame: string, seq: number, watchers: number, maxFrames: number) {
  if (stream.tail.length === 0 || seq !== stream.tailFirst + stream.tail.length) {
    stream.tail = []
    stream.tailFirst = seq
    stream.tailBytes = 0
  }
  stream.tail.push(frame)
  stream.tailBytes += frame.length
  if (watchers > stream.peak) stream.peak = watchers
  const [frames, bytes] = tailCaps(stream, maxFrames)
  // Let a quarter past the size before trimming back to it (back to 3/4 of the bytes): amortised
  // O(1) a frame, and a full tail always keeps its size, which `logFirst` answers count on.
  if (stream.tail.length <= frames + (frames >> 2) && stream.tailBytes <= bytes) return
  let drop = Math.max(0, stream.tail.length - frames)
  let left = stream.tailBytes
  for (let i = 0; i < drop; i++) left -= stream.tail[i]!.length
  if (left > bytes) while (drop < stream.tail.length - 1 && left > (bytes * 3) >> 2) left -= stream.tail[drop++]!.length
  stream.tail = stream.tail.slice(drop)
  stream.tailFirst += drop
  stream.tailBytes = left
}

/** Frames read from before the tail, ending where it starts: kept in front of it as far as its size allows. */
function keepBeforeTail(stream: RoomStream, head: string[], maxFrames: number) {
  const [frames, bytes] = tailCaps(stream, maxFrames)
  let n = 0
  let b = stream.tailBytes
  while (n < head.length && stream.tail.length + n < frames && b + head[head.length - 1 - n]!.length <= bytes)
    b += head[head.length - 1 - n++]!.length
  if (n === 0) return
  stream.tail = head.slice(head.length - n).concat(stream.tail)
  stream.tailFirst -= n
  stream.tailBytes = b
}

/**
 * The tail answers for the room once its epoch is known. A repair in progress, frames held back
 * or pending change nothing: the tail is still every frame up to `last`, and whatever follows
 * is handed over later, in order (that is what the repair is for), so it reaches the joiner
 * through the topic as any later frame does. Under load a join's `caughtUp` often starts a
 * repair (a frame late by 250 ms); sending every resume to Redis meanwhile made a storm feed
 * itself: Redis at 9.4 s of CPU and joins timing out, against ~1 s.
 */
function tailAnswers(stream: RoomStream | undefined): stream is RoomStream & { epoch: string } {
  return stream !== undefined && stream.epoch !== undefined && stream.last >= 0
}

/** A payload is a frame, or `<conn>\n<frame>` when that connection must not receive it. */
function split(payload: string): [frame: string, except?: string] {
  if (payload.charCodeAt(0) === 123 /* { */) return [payload]
  const nl = payload.indexOf('\n')
  return [payload.slice(nl + 1), payload.slice(0, nl)]
}

const SETTINGS_HEAD = eventHead('settings')

/** Log entries a summary may walk (unread counts and the last message of a room). */
const SUMMARY_BUDGET = 2 * UNREAD_CAP

/** See init(): how far past the store's last seq a rebuilt room's new epoch starts. */
export const REBUILT_SEQ_GAP = 1000

const REPAIR_EVERY_MS = 1_000
/** A gap repair reads at most this many events from the store (the rest stays a gap, logged). */
const REPAIR_FROM_STORE_MAX = 10_000
/** How long a gap repair waits for the store before it goes on without it. */
const STORE_READ_MS = 3_000
/** With persistence: a node marks a room due for the archive for this long before it appends to it. */
const DUE_LEASE_MS = 60_000

/**
 * Many nodes, one chat: seq, the recent log, presence and dedupe live in Redis; every frame
 * travels on the channel of its topic, which a node subscribes to only while it has local
 * members (per-room and per-user channels, never one channel for everything).
 */
export function redisBroker(opts: RedisBrokerOptions): Broker & { client: Redis } {
  const P = opts.prefix
  const origin = opts.origin ?? freshOrigin
  const cluster = opts.cluster ?? false
  const cmd = withScripts(opts.redis.cmd, cluster)
  const sub = opts.redis.sub
  /** One Redis: appends go through Bun's client (script-client.ts); a Redis Cluster's through ioredis. */
  const scripts = opts.redis.scripts
  const APPEND_SCRIPT = appendScript(cluster)
  const hot = hotScripts(cmd, scripts?.run)
  /** One room's appends that wait together, in one call of append.lua (see append-batch.ts). */
  const appendOne = appendBatches<AppendArgs, AppendResult>(async (room, events) => {
    const keys = [key.state(room), key.log(room), key.msgs(room), key.msgOrder(room), key.pins(room)]
    const args = [
      opts.historyLimit,
      key.channel(roomTopic(room)),
      DEDUPE_WINDOW_MS,
      opts.historyTtlMs ?? 0,
      room,
      opts.historyLimit * 2,
      ...events.flat(),
    ]
    const r = (await (scripts ? scripts.run(APPEND_SCRIPT, keys, args) : cmd.chatAppend(...keys, ...args))) as AppendResult[] | [-2]
    // A Redis Cluster's fence answers for the whole call ({-2}: this primary is not the writer).
    return typeof r[0] === 'number' ? events.map(() => r as AppendResult) : (r as AppendResult[])
  })
  const key = redisKeys(P)
  const maxTail = tailFrames(opts.historyLimit)
  // A Redis Cluster carries frames on sharded pub/sub: a channel lives on its slot's shard only
  // (classic PUBLISH would be broadcast to every shard). One Redis keeps classic pub/sub.
  const publish = cluster ? (ch: string, m: string) => cmd.spublish(ch, m) : (ch: string, m: string) => cmd.publish(ch, m)
  const subscribe = (ch: string) => sub.subscribe([ch])
  const unsubscribe = (ch: string) => sub.unsubscribe(ch)
  /** With persistence: until when this node's lease keeps a room in the archive's due set. */
  const dueUntil = new Map<string, number>()

  let deliver: Deliver = () => {}
  let onReset: (room: string, pos: Position) => void = () => {}
  const watched = new Map<string, { count: number; ready: Promise<void> }>()
  const streams = new Map<string, RoomStream>()
  let repairTimer: ReturnType<typeof setInterval> | undefined
  let closing = false
  let started = false
  const ledger = opts.ledger ?? redisLedger({ cmd: opts.redis.cmd, prefix: P, nodes: opts.nodes, bun: scripts })
  // A join or leave no call here returned (a dead node reaped, Redis back without presence): announced to the room,
  // through the hub's announcer once it listens (batched in a big room), else as its own event.
  let edgeListener: PresenceEdge | undefined
  const presence: Presence = {
    ...ledgerPresence(
      ledger.book('presence', (edge, room, id, name) => {
        const event = edge === 'up' ? 'join' : 'leave'
        if (edgeListener) return edgeListener(room, event, { id, name })
        void publish(key.channel(roomTopic(room)), frames.presenceEvent(room, event, { id, name })).catch(() => {})
      }),
    ),
    onEdge: (listener) => void (edgeListener = listener),
  }
  const repairArchive = opts.store ? archiveRepair(cmd, key, opts.store, opts.nodeId) : undefined

  // ---- receiving ----

  /**
   * Topic of each channel, made once: the same string for every message of a room, so its hash
   * is computed once for the maps it is looked up in here and in the hub, and Bun's publish.
   */
  const topics = new Map<string, string>()
  const topicOf = (channel: string) => {
    let topic = topics.get(channel)
    if (topic === undefined) {
      topic = key.topicOf(channel)
      if (topics.size >= 100_000) topics.clear() // bounded; rebuilt as messages come
      topics.set(channel, topic)
    }
    return topic
  }

  sub.on('message', (channel: string, payload: string) => {
    const topic = topicOf(channel)
    if (payload.startsWith(RESET_HEAD)) {
      const stream = streams.get(topic)
      const pos = JSON.parse(payload) as Position
      const room = topicRoom(topic)
      // Unless a repair already saw the new epoch (or the room has no baseline yet).
      if (room !== undefined && stream?.epoch !== undefined && stream.epoch !== pos.epoch) restarted(room, stream, pos)
      return
    }
    const [frame, except] = split(payload)
    const seq = eventSeq(frame)
    const stream = seq >= 0 ? streams.get(topic) : undefined
    if (!stream) return deliver(topic, frame, except)
    if (stream.repairing || stream.held) return void stream.pending.push(payload)
    if (stream.last >= 0 && seq > stream.last + 1) {
      stream.pending.push(payload)
      return void repair(topic, stream)
    }
    handOverFrame(topic, stream, frame, except, seq)
  })

  function handOver(topic: string, stream: RoomStream, payload: string) {
    const [frame, except] = split(payload)
    handOverFrame(topic, stream, frame, except, eventSeq(frame))
  }

  function handOverFrame(topic: string, stream: RoomStream, frame: string, except: string | undefined, seq: number) {
    if (seq <= stream.last) return // already handed over (a repair got it first)
    stream.last = seq
    if (frame.startsWith(SETTINGS_HEAD)) forgetSettings(stream)
    keepInTail(stream, frame, seq, watched.get(topic)?.count ?? 1, maxTail)
    deliver(topic, frame, except)
    settle(stream)
  }

  function settle(stream: RoomStream) {
    if (stream.waiters.length === 0) return
    stream.waiters = stream.waiters.filter((w) => {
      if (w.seq > stream.last) return true
      w.resolve()
      return false
    })
  }

  /**
   * Hands over, in order, what the room's stream holds after `last` (pub/sub drops messages
   * across reconnects). Retries until it succeeds; frames that arrive meanwhile wait, so a
   * gap is never handed on. A room whose sequence restarted (Redis came back empty) is reset.
   */
  async function repair(topic: string, stream: RoomStream): Promise<number> {
    // Streams are kept for room topics only: `room` is always there.
    const room = topicRoom(topic)
    if (stream.repairing || room === undefined) return 0
    stream.repairing = true
    let found = 0
    for (let attempt = 0; streams.get(topic) === stream && !closing; attempt++) {
      try {
        const [seq, epoch, fs] = await cmd.hmget(key.state(room), 'seq', 'epoch', 'fs')
        let pos: Start =
          seq == null || epoch == null
            ? await init(room)
            : { seq: Number(seq), epoch: epoch as string, start: fs == null ? undefined : Number(fs) }
        // A promoted replica without the last writes: the seqs it lacks must not come again in this epoch.
        if (cluster && pos.epoch === stream.epoch && pos.seq < stream.last) pos = await fence(room, stream.last)
        // A new epoch (Redis came back empty, a fence) is joined where it started, however late
        // this node learns of it: frames other nodes appended meanwhile are then read below, so
        // that members get every message of it (its start is unknown only in a state written
        // before `fs` existed: then from where it stands now).
        if (stream.epoch !== undefined && pos.epoch !== stream.epoch) {
          const start = pos.start ?? pos.seq
          // The old sequence's last messages this node had not handed over when Redis lost
          // them: the store has them (archived after each ack, below the new start).
          if (opts.store && stream.last >= 0 && start > stream.last)
            await fromStore(topic, stream, Math.min(start, stream.last + REPAIR_FROM_STORE_MAX))
          restarted(room, stream, { seq: start, epoch: pos.epoch })
        } else if (stream.epoch !== undefined && pos.seq < stream.last) restarted(room, stream, pos)
        stream.epoch = pos.epoch
        if (stream.last >= 0) {
          const entries = (await cmd.xrange(key.log(room), `${stream.last + 1}-0`, '+')) as [string, string[]][]
          const firstKept = entries.length > 0 ? Number.parseInt(entries[0]![0], 10) : stream.last + 1
          // Trimmed past the gap (more than HISTORY_LIMIT appended meanwhile, e.g. while this
          // node's subscriber was away): the store has what was acked, archived after each ack.
          if (firstKept > stream.last + 1 && opts.store)
            found += await fromStore(topic, stream, Math.min(firstKept - 1, stream.last + REPAIR_FROM_STORE_MAX))
          if (firstKept > stream.last + 1) log.warn('room stream no longer reaches back to the gap', { room, last: stream.last })
          for (const [, fields] of entries) {
            if (eventSeq(fields[1]!) > stream.last) found++
            handOver(topic, stream, fields[1]!)
          }
        }
        break
      } catch (err) {
        opts.onError?.(err)
        if (attempt === 0) log.warn('gap repair failed; retrying', { room, err })
        await Bun.sleep(Math.min(100 * 2 ** attempt, 2000))
      }
    }
    stream.repairing = false
    const pending = stream.pending
    stream.pending = []
    for (const f of pending) handOver(topic, stream, f)
    return found
  }

  /** Hands over the store's events after the stream's last, up to `upTo`, while they follow on; how many. */
  async function fromStore(topic: string, stream: RoomStream, upTo: number): Promise<number> {
    const room = topic.slice(2)
    let frames: string[]
    try {
      // PostgreSQL down must not hold the room's live frames back: then the gap stays (logged).
      const late = Bun.sleep(STORE_READ_MS).then(() => Promise.reject(new Error(`postgres: no answer in ${STORE_READ_MS} ms`)))
      frames = await Promise.race([opts.store!.range(room, stream.last, upTo), late])
    } catch (err) {
      log.warn('gap repair could not read the store', { room, err })
      return 0
    }
    let n = 0
    for (const f of frames) {
      if (eventSeq(f) !== stream.last + 1) break // not archived yet: a gap stays
      handOver(topic, stream, f)
      n++
    }
    return n
  }

  /** The room's sequence restarted (or, in a Redis Cluster, went on in a new epoch): members resync. */
  function restarted(room: string, stream: RoomStream, pos: Position) {
    log.warn('room sequence restarted', { room, epoch: pos.epoch, seq: pos.seq, was: stream.last })
    stream.epoch = pos.epoch
    stream.last = pos.seq
    clearTail(stream)
    // Frames held so far are of the old sequence (their seqs may be above the new start: no
    // store, or more than the gap unarchived): gone. The new one's are in the room's stream,
    // where the repair reads them from the new start; later ones queue again.
    stream.pending = []
    onReset(room, pos)
    settle(stream)
  }

  /** After a reconnect: subscribe again, then repair every room (frames wait meanwhile). */
  sub.on('ready', () => {
    if (watched.size === 0 || closing || cluster) return
    for (const stream of streams.values()) stream.held = true
    const subscribed = sub.subscribe([...watched.keys()].map(key.channel))
    for (const w of watched.values()) w.ready = subscribed
    subscribed
      .catch((err) => log.warn('resubscribe failed', { err }))
      .finally(() => {
        for (const [topic, stream] of streams) {
          stream.held = false
          void repair(topic, stream)
        }
      })
  })
  // For a while after a topology change every watched room is also repaired every 2 s: a room
  // whose stream holds frames pub/sub did not bring is subscribed again (an SSUBSCRIBE can be
  // confirmed by a shard connection that is then replaced).
  let settleUntil = 0
  const settleTimer = cluster
    ? setInterval(() => {
        if (Date.now() > settleUntil || closing) return
        for (const [topic, stream] of streams)
          if (!stream.repairing) void repair(topic, stream).then((found) => (found > 0 ? resubscribe(topic) : undefined))
      }, 2000)
    : undefined
  settleTimer?.unref()

  // A Redis Cluster's subscriber group opens connections to the new primaries after a topology
  // change (a failover) or a lost shard connection, and subscribes their channels again, but
  // drops an SSUBSCRIBE that fails (a shard not serving yet). So the node subscribes every
  // watched channel itself, retrying until it is confirmed, then repairs the room: frames may
  // have been lost meanwhile. (SSUBSCRIBE of a channel already subscribed is a no-op.)
  sub.on('subscribersReady', () => {
    if (closing || !started) return
    settleUntil = Date.now() + 30_000
    // A promoted replica may lack this node's latest presence entries: register them again.
    ledger.resync()
    for (const topic of watched.keys()) void resubscribe(topic)
  })

  /** Cluster: an SSUBSCRIBE queued on a shard connection that died meanwhile never settles. */
  const bounded = <T>(p: Promise<T>): Promise<T> =>
    cluster ? Promise.race([p, Bun.sleep(3000).then(() => Promise.reject(new Error('redis: no answer to SSUBSCRIBE in 3 s')))]) : p

  let lastRebuild = 0
  async function resubscribe(topic: string) {
    const stream = streams.get(topic)
    if (stream) void repair(topic, stream) // what the stream holds now; again once subscribed
    for (let attempt = 0; watched.has(topic) && !closing; attempt++) {
      // Seen after every instance restarted: the group keeps routing to a shard connection that
      // never answers. Rebuilding the subscriber connections (at most every 10 s) gets it going.
      if (attempt === 3 && Date.now() - lastRebuild > 10_000) {
        lastRebuild = Date.now()
        log.warn('shard subscribers do not answer; reconnecting them')
        sub.reconnect()
        return
      }
      try {
        await bounded(subscribe(key.channel(topic)))
        break
      } catch (err) {
        if (attempt === 0) log.warn('resubscribe failed; retrying', { topic, err })
        await Bun.sleep(Math.min(100 * 2 ** attempt, 2000))
      }
    }
    if (stream && streams.get(topic) === stream) void repair(topic, stream)
  }
  let lastState = ''
  const onState = () => {
    const state = `${cmd.status}/${sub.status}`
    const healthy = cmd.status === 'ready' && sub.status === 'ready'
    if (state === lastState) return
    lastState = state
    if (started && !closing) (healthy ? log.info : log.warn)('redis connection', { command: cmd.status, subscriber: sub.status })
  }
  for (const ev of ['ready', 'close', 'reconnecting', 'end'] as const) {
    cmd.on(ev, onState)
    sub.on(ev, onState)
  }
  cmd.on('error', (err) => opts.onError?.(err))
  sub.on('error', (err) => opts.onError?.(err))

  // ---- room state ----

  /**
   * A room without state in Redis: new, expired, or lost with Redis's data. A room the store
   * knew may have had messages acknowledged from the stream and not archived yet, so its seqs
   * could be handed out again: it continues under a new epoch, REBUILT_SEQ_GAP past the store's
   * last seq (late archive writes of the old epoch never collide with the new one's).
   */
  function init(room: string): Promise<Start> {
    // One at a time per room on a node: a join asks for the position and the settings at once,
    // and two origin reads of a new room answer "new" and then "known" (the first one created its
    // row), so the second would start the room REBUILT_SEQ_GAP on if its INIT reached Redis first.
    let p = initializing.get(room)
    if (!p) {
      p = initOnce(room).finally(() => initializing.delete(room))
      initializing.set(room, p)
    }
    return p
  }
  const initializing = new Map<string, Promise<Start>>()

  async function initOnce(room: string): Promise<Start> {
    const o = await origin(room)
    const start = o.known ? { seq: o.seq + REBUILT_SEQ_GAP, epoch: freshEpoch() } : o
    const [seq, epoch, fs] = await cmd.chatInit(key.state(room), start.seq, start.epoch, opts.historyTtlMs ?? 0)
    // The store's pins come back with the room (Redis lost them, or they expired with it).
    if (o.pins?.length) {
      for (const p of o.pins) await cmd.hsetnx(key.pins(room), p.msg, JSON.stringify({ s: p.seq, b: p.by, t: p.ts }))
      if (opts.historyTtlMs) await cmd.pexpire(key.pins(room), opts.historyTtlMs)
    }
    // And its settings (a later `settings` event, appended meanwhile, is not overwritten).
    if (o.settings) await cmd.hsetnx(key.state(room), 'slow', o.settings.slow_mode_s)
    return { seq: Number(seq), epoch, start: fs == null ? undefined : Number(fs) }
  }

  /** Cluster: makes this primary the room's writer, in a new epoch if writes may be lost (see FENCE). */
  async function fence(room: string, observed?: number): Promise<Start> {
    // Always a new epoch (as after a Redis restart, see init); with a store, past its gap.
    const epoch = freshEpoch()
    const gap = opts.store ? REBUILT_SEQ_GAP : 0
    const channel = key.channel(roomTopic(room))
    let r = await cmd.chatFence(key.state(room), epoch, observed === undefined ? '' : String(observed), channel, gap)
    if (r[0] === -1) {
      await init(room)
      r = await cmd.chatFence(key.state(room), epoch, '', channel, gap)
    }
    const [seq, ep, fs] = r as [number, string, string]
    if (ep === epoch) log.warn('room starts a new epoch on a new primary', { room, epoch, seq })
    return { seq, epoch: ep, start: fs ? Number(fs) : undefined }
  }

  /** With persistence: the room is due for the archive before anything is appended (see DUE_DONE). */
  async function markDue(room: string) {
    const now = Date.now()
    if ((dueUntil.get(room) ?? 0) - now > DUE_LEASE_MS / 2) return
    await cmd.zadd(key.unpersisted, 'GT', now + DUE_LEASE_MS, room)
    dueUntil.set(room, now + DUE_LEASE_MS)
    if (dueUntil.size > 10_000) for (const [r, t] of dueUntil) if (t < now) dueUntil.delete(r)
  }

  function noteBaseline(room: string, pos: Position) {
    const stream = streams.get(roomTopic(room))
    if (!stream) return
    if (stream.epoch === undefined) {
      // Frames handed over before the epoch was known might be of an earlier one.
      stream.epoch = pos.epoch
      clearTail(stream)
    }
    if (stream.last < 0) {
      stream.last = pos.seq
      clearTail(stream)
      settle(stream)
    }
  }

  async function snapshot(room: string, since: number, waited = false): Promise<Replay> {
    const stream = streams.get(roomTopic(room))
    if (tailAnswers(stream) && since <= stream.last) {
      const from = stream.fs === undefined ? since : Math.max(since, stream.fs)
      // Everything after `from` is in the tail, and what comes after `last` is still to be
      // handed over here (the caller watches the room): the same boundary Redis would give.
      if (from >= stream.tailFirst - 1)
        return { seq: stream.last, epoch: stream.epoch, frames: stream.tail.slice(from - stream.tailFirst + 1), complete: true, from }
      // Further behind than Redis's stream reaches, with no store to fill the gap: what Redis
      // would answer (not complete), without asking it. In a long storm most resumes are here.
      if (!opts.store && stream.logFirst > from + 1) return { seq: stream.last, epoch: stream.epoch, frames: [], complete: false, from }
      const inflight = stream.headRead
      if (inflight && inflight.since <= from && !waited) {
        // The read in flight brings this one's frames into the tail (as far as its size allows).
        await inflight.done
        return snapshot(room, since, true)
      }
      const r = await head(room, stream, since)
      if (r) return r
    }
    let r = await hot.chatSince(key.state(room), key.log(room), since)
    if (r[0] === -1) {
      await init(room)
      r = await hot.chatSince(key.state(room), key.log(room), since)
    }
    const [seq, epoch, entries, fs] = r as [number, string, [string, string[]][], string]
    noteBaseline(room, { seq, epoch })
    // No event of the epoch is at or below the seq it started from: a `since` below it (a
    // client that starts a new epoch over from 0) reads from there.
    const from = fs === '' ? since : Math.max(since, Number(fs))
    const frames = entries.map(([, fields]) => fields[1]!)
    const complete = from <= seq && covers(frames, from, seq)
    return { seq, epoch, frames: from <= seq ? frames : [], complete, from }
  }

  /**
   * A resume from before the node's tail: Redis reads only what comes before it, the tail gives
   * the rest, and what was read is kept in front of the tail for the resumes that follow (in a
   * storm, thousands ask for nearly the same frames at once). Undefined when the room moved on
   * meanwhile (a new epoch, the tail trimmed past the read): the caller reads it all from Redis.
   */
  async function head(room: string, stream: RoomStream & { epoch: string }, since: number): Promise<Replay | undefined> {
    const upto = stream.tailFirst - 1
    const read = hot.chatSince(key.state(room), key.log(room), since, upto)
    const mine = { since, done: read.catch(() => {}) }
    stream.headRead = mine
    let r: Awaited<typeof read>
    try {
      r = await read
    } finally {
      if (stream.headRead === mine) stream.headRead = undefined
    }
    if (r[0] === -1 || streams.get(roomTopic(room)) !== stream) return undefined
    const [, epoch, entries, fs, first] = r as [number, string, [string, string[]][], string, number]
    if (epoch !== stream.epoch || !tailAnswers(stream) || stream.tailFirst > upto + 1) return undefined
    if (fs !== '') stream.fs = Number(fs)
    if (first > stream.logFirst) stream.logFirst = first
    const from = fs === '' ? since : Math.max(since, Number(fs))
    const frames = entries.map(([, fields]) => fields[1]!)
    const complete = covers(frames, from, upto)
    if (frames.length > 0 && stream.tailFirst === upto + 1 && eventSeq(frames[frames.length - 1]!) === upto)
      keepBeforeTail(stream, frames, maxTail)
    const after = stream.tail.slice(Math.max(0, upto + 1 - stream.tailFirst))
    return { seq: stream.last, epoch, frames: from >= upto ? after.slice(from - upto) : frames.concat(after), complete, from }
  }

  const caps = opts.reactionCaps ?? { perMessage: 50, perUser: 10 }
  /** What the APPEND_EVENT script needs of an event to check it against the message state. */
  function lifecycleCommand(draft: EventDraft): string {
    const e = draft.event
    const x = (e.extra ?? {}) as Record<string, unknown>
    // A plain chat or dm (most events) needs only its author: no JSON for the script to decode.
    if ((e.type === 'chat' || e.type === 'dm') && x.reply_to === undefined && x.poll === undefined && !draft.moderator)
      return `${e.type === 'chat' ? 'c' : 'd'}${e.from.id}`
    const poll = x.poll as { options: unknown[]; multiple?: boolean; anonymous?: boolean; closes_at?: string } | undefined
    return JSON.stringify({
      t: e.type,
      id: e.id,
      by: e.from.id,
      bn: x.reply_to === undefined ? undefined : e.from.name,
      msg: x.msg,
      reply_to: x.reply_to,
      reaction: x.reaction,
      op: x.op,
      body: e.type === 'edit' ? e.body : undefined,
      dj: e.type === 'edit' && e.data !== undefined ? JSON.stringify(e.data) : undefined,
      ts: e.ts,
      mod: draft.moderator || undefined,
      pm: caps.perMessage,
      pu: caps.perUser,
      pc: caps.pinsPerRoom ?? DEFAULT_PINS_PER_ROOM,
      bu: e.type === 'pinned' ? { id: e.from.id, name: e.from.name } : undefined,
      pv: e.type === 'preview' ? JSON.stringify(x.preview) : undefined,
      poll: poll && {
        n: poll.options.length,
        m: poll.multiple === true,
        an: poll.anonymous === true,
        z: poll.closes_at ? Date.parse(poll.closes_at) : undefined,
      },
      o: e.type === 'vote' ? x.options : undefined,
      an: e.type === 'vote' ? x.anonymous === true : undefined,
      sl: e.type === 'settings' ? x.slow_mode_s : undefined,
      ...(e.type === 'moderation'
        ? { act: x.action, tg: (x.user as { id: string }).id, um: x.until ? Date.parse(x.until as string) : undefined, until: x.until }
        : {}),
    })
  }

  /** Puts a message's stored state back into the room's hash (unless it is there by now); true when found. */
  async function restore(room: string, id: string | undefined): Promise<boolean> {
    if (id === undefined || !opts.loadMessages) return false
    const m = (await opts.loadMessages(room, [id])).get(id)
    if (!m) return false
    const lua = {
      s: m.seq,
      a: m.author,
      d: m.deleted || undefined,
      e: m.edited_at,
      b: m.edited_at ? m.body : undefined,
      j: m.edited_at && m.data !== undefined ? JSON.stringify(m.data) : undefined,
      r: Object.keys(m.reactions).length ? m.reactions : undefined,
      pv: m.preview && !m.deleted ? JSON.stringify(m.preview) : undefined,
      p: m.poll && pollToLua(m.poll),
      t: m.thread && { c: m.thread.count, l: m.thread.last_ts, p: m.thread.participants },
    }
    if (await cmd.hsetnx(key.msgs(room), id, JSON.stringify(lua))) await cmd.rpush(key.msgOrder(room), id)
    return true
  }

  return {
    kind: 'redis',
    /** The command connection, for the engines that keep their state beside the broker's (memberships). */
    client: cmd,
    async start(d, reset) {
      deliver = d
      if (reset) onReset = reset
      await opts.redis.connect()
      if (repairArchive) {
        repairTimer = setInterval(() => void repairArchive(), REPAIR_EVERY_MS)
        repairTimer.unref()
      }
      started = true
      lastState = 'ready/ready'
    },
    async append(room, draft, dedupe, except): Promise<Accepted> {
      if (opts.store) await markDue(room)
      const command = lifecycleCommand(draft)
      const own: AppendArgs = [
        draft.head,
        draft.tail,
        draft.event.id,
        except ?? '',
        command,
        JSON.stringify(draft.event.from.id),
        dedupe ? `~d:${dedupe}` : '',
      ]
      const call = () => appendOne(room, own)
      let r = await call()
      for (let i = 0; i < 3 && (r[0] === -1 || r[0] === -2); i++) {
        if (r[0] === -2) await fence(room)
        else await init(room)
        r = await call()
      }
      if (r[0] === -3 && r[1] === 'not_found' && (await restore(room, neededMessage(draft.event)))) r = await call()
      if (r[0] === -3) throw new Refused(r[1] as 'not_found', r[2]!, (r as unknown[])[3] as number | undefined)
      if (r[0] === -4) throw new Error(`redis: ${r[1]}`)
      if (r[0] < 0) throw new Error('redis: the room could not be written (its slot keeps moving)')
      if (r[0] === 2) return { id: draft.event.id, seq: r[1] as number, duplicate: false, noop: true }
      if (r[0] === 0) return { id: r[2]!, seq: r[1] as number, duplicate: true }
      const seq = r[1] as number
      // A vote's or close's tallies, known only to the script: into the event the store keeps.
      if (r[2] !== undefined) draft.event.extra = { ...draft.event.extra, tallies: JSON.parse(r[2]) }
      // Acknowledged once in the stream; the store catches up (or the repair does it).
      if (opts.store?.accepting()) void opts.store.save([{ ...draft.event, seq }])
      return { id: draft.event.id, seq, duplicate: false }
    },
    async relay(topic, frame, except) {
      await publish(key.channel(topic), except ? `${except}\n${frame}` : frame)
    },
    async watch(topic) {
      const w = watched.get(topic)
      if (w) {
        w.count++
        return w.ready
      }
      // Counted even when the subscribe fails: the caller unwatches either way, and a wanted
      // channel is subscribed again when the connection is back.
      if (isRoomTopic(topic)) streams.set(topic, newStream())
      const entry = { count: 1, ready: bounded(subscribe(key.channel(topic))).then(() => {}) }
      watched.set(topic, entry)
      return entry.ready
    },
    unwatch(topic) {
      const w = watched.get(topic)
      if (!w || --w.count > 0) return
      watched.delete(topic)
      streams.delete(topic)
      unsubscribe(key.channel(topic)).catch(() => {})
    },
    async position(room) {
      const [seq, epoch] = await cmd.hmget(key.state(room), 'seq', 'epoch')
      const pos = seq == null || epoch == null ? await init(room) : { seq: Number(seq), epoch: epoch as string }
      noteBaseline(room, pos)
      return pos
    },
    since: (room, since) => snapshot(room, since),
    caughtUp(room, seq) {
      const stream = streams.get(roomTopic(room))
      if (!stream || stream.last >= seq) return Promise.resolve()
      return new Promise<void>((resolve) => {
        const w = { seq, resolve }
        stream.waiters.push(w)
        // A frame still in flight on the subscriber usually lands within a millisecond; past
        // that, read the stream; past a few seconds, go on (the joiner dedupes by seq).
        setTimeout(() => void repair(roomTopic(room), stream), 250)
        setTimeout(() => {
          stream.waiters = stream.waiters.filter((x) => x !== w)
          resolve()
        }, 3000)
      })
    },
    async page(room, before, limit): Promise<Page> {
      const end = before === undefined ? '+' : `${before - 1}-0`
      if (before !== undefined && before <= 1) return { frames: [], more: false }
      const entries = (await cmd.xrevrange(key.log(room), end, '-', 'COUNT', limit + 1)) as [string, string[]][]
      const more = entries.length > limit
      return {
        frames: entries
          .slice(0, limit)
          .reverse()
          .map(([, f]) => f[1]!),
        more,
      }
    },
    async summary(room, read, user) {
      const stream = streams.get(roomTopic(room))
      if (tailAnswers(stream) && stream.tail.length > 0) {
        const tail = stream.tail
        const first = stream.tailFirst
        function* newestFirst(): Generator<[number, string]> {
          for (let i = tail.length - 1; i >= 0; i--) yield [first + i, tail[i]!]
        }
        const s = summarizeShared(stream, { seq: stream.last, epoch: stream.epoch }, first, read, user, newestFirst, isMessageFrame)
        // Without a message in the tail the last one is older: Redis walks for it.
        if (s.complete && s.last !== undefined) return s
      }
      const call = () =>
        hot.chatSummary(key.state(room), key.log(room), read, fromNeedle(user), UNREAD_CAP, SUMMARY_BUDGET, CHAT_HEAD, DM_HEAD)
      let r = await call()
      if (r[0] === -1) {
        await init(room)
        r = await call()
      }
      const [seq, epoch, unread, counted, last] = r as [number, string, number, number, string]
      noteBaseline(room, { seq, epoch })
      const complete = read >= seq || counted <= read + 1 || unread >= UNREAD_CAP
      return { seq, epoch, unread, counted, complete, last: last || undefined }
    },
    async messages(room, ids) {
      const out = new Map<string, MessageState>()
      if (!ids.length) return out
      const raw = await cmd.hmget(key.msgs(room), ...ids)
      ids.forEach((id, i) => {
        const v = raw[i]
        // Fields that start with `~` are the room's standings and retry keys, not messages.
        if (!v || id.startsWith('~')) return
        const m = JSON.parse(v) as {
          s: number
          a: string
          d?: boolean
          e?: string
          b?: string
          j?: string
          r?: Record<string, string[]>
          pv?: string
          p?: LuaPoll
          t?: { c: number; l: string; p: ThreadSummary['participants'] }
        }
        out.set(id, {
          seq: m.s,
          author: m.a,
          deleted: m.d,
          edited_at: m.e,
          body: m.b,
          data: m.j === undefined ? undefined : JSON.parse(m.j),
          reactions: m.r ?? {},
          ...(m.pv ? { preview: JSON.parse(m.pv) } : {}),
          ...(m.p ? { poll: pollFromLua(m.p) } : {}),
          ...(m.t ? { thread: { count: m.t.c, last_ts: m.t.l, participants: m.t.p } } : {}),
        })
      })
      return out
    },
    async settings(room) {
      const stream = streams.get(roomTopic(room))
      if (stream?.settings && tailAnswers(stream)) return { ...stream.settings }
      const gen = stream?.settingsGen
      // `seq` tells in the same command whether the room has a state (init.lua always sets it).
      let [slow, seq] = await cmd.hmget(key.state(room), 'slow', 'seq')
      if (seq === null) {
        await init(room)
        slow = await cmd.hget(key.state(room), 'slow')
      }
      const settings = { slow_mode_s: Number(slow ?? 0) }
      if (stream && streams.get(roomTopic(room)) === stream && stream.settingsGen === gen) stream.settings = { ...settings }
      return settings
    },
    async pins(room) {
      if (!(await cmd.exists(key.state(room)))) await init(room)
      const raw = await cmd.hgetall(key.pins(room))
      const out: Pin[] = Object.entries(raw).map(([msg, v]) => {
        const p = JSON.parse(v) as { s: number; b: Pin['by']; t: string }
        return { msg, seq: p.s, by: p.b, ts: p.t }
      })
      return out.sort(byPinTime)
    },
    presence,
    windows: redisWindows(hot, key),
    problem() {
      if (cmd.status !== 'ready') return `redis: ${cmd.status}`
      if (sub.status !== 'ready') return `redis subscriber: ${sub.status}`
      if (scripts && !scripts.connected) return 'redis (append connection): reconnecting'
      return undefined
    },
    async close() {
      closing = true
      if (repairTimer) clearInterval(repairTimer)
      if (settleTimer) clearInterval(settleTimer)
      await ledger.end()
    },
  }
}
