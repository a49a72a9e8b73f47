import Redis from 'ioredis'
import { CHAT_HEAD, chatSeq, frames } from '../protocol/server-frames'
import type { User } from '../protocol/server-frames'
import { log } from '../log'
import { APPEND, INIT, PERSISTED, PRESENCE_ADD, PRESENCE_REMOVE, SINCE, UNLOCK } from './redis-scripts'
import type { StoredMessage, Store } from '../store/types'
import type { Accepted, Broker, Deliver, Page, Position, Presence, Replay, RoomOrigin } from './types'
import { DEDUPE_WINDOW_MS, freshOrigin, roomTopic } from './types'

export interface RedisBrokerOptions {
  url: string
  prefix: string
  nodeId: string
  historyLimit: number
  origin?: RoomOrigin
  /**
   * With persistence: messages are archived after they are acknowledged, and a repair loop
   * copies into the store whatever the room streams hold but the store lacks (a node that
   * died before writing, a backlog that overflowed during an outage).
   */
  store?: Pick<Store, 'save' | 'stored' | 'accepting'>
  onError?: (err: unknown) => void
}

/** Per watched room: the last seq handed to the hub, so that a gap is seen and repaired. */
interface RoomStream {
  last: number
  /** The room's epoch when last seen; a different one means its sequence restarted. */
  epoch?: string
  repairing: boolean
  /** Set while the channel is being subscribed again after a reconnect. */
  held: boolean
  pending: string[]
  waiters: { seq: number; resolve: () => void }[]
}

const newStream = (): RoomStream => ({ last: -1, repairing: false, held: false, pending: [], waiters: [] })

type Scripted = Redis & {
  chatAppend(state: string, log: string, dedupe: string, unpersisted: string, head: string, tail: string, maxlen: number, channel: string, msgId: string, ttl: number, room: string): Promise<[number, number?, string?]>
  chatPersisted(state: string, unpersisted: string, room: string, upTo: number): Promise<number>
  unlock(lock: string, owner: string): Promise<number>
  chatInit(state: string, seq: number, epoch: string): Promise<[string, string]>
  chatSince(state: string, log: string, since: number): Promise<[number, string, [string, string[]][]] | [-1]>
  presenceAdd(conns: string, counts: string, names: string, index: string, conn: string, user: string, name: string, entry: string): Promise<number>
  presenceRemove(conns: string, counts: string, names: string, index: string, conn: string, user: string, entry: string): Promise<number>
}

const HEARTBEAT_MS = 5_000
const REPAIR_EVERY_MS = 1_000
/** The repair leaves younger messages to the node that sent them, whose write is on its way. */
const REPAIR_AGE_MS = 1_000
const NODE_TTL_MS = 20_000

/**
 * Many nodes, one chat: seq, the recent log, presence and dedupe live in Redis; every frame
 * travels on the channel of its topic, which a node subscribes to only while it has local
 * members (per-room and per-user channels, never one channel for everything).
 */
