/**
 * A process of the connections generator (bench/connections.ts), driven over IPC. Its sockets
 * are raw TCP (bench/lib/ws.ts), spread over the addresses 127.0.0.1–127.0.0.8 in turn: 19 000
 * sockets closed and reopened on one address pair would want more ephemeral ports than there are,
 * with the closed ones in TIME_WAIT. `spread: 'dst'` (the default) connects to the address (the
 * server listens on all of them); `'src'` binds it as the source, which makes the kernel search
 * the port range at each bind(): past about twice the range (~57 000 sockets here) that search
 * was most of the generators' time. A process stays under the 20 000 open files a process may have here.
 *
 * Per socket it keeps the default room's `epoch` and the highest chat `seq` seen, so that after
 * the storm it resumes with `join {since, epoch}`, and counts how many times each seq of the
 * storm window arrived (live or replayed): every acked message must arrive exactly once.
 * Frames are counted, and a frame whose body holds `~<µs>~` (a broadcast) gives a latency.
 */
import { Histogram } from './lib/histogram'
import type { SparseHistogram } from './lib/histogram'
import { connectWs, encodeFrame, nowUs, OP_TEXT, stampOf, startsWith } from './lib/ws'
import type { Conn } from './lib/ws'

/** How sockets are spread over the loopback addresses: to them (dst) or from them (src). */
export type Spread = 'dst' | 'src'
let spread: Spread = 'dst'
/** Where a socket of `address` connects to, and from. */
const target = (address: string) => (spread === 'dst' ? { host: address } : { host: '127.0.0.1', localAddress: address })

export type ConnCommand =
  /** Opens users `<prefix><i>` for i in [from, from + count), socket i to ports[i mod ports] from addresses[i mod addresses], `inflight` handshakes at a time. */
  | { cmd: 'open'; ports: number[]; addresses: string[]; spread: Spread; prefix: string; from: number; count: number; inflight: number }
  | { cmd: 'count' }
  /** From now on counts, per socket, the arrivals of seqs base … base + window - 1 (before the senders start). */
  | { cmd: 'watch'; base: number; window: number }
  /** Closes every socket at once, then reopens each, resuming with `join {since, epoch}`. */
  | { cmd: 'storm'; inflight: number; timeoutS: number; attemptS: number }
  /** Senders (users `<prefix><i>`, kept out of the storm): `rate` chats a second in all, round-robin. */
  | { cmd: 'senders'; ports: number[]; addresses: string[]; spread: Spread; prefix: string; count: number }
  /** `rate` chats a second in all, at most `max` of them (the storm window counts no more). */
  | { cmd: 'send'; rate: number; max: number }
  | { cmd: 'unsend' }
  /** How often each acked seq arrived at each socket. */
  | { cmd: 'check'; seqs: number[] }
  | { cmd: 'bcast-start' }
  | { cmd: 'bcast-stop' }
  | { cmd: 'exit' }

export type ConnEvent =
  | { ev: 'opened'; open: number; failed: number; retries: number; retryReasons: string[]; reasons: string[] }
  | { ev: 'counted'; frames: number; framesOfReady: number; bytes: number; ready: number; maxSeq: number }
  | {
      ev: 'stormed'
      resumed: number
      /** Answered `recovered: false`: further behind than the server keeps (they would page `history`). */
      unrecovered: number
      failed: number
      retries: number
      retryReasons: string[]
      reasons: string[]
      lastMs: number
      p50Ms: number
      p99Ms: number
    }
  | { ev: 'sending' }
  | { ev: 'watching' }
  | { ev: 'unsent'; acked: number[]; sent: number; errors: number }
  | {
      ev: 'checked'
      sockets: number
      expected: number
      missing: number
      duplicates: number
      socketsWithLoss: number
      /** Of those, sockets the server closed after they resumed (not reopened here: a slow consumer's 4008, say). */
      closedWithLoss: number
      /** Of those, open sockets resumed `recovered: true` missing a seq below one they got (not a late delivery). */
      withHoles: number
    }
  | { ev: 'bcast'; received: number; hist: SparseHistogram }

const enc = new TextEncoder()
const dec = new TextDecoder()
const WELCOME = enc.encode('{"type":"welcome"')
const JOINED = enc.encode('{"type":"joined"')
const CHAT = enc.encode('{"type":"chat"')
const ACK = enc.encode('{"type":"ack"')
const ERROR = enc.encode('{"type":"error"')
const ID_J = enc.encode('"id":"j"')
const NOT_RECOVERED = enc.encode('"recovered":false')
const SEQ = enc.encode('"seq":')
const EPOCH = enc.encode('"epoch":"')
const ROOM = 'general'

