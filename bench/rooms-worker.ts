/**
 * A process of the many-rooms generator (bench/lib/rooms.ts openRooms), driven over IPC: it
 * opens every member of the rooms it is given on raw TCP (bench/lib/ws.ts: a TCP chunk of many
 * frames costs one callback, a frame a header parse, where Bun's WebSocket client makes a
 * MessageEvent and a string of each), then sends from member 0 of each room: flooded (`window`
 * acked sends in flight per sender) or paced (a rate, round-robin over its senders, catching up
 * when a tick is late), timing send → ack. Its CPU is read from /proc by the orchestrator.
 */
import { Histogram } from './lib/histogram'
import type { SparseHistogram } from './lib/histogram'
import { connectWs, encodeFrame, OP_CLOSE, OP_TEXT, startsWith } from './lib/ws'
import type { Conn } from './lib/ws'

export type RoomsCommand =
  /** Opens member m of room r (`[r, size]` each) on node (r + m) mod ports, as user `u<r>-<m>`, in room `<prefix>-<r>`. */
  /** `jwtSecret`: each member connects with an HS256 token of its own, allowed into its room only. */
  | { cmd: 'open'; ports: number[]; rooms: [number, number][]; prefix: string; jwtSecret?: string }
  | { cmd: 'flood'; window: number }
  | { cmd: 'pace'; rate: number }
  /** Counts and send → ack times from now on, until `stop`. */
  | { cmd: 'start' }
  | { cmd: 'stop' }
  /** Stops sending and waits (≤ 5 s) for what is in flight. */
  | { cmd: 'halt' }
  | { cmd: 'exit' }

export type RoomsEvent =
  | { ev: 'opened'; sockets: number; senders: number; error?: string }
  | { ev: 'stats'; acked: number; delivered: number; errors: number; sent: number; hist: SparseHistogram }
  | { ev: 'halted'; unanswered: number }

const enc = new TextEncoder()
const dec = new TextDecoder()
const JOINED = enc.encode('{"type":"joined"')
const CHAT = enc.encode('{"type":"chat"')
const ACK = enc.encode('{"type":"ack"')
const ERROR = enc.encode('{"type":"error"')
const ID_J = enc.encode('"id":"j"')
const ID_M = enc.encode('"id":"m')
const BODY = 'x'.repeat(40)
/** Handshakes in progress at a time. */
const RAMP = 200

const reply = (e: RoomsEvent) => process.send!(e)

interface Sender {
  conn: Conn
  room: string
  inflight: number
}

const stats = { acked: 0, delivered: 0, errors: 0, sent: 0 }
let base = { ...stats }
const ack = new Histogram()
const sentAt = new Map<number, number>()
const conns: Conn[] = []
const senders: Sender[] = []
let mode: 'off' | 'flood' | 'pace' = 'off'
let nextId = 0
let ticker: ReturnType<typeof setInterval> | undefined

function send(s: Sender) {
  s.inflight++
  stats.sent++
  const id = ++nextId
  sentAt.set(id, performance.now())
  s.conn.write(encodeFrame(`{"type":"chat","room":"${s.room}","body":"${BODY}","id":"m${id}"}`))
}

/** Where `needle` starts in buf[start, end), or -1. */
function find(buf: Uint8Array, start: number, end: number, needle: Uint8Array): number {
  const first = needle[0]!
  for (let i = buf.indexOf(first, start); i >= 0 && i + needle.length <= end; i = buf.indexOf(first, i + 1))
    if (startsWith(buf, i, end, needle)) return i
  return -1
}

/** The number of a `"id":"m<n>"` in the frame (the generator's own ids), or -1. */
function sentId(buf: Uint8Array, start: number, end: number): number {
  const i = find(buf, start, end, ID_M)
  if (i < 0) return -1
  let v = 0
  for (let k = i + ID_M.length; k < end; k++) {
    const c = buf[k]!
    if (c === 34 /* " */) return v
    v = v * 10 + (c - 48)
  }
  return -1
}

function answered(s: Sender, buf: Uint8Array, start: number, end: number, isAck: boolean) {
  const id = sentId(buf, start, end)
  const t = sentAt.get(id)
  if (t === undefined) return
  sentAt.delete(id)
  s.inflight--
  if (isAck) {
    stats.acked++
    ack.record((performance.now() - t) * 1000)
  } else stats.errors++
  if (mode === 'flood') send(s)
}

/**
 * Opens one member; resolves once its join is answered. A socket closed or silent for 20 s
 * before that is retried once (on a busy machine a join can be lost in the crowd), then
 * rejects with what it last saw.
 */
const b64url = (x: string | ArrayBuffer) => Buffer.from(x as string).toString('base64url')