export function redisBroker(opts: RedisBrokerOptions): Broker {
  const P = opts.prefix
  const origin = opts.origin ?? freshOrigin
  const common = { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: (n: number) => Math.min(100 * 2 ** n, 2000) }
  const cmd = new Redis(opts.url, { ...common, enableOfflineQueue: false, enableAutoPipelining: true, commandTimeout: 3000 }) as Scripted
  const sub = new Redis(opts.url, { ...common, autoResubscribe: false, enableOfflineQueue: true })
  cmd.defineCommand('chatAppend', { numberOfKeys: 4, lua: APPEND })
  cmd.defineCommand('chatPersisted', { numberOfKeys: 2, lua: PERSISTED })
  cmd.defineCommand('unlock', { numberOfKeys: 1, lua: UNLOCK })
  cmd.defineCommand('chatInit', { numberOfKeys: 1, lua: INIT })
  cmd.defineCommand('chatSince', { numberOfKeys: 2, lua: SINCE })
  cmd.defineCommand('presenceAdd', { numberOfKeys: 4, lua: PRESENCE_ADD })
  cmd.defineCommand('presenceRemove', { numberOfKeys: 4, lua: PRESENCE_REMOVE })

  const key = {
    state: (room: string) => `${P}{${room}}:state`,
    log: (room: string) => `${P}{${room}}:log`,
    dedupe: (k: string) => `${P}dedupe:${k}`,
    channel: (topic: string) => `${P}ch:${topic}`,
    pConns: (room: string) => `${P}{${room}}:pconns`,
    pCounts: (room: string) => `${P}{${room}}:pcounts`,
    pNames: (room: string) => `${P}{${room}}:pnames`,
    nodeIndex: (node: string) => `${P}node:${node}:presence`,
    nodeAlive: (node: string) => `${P}node:${node}:alive`,
    nodes: `${P}nodes`,
    unpersisted: `${P}unpersisted`,
    repairLock: `${P}repair-lock`,
  }
  const channelPrefix = `${P}ch:`

  let deliver: Deliver = () => {}
  let onReset: (room: string, pos: Position) => void = () => {}
  const watched = new Map<string, { count: number; ready: Promise<void> }>()
  const streams = new Map<string, RoomStream>()
  /** This node's presence entries, re-registered after Redis comes back empty. */
  const mine = new Map<string, { room: string; user: User; conn: string }>()
  /** Departures Redis has not heard of yet (it was down): retried when it is back. */
  const departed = new Map<string, { room: string; user: User; conn: string }>()
  let connectedSince = 0
  const inflight = new Set<Promise<unknown>>()
  let timer: ReturnType<typeof setInterval> | undefined
  let repairTimer: ReturnType<typeof setInterval> | undefined
  let closing = false
  let started = false

  const track = <T>(p: Promise<T>): Promise<T> => {
    inflight.add(p)
    p.finally(() => inflight.delete(p)).catch(() => {})
    return p
  }

  // ---- receiving ----

  sub.on('message', (channel: string, payload: string) => {
    const topic = channel.slice(channelPrefix.length)
    if (payload.charCodeAt(0) !== 123 /* { */) {
      const nl = payload.indexOf('\n')
      return deliver(topic, payload.slice(nl + 1), payload.slice(0, nl))
    }
    const stream = payload.startsWith(CHAT_HEAD) ? streams.get(topic) : undefined
    if (!stream) return deliver(topic, payload)
    if (stream.repairing || stream.held) return void stream.pending.push(payload)
    const seq = chatSeq(payload)
    if (stream.last >= 0 && seq > stream.last + 1) {
      stream.pending.push(payload)
      return void repair(topic, stream)
    }
    handOver(topic, stream, payload)
  })

  function handOver(topic: string, stream: RoomStream, frame: string) {
    const seq = chatSeq(frame)
    if (seq <= stream.last) return // already handed over (a repair got it first)
    stream.last = seq
    deliver(topic, frame)
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
  async function repair(topic: string, stream: RoomStream) {
    if (stream.repairing) return
    stream.repairing = true
    const room = topic.slice(2)
    for (let attempt = 0; streams.get(topic) === stream && !closing; attempt++) {
      try {
        const [seq, epoch] = await cmd.hmget(key.state(room), 'seq', 'epoch')
        const pos = seq == null || epoch == null ? await init(room) : { seq: Number(seq), epoch: epoch as string }
        if (stream.epoch !== undefined && (pos.epoch !== stream.epoch || pos.seq < stream.last)) {
          log.warn('room sequence restarted', { room, epoch: pos.epoch, seq: pos.seq, was: stream.last })
          stream.epoch = pos.epoch
          stream.last = pos.seq
          stream.pending = stream.pending.filter((f) => chatSeq(f) > pos.seq)
          onReset(room, pos)
        }
        stream.epoch = pos.epoch
        if (stream.last >= 0) {
          const entries = (await cmd.xrange(key.log(room), `${stream.last + 1}-0`, '+')) as [string, string[]][]
          if (entries.length > 0 && Number.parseInt(entries[0]![0]) > stream.last + 1)
            log.warn('room stream no longer reaches back to the gap', { room, last: stream.last })
          for (const [, fields] of entries) handOver(topic, stream, fields[1]!)
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
  }

  /** After a reconnect: subscribe again, then repair every room (frames wait meanwhile). */
  sub.on('ready', () => {
    if (watched.size === 0 || closing) return
    for (const stream of streams.values()) stream.held = true
    const subscribed = sub.subscribe(...[...watched.keys()].map(key.channel)).then(() => {})
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
  /** After a reconnect: presence this node holds is registered again, departures retried. */
  cmd.on('ready', () => {
    connectedSince = Date.now()
    if (closing || !started) return
    for (const e of mine.values())
      void registerPresence(e.room, e.user, e.conn)
        .then((n) => void (n === 1 && announce(e.room, 'join', e.user)))
        .catch(() => {})
    for (const [k, e] of departed)
      void removePresence(opts.nodeId, e.room, e.user, e.conn)
        .then((last) => {
          departed.delete(k)
          if (last) announce(e.room, 'leave', e.user)
        })
        .catch(() => {})
  })
  const announce = (room: string, event: 'join' | 'leave', user: User) =>
    cmd.publish(key.channel(roomTopic(room)), frames.presenceEvent(room, event, user)).catch(() => {})
  let lastState = ''
  const onState = () => {
    const state = `${cmd.status}/${sub.status}`
    const healthy = cmd.status === 'ready' && sub.status === 'ready'
    if (state === lastState) return
    lastState = state
    if (started && !closing) (healthy ? log.info : log.warn)('redis connection', { command: cmd.status, subscriber: sub.status })
  }
  for (const c of [cmd, sub]) {
    for (const ev of ['ready', 'close', 'reconnecting', 'end']) c.on(ev, onState)
    c.on('error', (err) => opts.onError?.(err))
  }

  // ---- room state ----

  async function init(room: string): Promise<Position> {
    const o = await origin(room)
    const [seq, epoch] = await cmd.chatInit(key.state(room), o.seq, o.epoch)
    return { seq: Number(seq), epoch }
  }

  function noteBaseline(room: string, pos: Position) {
    const stream = streams.get(roomTopic(room))
    if (!stream) return
    stream.epoch ??= pos.epoch
    if (stream.last < 0) {
      stream.last = pos.seq
      settle(stream)
    }
  }

  async function snapshot(room: string, since: number): Promise<Replay> {
    let r = await cmd.chatSince(key.state(room), key.log(room), since)
    if (r[0] === -1) {
      await init(room)
      r = await cmd.chatSince(key.state(room), key.log(room), since)
    }
    const [seq, epoch, entries] = r as [number, string, [string, string[]][]]
    noteBaseline(room, { seq, epoch })
    const frames = entries.map(([, fields]) => fields[1]!)
    const complete = since <= seq && (since === seq || (frames.length === seq - since && chatSeq(frames[0]!) === since + 1))
    return { seq, epoch, frames: since <= seq ? frames : [], complete }
  }

  // ---- archive repair (persistence on) ----

  let repairing = false
  async function repairArchive() {
    const store = opts.store
    if (!store || repairing || closing) return
    repairing = true
    let locked = false
    try {
      locked = (await cmd.set(key.repairLock, opts.nodeId, 'PX', 30_000, 'NX')) === 'OK'
      if (!locked) return
      for (const room of await cmd.smembers(key.unpersisted)) {
        const pw = Number((await cmd.hget(key.state(room), 'pw')) ?? 0)
        const entries = (await cmd.xrange(key.log(room), `${pw + 1}-0`, '+', 'COUNT', 5000)) as [string, string[]][]
        const cutoff = Date.now() - REPAIR_AGE_MS
        const ready: StoredMessage[] = []
        for (const [, fields] of entries) {
          const f = JSON.parse(fields[1]!)
          if (Date.parse(f.ts) > cutoff) break
          ready.push({ room, seq: f.seq, id: f.id, from: f.from, body: f.body, data: f.data, ts: f.ts })
        }
        if (ready.length === 0) {
          if (entries.length === 0) await cmd.chatPersisted(key.state(room), key.unpersisted, room, pw)
          continue
        }
        const lo = ready[0]!.seq
        const hi = ready.at(-1)!.seq
        if (lo > pw + 1) log.warn('the room stream no longer holds messages the store lacks', { room, from: pw + 1, to: lo - 1 })
        const have = await store.stored(room, lo, hi)
        const missing = ready.filter((m) => !have.has(m.seq))
        if (missing.length) {
          await store.save(missing)
          log.info('repaired messages into the store', { room, count: missing.length, from: missing[0]!.seq, to: missing.at(-1)!.seq })
        }
        await cmd.chatPersisted(key.state(room), key.unpersisted, room, hi)
      }
    } catch (err) {
      log.debug('archive repair failed', { err })
    } finally {
      if (locked) await cmd.unlock(key.repairLock, opts.nodeId).catch(() => {})
      repairing = false
    }
  }

  // ---- presence ----

  const entryOf = (room: string, user: User, conn: string) => JSON.stringify([room, conn, user.id, user.name])

  function registerPresence(room: string, user: User, conn: string) {
    return cmd.presenceAdd(key.pConns(room), key.pCounts(room), key.pNames(room), key.nodeIndex(opts.nodeId), conn, user.id, user.name, entryOf(room, user, conn))
  }

  async function removePresence(node: string, room: string, user: User, conn: string): Promise<boolean> {
    const last = await cmd.presenceRemove(key.pConns(room), key.pCounts(room), key.pNames(room), key.nodeIndex(node), conn, user.id, entryOf(room, user, conn))
    return last === 1
  }

  const presence: Presence = {
    async add(room, user, conn) {
      mine.set(`${room}\n${conn}`, { room, user, conn })
      return track(registerPresence(room, user, conn)).then((n) => n === 1)
    },
    async remove(room, userId, conn) {
      const k = `${room}\n${conn}`
      const e = mine.get(k)
      mine.delete(k)
      if (!e) return false
      try {
        return await track(removePresence(opts.nodeId, room, e.user, conn))
      } catch (err) {
        departed.set(k, e)
        throw err
      }
    },
    async list(room) {
      const names = await cmd.hgetall(key.pNames(room))
      return Object.entries(names).map(([id, name]) => ({ id, name }))
    },
  }

  /** Heartbeat, and the cleanup of nodes that died without cleaning up after themselves. */
  async function heartbeat() {
    await cmd.set(key.nodeAlive(opts.nodeId), String(Date.now()), 'PX', NODE_TTL_MS)
    await cmd.sadd(key.nodes, opts.nodeId)
    // Right after a reconnect the other nodes' heartbeats may have lapsed with the outage:
    // give them a full TTL to show they are alive before reaping anything.
    if (Date.now() - connectedSince < NODE_TTL_MS) return
    for (const node of await cmd.smembers(key.nodes)) {
      if (node === opts.nodeId || (await cmd.exists(key.nodeAlive(node)))) continue
      await reap(node)
    }
  }

  async function reap(node: string) {
    const entries = await cmd.smembers(key.nodeIndex(node))
    for (const entry of entries) {
      const [room, conn, id, name] = JSON.parse(entry) as [string, string, string, string]
      if (await removePresence(node, room, { id, name }, conn))
        await cmd.publish(key.channel(roomTopic(room)), frames.presenceEvent(room, 'leave', { id, name }))
    }
    if ((await cmd.scard(key.nodeIndex(node))) === 0) await cmd.srem(key.nodes, node)
    if (entries.length) log.info('reaped presence of a dead node', { dead: node, entries: entries.length })
  }

  return {
    kind: 'redis',
    async start(d, reset) {
      deliver = d
      if (reset) onReset = reset
      await Promise.all([cmd.connect(), sub.connect()])
      await reap(opts.nodeId) // leftovers of an earlier life under the same NODE_ID
      connectedSince = Date.now() - NODE_TTL_MS // a fresh start may reap at once
      await heartbeat()
      timer = setInterval(() => heartbeat().catch((err) => log.debug('heartbeat failed', { err })), HEARTBEAT_MS)
      timer.unref()
      if (opts.store) {
        repairTimer = setInterval(() => void repairArchive(), REPAIR_EVERY_MS)
        repairTimer.unref()
      }
      started = true
      lastState = 'ready/ready'
    },
    async append(room, draft, dedupe): Promise<Accepted> {
      const call = () =>
        cmd.chatAppend(key.state(room), key.log(room), dedupe ? key.dedupe(dedupe) : '', opts.store ? key.unpersisted : '', CHAT_HEAD, draft.tail, opts.historyLimit, key.channel(roomTopic(room)), draft.id, DEDUPE_WINDOW_MS, room)
      let r = await call()
      if (r[0] === -1) {
        await init(room)
        r = await call()
      }
      if (r[0] === 0) return { id: r[2]!, seq: r[1]!, duplicate: true }
      const seq = r[1]!
      // Acknowledged once in the stream; the store catches up (or the repair does it).
      if (opts.store?.accepting()) {
        const { tail: _, ...fields } = draft
        void opts.store.save([{ ...fields, room, seq }])
      }
      return { id: draft.id, seq, duplicate: false }
    },
    async relay(topic, frame, except) {
      await cmd.publish(key.channel(topic), except ? `${except}\n${frame}` : frame)
    },
    async claim(k, value) {
      const ok = await cmd.set(key.dedupe(k), value, 'PX', DEDUPE_WINDOW_MS, 'NX')
      if (ok === 'OK') return undefined
      return (await cmd.get(key.dedupe(k))) ?? value
    },
    async unclaim(k) {
      await cmd.del(key.dedupe(k))
    },
    async watch(topic) {
      const w = watched.get(topic)
      if (w) {
        w.count++
        return w.ready
      }
      // Counted even when the subscribe fails: the caller unwatches either way, and a wanted
      // channel is subscribed again when the connection is back.
      if (topic.startsWith('r:')) streams.set(topic, newStream())
      const entry = { count: 1, ready: sub.subscribe(key.channel(topic)).then(() => {}) }
      watched.set(topic, entry)
      return entry.ready
    },
    unwatch(topic) {
      const w = watched.get(topic)
      if (!w || --w.count > 0) return
      watched.delete(topic)
      streams.delete(topic)
      sub.unsubscribe(key.channel(topic)).catch(() => {})
    },
    async position(room) {
      const [seq, epoch] = await cmd.hmget(key.state(room), 'seq', 'epoch')
      const pos = seq == null || epoch == null ? await init(room) : { seq: Number(seq), epoch: epoch as string }
      noteBaseline(room, pos)
      return pos
    },
    since: snapshot,
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
      return { frames: entries.slice(0, limit).reverse().map(([, f]) => f[1]!), more }
    },
    presence,
    problem() {
      if (cmd.status !== 'ready') return `redis: ${cmd.status}`
      if (sub.status !== 'ready') return `redis subscriber: ${sub.status}`
      return undefined
    },
    async close() {
      closing = true
      if (timer) clearInterval(timer)
      if (repairTimer) clearInterval(repairTimer)
      await Promise.race([Promise.allSettled([...inflight]), Bun.sleep(2000)])
      try {
        // A node that leaves entries behind stays listed, so that the reaper cleans up after it.
        if (mine.size === 0 && departed.size === 0) await cmd.srem(key.nodes, opts.nodeId)
        await cmd.del(key.nodeAlive(opts.nodeId))
      } catch {}
      sub.disconnect()
      cmd.disconnect()
    },
  }
}