const reply = (e: ConnEvent) => process.send!(e)

interface Client {
  user: string
  port: number
  address: string
  conn?: Conn
  /** welcome and the default room's joined (first connect), or the answer to the resuming join (storm). */
  ready: boolean
  epoch: string
  lastSeq: number
  /** Its last resume was answered `recovered: false` (it would page `history`). */
  unrecovered?: boolean
  /** Arrivals of seq base + k in the storm window. */
  seen?: Uint8Array
}

const clients: Client[] = []
const count = { frames: 0, framesOfReady: 0, bytes: 0 }
let maxSeq = 0
/** Connects tried again after a refusal, a close or silence (since the last `opened` / `stormed`). */
let retries = 0
/** Resumes answered `recovered: false` in the last storm. */
let unrecovered = 0
let retryReasons: string[] = []
/** How long a client waits for its answer before it closes and tries again (a real client's patience). */
let attemptS = 30
let base = 0
const bcast = new Histogram()
let bcastReceived = 0

/** Where `needle` starts in buf[start, end), or -1. */
function find(buf: Uint8Array, start: number, end: number, needle: Uint8Array): number {
  const first = needle[0]!
  for (let i = buf.indexOf(first, start); i >= 0 && i + needle.length <= end; i = buf.indexOf(first, i + 1))
    if (startsWith(buf, i, end, needle)) return i
  return -1
}

/** The integer after `"seq":` in the frame, or -1. */
function seqOf(buf: Uint8Array, start: number, end: number): number {
  const i = find(buf, start, end, SEQ)
  if (i < 0) return -1
  let v = 0
  for (let k = i + SEQ.length; k < end; k++) {
    const c = buf[k]!
    if (c < 48 || c > 57) return v
    v = v * 10 + (c - 48)
  }
  return -1
}

function epochOf(buf: Uint8Array, start: number, end: number): string {
  const i = find(buf, start, end, EPOCH)
  if (i < 0) return ''
  const from = i + EPOCH.length
  const to = buf.indexOf(34, from)
  return to < 0 || to > end ? '' : dec.decode(buf.subarray(from, to))
}

/**
 * Connects one client and resolves when it is ready: on a first connect `welcome` and the
 * default room's `joined`; when resuming, the answer to its `join {since, epoch}` (after the
 * replay). Refused, closed or silent for `timeoutMs`: retried after a pause until the deadline,
 * then rejected with what it last saw.
 */