/** An HS256 JWT for `user`, whose `rooms` rule keeps it out of the default room (whose presence would reach every socket). */
export function memberToken(secret: string, user: string, room: string): string {
  const body = `${b64url('{"alg":"HS256","typ":"JWT"}')}.${b64url(JSON.stringify({ sub: user, name: user, rooms: [room] }))}`
  return `${body}.${new Bun.CryptoHasher('sha256', secret).update(body).digest('base64url')}`
}
let jwtSecret: string | undefined

function openMember(port: number, node: number, room: string, user: string, sender: boolean, retry = true): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let state = 'connecting'
    let joined = false
    let settled = false
    const me: Sender = { conn: undefined as unknown as Conn, room, inflight: 0 }
    const fail = (why: string) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      me.conn.close()
      if (retry) openMember(port, node, room, user, sender, false).then(resolve, reject)
      else reject(new Error(`${user} on node ${node} (port ${port}), ${state}: ${why}`))
    }
    const timer = setTimeout(() => fail('no answer to join within 20 s'), 20_000)
    me.conn = connectWs({
      host: '127.0.0.1',
      port,
      path: jwtSecret ? `/ws?token=${memberToken(jwtSecret, user, room)}` : `/ws?user=${user}&name=${user}`,
      onUpgrade: (c) => {
        if (settled) return c.close() // given up on (timed out) before it connected
        state = 'open, join sent'
        c.write(encodeFrame(`{"type":"join","room":"${room}","id":"j"}`))
      },
      onClose: (why) => fail(why),
      onFrame: (op, b, s, e) => {
        if (op !== OP_TEXT) {
          if (op === OP_CLOSE && !joined) fail(`close frame ${(b[s]! << 8) | b[s + 1]!}`)
          return
        }
        if (startsWith(b, s, e, CHAT)) stats.delivered++
        else if (startsWith(b, s, e, ACK) || startsWith(b, s, e, ERROR)) {
          if (!joined) {
            if (find(b, s, e, ID_J) >= 0) fail(`join refused: ${dec.decode(b.subarray(s, Math.min(e, s + 200)))}`)
            return
          }
          answered(me, b, s, e, b[s + 9] === 97 /* a */)
        } else if (!joined && startsWith(b, s, e, JOINED) && find(b, s, e, ID_J) >= 0) {
          joined = settled = true
          clearTimeout(timer)
          conns.push(me.conn)
          if (sender) senders.push(me)
          resolve()
        }
      },
    })
  })
}

async function open(c: Extract<RoomsCommand, { cmd: 'open' }>) {
  jwtSecret = c.jwtSecret
  const all: [number, number, string, string, boolean][] = []
  for (const [r, size] of c.rooms)
    for (let m = 0; m < size; m++)
      all.push([c.ports[(r + m) % c.ports.length]!, (r + m) % c.ports.length, `${c.prefix}-${r}`, `u${r}-${m}`, m === 0])
  let next = 0
  const lane = async () => {
    while (next < all.length) {
      const [port, node, room, user, sender] = all[next++]!
      await openMember(port, node, room, user, sender)
    }
  }
  try {
    await Promise.all(Array.from({ length: Math.min(RAMP, all.length) }, lane))
    reply({ ev: 'opened', sockets: conns.length, senders: senders.length })
  } catch (err) {
    reply({ ev: 'opened', sockets: conns.length, senders: senders.length, error: (err as Error).message })
  }
}

function pace(rate: number) {
  mode = 'pace'
  const t0 = performance.now()
  let due = 0
  let next = 0
  // Every 5 ms, what is due since the start: a late tick catches up instead of drifting.
  ticker = setInterval(() => {
    const target = Math.floor(((performance.now() - t0) / 1000) * rate)
    for (; due < target && senders.length; due++) send(senders[next++ % senders.length]!)
  }, 5)
}

async function halt() {
  mode = 'off'
  clearInterval(ticker)
  ticker = undefined
  const end = Date.now() + 5000
  while (senders.some((s) => s.inflight > 0) && Date.now() < end) await Bun.sleep(20)
  reply({ ev: 'halted', unanswered: senders.reduce((n, s) => n + Math.max(0, s.inflight), 0) })
}

process.on('message', (m: RoomsCommand) => {
  switch (m.cmd) {
    case 'open':
      return void open(m)
    case 'flood':
      mode = 'flood'
      for (const s of senders) for (let i = 0; i < m.window; i++) send(s)
      return
    case 'pace':
      return pace(m.rate)
    case 'start':
      base = { ...stats }
      ack.reset()
      return
    case 'stop':
      return reply({
        ev: 'stats',
        acked: stats.acked - base.acked,
        delivered: stats.delivered - base.delivered,
        errors: stats.errors - base.errors,
        sent: stats.sent - base.sent,
        hist: ack.toJSON(),
      })
    case 'halt':
      return void halt()
    case 'exit':
      mode = 'off'
      clearInterval(ticker)
      for (const c of conns) c.close()
      setTimeout(() => process.exit(0), 200)
  }
})
