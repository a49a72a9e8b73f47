/**
 * A load-generator process, driven by bench/run.ts over IPC. One process plays one role:
 *   members  N room members that count chat frames (and, in latency mode, time them)
 *   senders  S members that send chat frames: flood (credit-limited), paced, or acked
 *   idle     N connections that only stay open (node:net, spread over source addresses)
 *   peers    N members that all send and all count (Bun's chat-bench shape): a message may be
 *            sent while fewer than `window` messages are not yet received by every peer
 * Each is a separate process so that its CPU can be read from /proc and its sockets do not
 * count against another process's open-file limit.
 */
import { Histogram } from './lib/histogram'
import { connectWs, encodeFrame, isChat, nowUs, OP_CLOSE, OP_TEXT, stampOf, startsWith } from './lib/ws'
import type { Conn } from './lib/ws'

export type Command =
  | {
      cmd: 'members' | 'idle'
      host: string
      port: number
      count: number
      user: string
      waitJoined: boolean
      latency?: boolean
      localAddresses?: string[]
      ramp?: number
      /** One user per connection (`<user>-<i>`) instead of one for all. */
      distinctUsers?: boolean
    }
  | { cmd: 'senders'; host: string; port: number; count: number; user: string; waitJoined: boolean; padTo?: number; body?: number }
  | { cmd: 'peers'; host: string; port: number; count: number; user: string; waitJoined: boolean; padTo?: number; body?: number }
  | { cmd: 'peerflood'; window: number }
  /** Members: time every chat frame (latency mode) or only count them, from now on. */
  | { cmd: 'timing'; on: boolean }
  | { cmd: 'progress'; everyMs: number }
  | { cmd: 'flood'; credit: number }
  | { cmd: 'credit'; credit: number }
  | { cmd: 'pace'; rate: number }
  | { cmd: 'acked'; window: number }
  | { cmd: 'start' }
  | { cmd: 'stop' }
  | { cmd: 'halt' }
  | { cmd: 'exit' }

export type Event =
  | { ev: 'ready'; open: number; failed: number; reasons: string[]; ms: number }
  | { ev: 'progress'; min: number }
  | {
      ev: 'stats'
      frames: number
      chat: number
      sent: number
      acks: number
      errors: number
      closes: number
      reasons: string[]
      hist?: ReturnType<Histogram['toJSON']>
      ms: number
      totals: { sent: number; acks: number; errors: number; outstanding: number }
    }

const send = (e: Event) => process.send!(e)
const JOINED = new TextEncoder().encode('{"type":"joined"')
const ACK = new TextEncoder().encode('{"type":"ack"')
const ERROR = new TextEncoder().encode('{"type":"error"')
const dec = new TextDecoder()

const conns: Conn[] = []
let counts = new Float64Array(0)
let frames = 0
let chatTotal = 0
let sent = 0
let acks = 0
let errors = 0
let closes = 0
const reasons: string[] = []
let measuring = false
let latency = false
const hist = new Histogram()
let startedAt = 0
let snap = { chat: 0, frames: 0, sent: 0, acks: 0, errors: 0, closes: 0 }
let stopping = false

function note(why: string) {
  if (reasons.length < 5 && !reasons.includes(why)) reasons.push(why)
}

/** Opens `count` connections, at most `ramp` handshakes at a time; resolves when all are ready or failed. */
function openMany(
  c: Extract<Command, { cmd: 'members' | 'idle' | 'senders' | 'peers' }>,
  onFrame?: (i: number, op: number, b: Uint8Array, s: number, e: number) => void,
) {
  const t0 = performance.now()
  const ramp = ('ramp' in c && c.ramp) || 200
  counts = new Float64Array(c.count)
  let next = 0
  let inFlight = 0
  let ready = 0
  let failed = 0
  return new Promise<void>((resolve) => {
    const done = () => {
      if (ready + failed === c.count) {
        send({ ev: 'ready', open: ready, failed, reasons: [...reasons], ms: Math.round(performance.now() - t0) })
        resolve()
      }
    }
    const launch = () => {
      while (inFlight < ramp && next < c.count) {
        const i = next++
        inFlight++
        let isReady = false
        const becomeReady = () => {
          if (isReady) return
          isReady = true
          inFlight--
          ready++
          launch()
          done()
        }
        const user = c.cmd === 'senders' || c.cmd === 'peers' || ('distinctUsers' in c && c.distinctUsers) ? `${c.user}-${i}` : c.user
        const localAddresses = 'localAddresses' in c ? c.localAddresses : undefined
        conns[i] = connectWs({
          host: c.host,
          port: c.port,
          path: `/ws?user=${encodeURIComponent(user)}&name=${encodeURIComponent(user)}`,
          localAddress: localAddresses?.length ? localAddresses[i % localAddresses.length] : undefined,
          onDrain: c.cmd === 'senders' ? () => pump() : undefined,
          onUpgrade: () => {
            if (!c.waitJoined) becomeReady()
          },
          onFrame: (op, b, s, e) => {
            frames++
            if (!isReady && c.waitJoined && op === OP_TEXT && startsWith(b, s, e, JOINED)) becomeReady()
            onFrame?.(i, op, b, s, e)
          },
          onClose: (why) => {
            if (!isReady) {
              isReady = true
              inFlight--
              failed++
              note(why)
              launch()
              done()
            } else if (!stopping) {
              closes++
              note(why)
            }
          },
        })
      }
    }
    launch()
    done()
  })
}

