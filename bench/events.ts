/**
 * What a change costs next to a message: server CPU per event for chat, edit, react, unreact,
 * vote (v4: every sender's vote on one poll, replaced each time, tallied by the sequencer) and delete, each phase a flood of one kind of event into one room with members, every event an
 * ack'd request (a window of them in flight per sender).
 *
 *   bun run bench/events.ts [--events=30000] [--members=10] [--senders=10] [--window=32] [--engines=memory,redis]
 *
 * Every kind is one sequenced event of the room (one append, one frame encoded once, one native
 * publish): no per-member work. So the CPU per event should be about the chat message's, plus the
 * check against the message's state. Prints a Markdown table and writes nothing else.
 * `HISTORY_LIMIT` is set to the event count, so that every message of the chat phase is still
 * in the room's recent state when the later phases change it (without PostgreSQL a change to a
 * message older than twice that limit is `not_found`).
 */
import { cpuSeconds, startServer } from './lib/proc'

const arg = (k: string, d: string) => process.argv.find((a) => a.startsWith(`--${k}=`))?.split('=')[1] ?? d
const EVENTS = Number(arg('events', '30000'))
const MEMBERS = Number(arg('members', '10'))
const SENDERS = Number(arg('senders', '10'))
const WINDOW = Number(arg('window', '32'))
const ENGINES = arg('engines', 'memory,redis').split(',')
const ROOM = 'events-bench'

type Kind = 'chat' | 'edit' | 'react' | 'unreact' | 'vote' | 'delete'
const KINDS: Kind[] = ['chat', 'edit', 'react', 'unreact', 'vote', 'delete']

interface Sock {
  ws: WebSocket
  received: number
  onAck?: (f: { id: string; msg?: string; seq?: number; type: string; code?: string; message?: string }) => void
}

function open(url: string, answers: boolean): Promise<Sock> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url)
    const s: Sock = { ws, received: 0 }
    ws.onmessage = (e) => {
      const text = e.data as string
      s.received++
      // Only a sender looks into a frame, and only into its answers.
      if (answers && (text.startsWith('{"type":"ack"') || text.startsWith('{"type":"error"'))) s.onAck?.(JSON.parse(text))
    }
    ws.onerror = () => reject(new Error(`could not connect to ${url}`))
    ws.onopen = () => resolve(s)
  })
}

async function join(s: Sock) {
  const done = new Promise<void>((resolve) => {
    const prev = s.ws.onmessage!
    s.ws.onmessage = (e) => {
      const t = String(e.data)
      if (t.startsWith('{"type":"joined"') && t.includes(`"room":"${ROOM}"`)) {
        s.ws.onmessage = prev
        resolve()
      }
    }
  })
  s.ws.send(JSON.stringify({ type: 'join', room: ROOM }))
  await done
}

/** Sends `frames` (one per index) with at most WINDOW unanswered; resolves with the acks' msg ids. */
function flood(s: Sock, phase: string, count: number, frame: (i: number, id: string) => object): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const msgs: string[] = new Array(count)
    let next = 0
    let done = 0
    const send = () => {
      const i = next++
      // Ids unique per phase: a chat id seen before would be answered as a retry.
      s.ws.send(JSON.stringify(frame(i, `${phase}-${i}`)))
    }
    s.onAck = (f) => {
      if (f.type === 'error') return reject(new Error(`${f.code}: ${f.message}`))
      msgs[Number(f.id.slice(f.id.indexOf('-') + 1))] = f.msg!
      done++
      if (next < count) send()
      else if (done === count) resolve(msgs)
    }
    for (let i = 0; i < Math.min(WINDOW, count); i++) send()
  })
}