function connect(c: Client, resume: boolean, deadline: number, attempt = 0): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let settled = false
    let state = 'connecting'
    let welcomed = false
    /** Chat seqs this attempt received before it was ready: undone if it fails (the next attempt replays them again). */
    const got: number[] = []
    const fail = (why: string) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      for (const seq of got) if (c.seen && seq >= base && seq - base < c.seen.length) c.seen[seq - base]!--
      if (retryReasons.length < 3) retryReasons.push(`${state}: ${why}`)
      c.conn?.close()
      c.conn = undefined
      const pause = Math.min(2000, 100 * 2 ** attempt)
      retries++
      if (Date.now() + pause < deadline) setTimeout(() => connect(c, resume, deadline, attempt + 1).then(resolve, reject), pause)
      else reject(new Error(`${c.user} via ${c.address}, ${state}: ${why}`))
    }
    const timer = setTimeout(() => fail(`no answer within ${attemptS} s`), Math.max(100, Math.min(attemptS * 1000, deadline - Date.now())))
    const done = () => {
      settled = true
      clearTimeout(timer)
      // What it resumes from next time: the highest seq seen once the replay is complete, never
      // a live one that came before the replay (that would skip the replay's gap).
      for (const seq of got) if (seq > c.lastSeq) c.lastSeq = seq
      c.ready = true
      resolve()
    }
    c.ready = false
    const conn = connectWs({
      ...target(c.address),
      port: c.port,
      path: `/ws?user=${c.user}&name=${c.user}`,
      onUpgrade: () => {
        if (settled) return conn.close()
        state = 'open'
      },
      onClose: (why) => {
        if (!settled) return fail(why)
        // A socket closed once ready (or an earlier attempt's, closing late) touches only its own state.
        if (c.conn === conn) {
          c.conn = undefined
          c.ready = false
        }
      },
      onFrame: (op, b, s, e) => {
        // An attempt that failed was undone: what its socket still delivers while it closes is not counted.
        if (op !== OP_TEXT || (settled && c.conn !== conn)) return
        count.frames++
        count.bytes += e - s
        if (c.ready) count.framesOfReady++
        if (startsWith(b, s, e, CHAT)) {
          const seq = seqOf(b, s, e)
          if (!c.ready) got.push(seq)
          else if (seq > c.lastSeq) c.lastSeq = seq
          if (seq > maxSeq) maxSeq = seq
          if (c.seen && seq >= base && seq - base < c.seen.length) c.seen[seq - base]!++
          const stamp = stampOf(b, s, e)
          if (stamp > 0) {
            bcastReceived++
            bcast.record(Math.max(0, nowUs() - stamp))
          }
          return
        }
        if (c.ready) return
        if (startsWith(b, s, e, WELCOME)) {
          welcomed = true
          state = 'welcomed'
          if (resume) {
            state = 'welcomed, resuming'
            conn.write(encodeFrame(`{"type":"join","room":"${ROOM}","since":${c.lastSeq},"epoch":"${c.epoch}","id":"j"}`))
          }
        } else if (startsWith(b, s, e, JOINED)) {
          const isAnswer = find(b, s, e, ID_J) >= 0
          if (!resume && welcomed && !isAnswer) {
            c.epoch = epochOf(b, s, e)
            const seq = seqOf(b, s, e)
            if (seq > c.lastSeq) c.lastSeq = seq
            if (seq > maxSeq) maxSeq = seq
            done()
          } else if (resume && isAnswer) {
            c.unrecovered = find(b, s, e, NOT_RECOVERED) >= 0
            if (c.unrecovered) unrecovered++
            done()
          }
        } else if (startsWith(b, s, e, ERROR)) fail(`error frame: ${dec.decode(b.subarray(s, Math.min(e, s + 200)))}`)
      },
    })
    c.conn = conn
  })
}

/** Runs `task` over `items`, `inflight` at a time; the failures' first reasons. */
async function lanes<T>(items: T[], inflight: number, task: (x: T) => Promise<void>) {
  let next = 0
  let failed = 0
  const reasons: string[] = []
  const lane = async () => {
    while (next < items.length) {
      const x = items[next++]!
      await task(x).catch((err: Error) => {
        failed++
        if (reasons.length < 3) reasons.push(err.message)
      })
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(inflight, items.length)) }, lane))
  return { failed, reasons }
}

async function open(m: Extract<ConnCommand, { cmd: 'open' }>) {
  spread = m.spread
  const fresh: Client[] = []
  for (let i = m.from; i < m.from + m.count; i++)
    fresh.push({
      user: `${m.prefix}${i}`,
      port: m.ports[i % m.ports.length]!,
      address: m.addresses[i % m.addresses.length]!,
      ready: false,
      epoch: '',
      lastSeq: 0,
    })
  const deadline = Date.now() + 120_000
  const r = await lanes(fresh, m.inflight, async (c) => {
    await connect(c, false, deadline)
    clients.push(c)
  })
  reply({ ev: 'opened', open: fresh.length - r.failed, failed: r.failed, retries, retryReasons, reasons: r.reasons })
  retries = 0
  retryReasons = []
}

async function storm(m: Extract<ConnCommand, { cmd: 'storm' }>) {
  retries = 0
  retryReasons = []
  unrecovered = 0
  attemptS = m.attemptS
  for (const c of clients) {
    c.ready = false
    c.conn?.close()
    c.conn = undefined
  }
  const t0 = performance.now()
  const times: number[] = []
  const deadline = Date.now() + m.timeoutS * 1000
  const r = await lanes(clients, m.inflight, async (c) => {
    await connect(c, true, deadline)
    times.push(performance.now() - t0)
  })
  times.sort((a, b) => a - b)
  const at = (p: number) => Math.round(times[Math.min(times.length - 1, Math.floor(p * times.length))] ?? NaN)
  reply({
    ev: 'stormed',
    resumed: times.length,
    unrecovered,
    failed: r.failed,
    retries,
    retryReasons,
    reasons: r.reasons,
    lastMs: Math.round(times[times.length - 1] ?? NaN),
    p50Ms: at(0.5),
    p99Ms: at(0.99),
  })
}

// ---- senders: members of the default room that stay open through the storm ----

interface Sender {
  conn: Conn
}
const senders: Sender[] = []
const acked: number[] = []
let sent = 0
let errors = 0
let ticker: ReturnType<typeof setInterval> | undefined