// ---- members ----

function memberFrame(i: number, op: number, b: Uint8Array, s: number, e: number) {
  if (op !== OP_TEXT || !isChat(b, s, e)) {
    if (op === OP_CLOSE) note(`close frame ${(b[s]! << 8) | b[s + 1]!}`)
    return
  }
  counts[i]!++
  chatTotal++
  if (latency && measuring) {
    const t = stampOf(b, s, e)
    if (t > 0) hist.record(nowUs() - t)
  }
}

// ---- senders ----

let senderConns: Conn[] = []
let credit = 0
let rr = 0
let padTo = 0
let bodyLen = 40
let paceTimer: ReturnType<typeof setInterval> | undefined
let ackWindow = 0
const outstanding = new Map<string, number>()
let nextId = 0

function chatFrame(withId?: string): Uint8Array {
  const stamp = `~${nowUs()}~`
  let body = stamp + ' bench message '.padEnd(Math.max(0, bodyLen - stamp.length), '.')
  const idPart = withId ? `,"id":"${withId}"` : ''
  let text = `{"type":"chat","body":"${body}"${idPart}}`
  if (padTo > text.length) {
    body += 'x'.repeat(padTo - text.length)
    text = `{"type":"chat","body":"${body}"${idPart}}`
  }
  return encodeFrame(text)
}

/** Sends while credit lasts, batching frames per socket, skipping sockets the kernel is not draining. */
function pump() {
  if (stopping) return
  const live = senderConns.filter((c) => c.open)
  if (!live.length) return
  let blocked = 0
  while (sent < credit && blocked < live.length) {
    const c = live[rr++ % live.length]!
    if (c.pending() > 64 * 1024) {
      blocked++
      continue
    }
    blocked = 0
    const k = Math.min(credit - sent, 16)
    const parts: Uint8Array[] = []
    let len = 0
    for (let j = 0; j < k; j++) {
      const f = chatFrame()
      parts.push(f)
      len += f.length
    }
    const buf = new Uint8Array(len)
    let o = 0
    for (const p of parts) {
      buf.set(p, o)
      o += p.length
    }
    c.write(buf)
    sent += k
  }
}

function senderFrame(i: number, op: number, b: Uint8Array, s: number, e: number) {
  if (op !== OP_TEXT || outstanding.size === 0) return
  const isAck = startsWith(b, s, e, ACK)
  const isErr = !isAck && startsWith(b, s, e, ERROR)
  if (!isAck && !isErr) return
  const f = JSON.parse(dec.decode(b.subarray(s, e))) as { id?: string; code?: string }
  const t = f.id === undefined ? undefined : outstanding.get(f.id)
  if (t === undefined) return
  outstanding.delete(f.id!)
  if (isAck) {
    acks++
    if (measuring) hist.record(nowUs() - t)
  } else {
    errors++
    note(`error ${f.code}`)
  }
  if (!stopping && ackWindow > 0) sendAcked(i)
}

function sendAcked(i: number) {
  const c = senderConns[i]
  if (!c?.open) return
  const id = String(nextId++)
  outstanding.set(id, nowUs())
  c.write(chatFrame(id))
  sent++
}

// ---- peers: every connection sends and receives ----

let peerWindow = 0
let peerPumpQueued = false

function peerFrame(i: number, op: number, b: Uint8Array, s: number, e: number) {
  memberFrame(i, op, b, s, e)
  if (peerWindow > 0 && !peerPumpQueued) {
    peerPumpQueued = true
    queueMicrotask(peerPump)
  }
}