async function measure(engine: string, env: Record<string, string>) {
  const started = await startServer('chat', {
    RATE_LIMIT_PER_SEC: '0',
    LOG_LEVEL: 'info',
    ENABLE_DEMO: 'false',
    MAX_BUFFERED_BYTES: String(256 << 20),
    HISTORY_LIMIT: String(EVENTS),
    ...env,
  })
  if (!started.ok) throw new Error(`${engine}: server did not start: ${started.stderr}`)
  const { server } = started
  const url = (u: string) => `ws://127.0.0.1:${server.port}/ws?user=${u}`
  try {
    const members = await Promise.all(Array.from({ length: MEMBERS }, (_, i) => open(url(`m${i}`), false)))
    const senders = await Promise.all(Array.from({ length: SENDERS }, (_, i) => open(url(`s${i}`), true)))
    for (const s of [...members, ...senders]) await join(s)
    const per = Math.floor(EVENTS / SENDERS)
    // Warm-up (not measured): the first phase would otherwise carry the JIT's work.
    await Promise.all(
      senders.map((s) => flood(s, 'warm', Math.min(per, 1000), (i, id) => ({ type: 'chat', room: ROOM, body: `warm-up ${i}`, id }))),
    )
    for (let i = 0; i < 100 && members.some((m) => m.received < Math.min(per, 1000) * SENDERS); i++) await Bun.sleep(10)
    // The poll of the vote phase (not measured): every sender votes on it, each vote replacing the last.
    const [poll] = await flood(senders[0]!, 'poll', 1, (_, id) => ({
      type: 'chat',
      room: ROOM,
      body: 'the bench poll',
      poll: { question: 'which?', options: ['a', 'b', 'c'] },
      id,
    }))
    const own: string[][] = senders.map(() => [])
    const rows: { kind: Kind; events: number; seconds: number; cpu: number; delivered: number }[] = []
    for (const kind of KINDS) {
      const before = members.reduce((n, m) => n + m.received, 0)
      const cpu0 = cpuSeconds(server.pid)
      const t0 = performance.now()
      const acks = await Promise.all(
        senders.map((s, k) =>
          flood(s, kind, per, (i, id) => {
            const msg = own[k]![i]!
            if (kind === 'chat') return { type: 'chat', room: ROOM, body: `message ${i} of sender ${k}`, id }
            if (kind === 'edit') return { type: 'edit', room: ROOM, msg, body: `message ${i} of sender ${k}, edited`, id }
            if (kind === 'react' || kind === 'unreact') return { type: kind, room: ROOM, msg, reaction: '👍', id }
            // Alternating options: each vote changes the sender's vote (a repeat would append nothing).
            if (kind === 'vote') return { type: 'vote', room: ROOM, msg: poll, options: [i % 2], id }
            return { type: 'delete', room: ROOM, msg, id }
          }),
        ),
      )
      const seconds = (performance.now() - t0) / 1000
      const cpu = cpuSeconds(server.pid) - cpu0
      if (kind === 'chat') acks.forEach((a, k) => (own[k] = a))
      // Let the last frames reach the members before counting them.
      const want = before + MEMBERS * per * SENDERS
      for (let i = 0; i < 200 && members.reduce((n, m) => n + m.received, 0) < want; i++) await Bun.sleep(10)
      rows.push({ kind, events: per * SENDERS, seconds, cpu, delivered: members.reduce((n, m) => n + m.received, 0) - before })
    }
    for (const s of [...members, ...senders]) s.ws.close()
    return rows
  } finally {
    await server.stop()
  }
}

export interface EventRow {
  engine: string
  kind: Kind
  events: number
  eventsPerS: number
  cpuUsPerEvent: number
  vsChat: number
  delivered: number
  expected: number
}

/** Every engine's phases; `table` is the Markdown the bench prints. */
export async function eventsBench(): Promise<{ rows: EventRow[]; table: string }> {
  const rows: EventRow[] = []
  const out: string[] = []
  out.push(
    `${EVENTS} events of each kind, ${SENDERS} senders (window ${WINDOW}), ${MEMBERS} members besides them, one room; load average ${(await Bun.file('/proc/loadavg').text()).split(' ').slice(0, 3).join(' ')} at start`,
  )
  out.push('')
  out.push('| engine | event | events/s | server CPU µs per event | vs chat | delivered to members / expected |')
  out.push('|---|---|---:|---:|---:|---:|')
  for (const engine of ENGINES) {
    const env: Record<string, string> =
      engine === 'redis' ? { REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: `bench-events-${Date.now().toString(36)}:` } : {}
    try {
      const phases = await measure(engine, env)
      const chat = (phases[0]!.cpu / phases[0]!.events) * 1e6
      for (const r of phases) {
        const us = (r.cpu / r.events) * 1e6
        const row: EventRow = {
          engine,
          kind: r.kind,
          events: r.events,
          eventsPerS: Math.round(r.events / r.seconds),
          cpuUsPerEvent: Number(us.toFixed(1)),
          vsChat: Number((us / chat).toFixed(2)),
          delivered: r.delivered,
          expected: r.events * MEMBERS,
        }
        rows.push(row)
        out.push(
          `| ${engine} | ${r.kind} | ${row.eventsPerS.toLocaleString('en')} | ${us.toFixed(1)} | ${row.vsChat.toFixed(2)} | ${r.delivered.toLocaleString('en')} / ${row.expected.toLocaleString('en')} |`,
        )
      }
    } finally {
      if (engine === 'redis') {
        const { default: Redis } = await import('ioredis')
        const r = new Redis('redis://127.0.0.1:6379')
        const keys = await r.keys(`${env.REDIS_PREFIX}*`)
        if (keys.length) await r.del(...keys)
        r.disconnect()
      }
    }
  }
  return { rows, table: out.join('\n') }
}

if (import.meta.main) console.log((await eventsBench()).table)