function openSender(port: number, address: string, user: string): Promise<Sender> {
  return new Promise((resolve, reject) => {
    let ready = false
    const timer = setTimeout(() => reject(new Error(`sender ${user}: not ready within 30 s`)), 30_000)
    const me: Sender = {
      conn: connectWs({
        ...target(address),
        port,
        path: `/ws?user=${user}&name=${user}`,
        onUpgrade: () => {},
        onClose: (why) => !ready && reject(new Error(`sender ${user}: ${why}`)),
        onFrame: (op, b, s, e) => {
          if (op !== OP_TEXT) return
          if (!ready && startsWith(b, s, e, JOINED)) {
            ready = true
            clearTimeout(timer)
            resolve(me)
          } else if (startsWith(b, s, e, ACK)) acked.push(seqOf(b, s, e))
          else if (startsWith(b, s, e, ERROR)) errors++
        },
      }),
    }
  })
}

process.on('message', async (m: ConnCommand) => {
  switch (m.cmd) {
    case 'open':
      return void open(m)
    case 'count':
      return reply({ ev: 'counted', ...count, ready: clients.filter((c) => c.ready).length, maxSeq })
    case 'watch':
      base = m.base
      for (const c of clients) c.seen = new Uint8Array(m.window)
      return reply({ ev: 'watching' })
    case 'storm':
      return void storm(m)
    case 'senders':
      spread = m.spread
      for (let i = 0; i < m.count; i++)
        senders.push(await openSender(m.ports[i % m.ports.length]!, m.addresses[i % m.addresses.length]!, `${m.prefix}${i}`))
      return reply({ ev: 'sending' })
    case 'send': {
      const t0 = performance.now()
      let due = 0
      // Every 10 ms, what is due since the start: a late tick catches up instead of drifting.
      ticker = setInterval(() => {
        const target = Math.min(m.max, Math.floor(((performance.now() - t0) / 1000) * m.rate))
        for (; due < target && senders.length; due++) {
          sent++
          senders[due % senders.length]!.conn.write(encodeFrame(`{"type":"chat","room":"${ROOM}","body":"storm ${due}","id":"m${due}"}`))
        }
      }, 10)
      return
    }
    case 'unsend': {
      clearInterval(ticker)
      const end = Date.now() + 10_000
      while (acked.length + errors < sent && Date.now() < end) await Bun.sleep(20)
      return reply({ ev: 'unsent', acked: [...acked], sent, errors })
    }
    case 'check': {
      let missing = 0
      let duplicates = 0
      let socketsWithLoss = 0
      let closedWithLoss = 0
      let withHoles = 0
      // The last deliveries of a loaded server (or of a starved generator) may still be on their
      // way: wait, bounded, until every open socket has seen the last acked seq.
      const lastAcked = m.seqs.reduce((a, b) => Math.max(a, b), 0)
      const until = Date.now() + 30_000
      while (Date.now() < until && clients.some((c) => c.ready && c.conn && c.lastSeq < lastAcked)) await Bun.sleep(100)
      const counted = clients.filter((c) => c.seen)
      for (const c of counted) {
        let lost = 0
        let firstLost = Infinity
        let lastSeen = -Infinity
        for (const s of m.seqs) {
          const n = c.seen![s - base] ?? 0
          if (n === 0) {
            lost++
            if (s < firstLost) firstLost = s
          } else {
            if (s > lastSeen) lastSeen = s
            if (n > 1) duplicates += n - 1
          }
        }
        missing += lost
        if (lost) socketsWithLoss++
        if (lost && !c.conn) closedWithLoss++
        // A seq missing below one that arrived: a hole, not a delivery still on its way.
        if (lost && c.conn && !c.unrecovered && firstLost < lastSeen) withHoles++
      }
      return reply({
        ev: 'checked',
        sockets: counted.length,
        expected: counted.length * m.seqs.length,
        missing,
        closedWithLoss,
        withHoles,
        duplicates,
        socketsWithLoss,
      })
    }
    case 'bcast-start':
      bcast.reset()
      bcastReceived = 0
      return
    case 'bcast-stop':
      return reply({ ev: 'bcast', received: bcastReceived, hist: bcast.toJSON() })
    case 'exit':
      clearInterval(ticker)
      for (const c of clients) c.conn?.close()
      for (const s of senders) s.conn.close()
      setTimeout(() => process.exit(0), 200)
  }
})