/**
 * Keeps `peerWindow` messages in flight: a message is in flight until the slowest peer has
 * it. Each freed slot goes to the next peer in turn, so every peer sends its share; frames a
 * pump gives one peer are written together (a window of 32 is at most one frame per peer).
 */
function peerPump() {
  peerPumpQueued = false
  if (stopping || peerWindow === 0) return
  let min = Infinity
  for (let i = 0; i < counts.length; i++) if (conns[i]?.open && counts[i]! < min) min = counts[i]!
  if (min === Infinity) return
  let free = peerWindow - (sent - (min - receivedBase))
  if (free <= 0) return
  const batch = new Map<Conn, Uint8Array[]>()
  while (free-- > 0) {
    const c = conns[rr++ % conns.length]!
    if (!c.open) continue
    let list = batch.get(c)
    if (!list) batch.set(c, (list = []))
    list.push(chatFrame())
    sent++
  }
  for (const [c, list] of batch) {
    if (list.length === 1) c.write(list[0]!)
    else {
      const buf = new Uint8Array(list.reduce((n, f) => n + f.length, 0))
      let o = 0
      for (const f of list) buf.set(f, (o += f.length) - f.length)
      c.write(buf)
    }
  }
}
/** Each peer's count when the flood started (frames received before it are not in flight). */
let receivedBase = 0

// ---- control ----

let progressTimer: ReturnType<typeof setInterval> | undefined

function minCount() {
  let m = Infinity
  for (let i = 0; i < counts.length; i++) if (conns[i]?.open && counts[i]! < m) m = counts[i]!
  return m === Infinity ? 0 : m
}

process.on('message', async (m: Command) => {
  switch (m.cmd) {
    case 'members':
      latency = !!m.latency
      await openMany(m, memberFrame)
      break
    case 'idle':
      await openMany(m)
      break
    case 'senders':
      padTo = m.padTo ?? 0
      bodyLen = m.body ?? 40
      await openMany(m, senderFrame)
      senderConns = conns
      break
    case 'peers':
      padTo = m.padTo ?? 0
      bodyLen = m.body ?? 40
      await openMany(m, peerFrame)
      break
    case 'timing':
      latency = m.on
      break
    case 'peerflood': {
      let min = Infinity
      for (let i = 0; i < counts.length; i++) if (conns[i]?.open && counts[i]! < min) min = counts[i]!
      receivedBase = min === Infinity ? 0 : min
      sent = 0
      peerWindow = m.window
      peerPump()
      break
    }
    case 'progress':
      clearInterval(progressTimer)
      if (m.everyMs > 0) progressTimer = setInterval(() => send({ ev: 'progress', min: minCount() }), m.everyMs)
      break
    case 'flood':
    case 'credit':
      credit = Math.max(credit, m.credit)
      pump()
      break
    case 'pace': {
      const t0 = performance.now()
      const base = sent
      paceTimer = setInterval(
        () => {
          const due = Math.floor(((performance.now() - t0) / 1000) * m.rate) - (sent - base)
          for (let k = 0; k < due && !stopping; k++) {
            const c = senderConns[rr++ % senderConns.length]!
            if (c.open) c.write(chatFrame())
            sent++
          }
        },
        Math.max(1, Math.min(10, Math.floor(1000 / m.rate))),
      )
      break
    }
    case 'acked':
      ackWindow = m.window
      for (let i = 0; i < senderConns.length; i++) for (let k = 0; k < m.window; k++) sendAcked(i)
      break
    case 'start':
      hist.reset()
      snap = { chat: chatTotal, frames, sent, acks, errors, closes }
      startedAt = performance.now()
      measuring = true
      break
    case 'stop':
      measuring = false
      send({
        ev: 'stats',
        frames: frames - snap.frames,
        chat: chatTotal - snap.chat,
        sent: sent - snap.sent,
        acks: acks - snap.acks,
        errors: errors - snap.errors,
        closes: closes - snap.closes,
        reasons: [...reasons],
        hist: hist.n ? hist.toJSON() : undefined,
        ms: performance.now() - startedAt,
        totals: { sent, acks, errors, outstanding: outstanding.size },
      })
      break
    case 'halt': // stop generating; sockets stay open for a next phase
      credit = sent
      ackWindow = 0
      peerWindow = 0
      clearInterval(paceTimer)
      break
    case 'exit':
      stopping = true
      clearInterval(paceTimer)
      clearInterval(progressTimer)
      for (const c of conns) c?.close()
      setTimeout(() => process.exit(0), 200)
      break
  }
})
