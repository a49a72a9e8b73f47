/**
 * What a delivery to a Pusher subscriber costs next to one to a chat-server client: one room,
 * N receivers of one face (then of the other, then N of each), one chat-server sender flooding
 * chat messages (a window of acks in flight). Prints deliveries/s and server CPU per delivery
 * for each face, and the Pusher/chat-server ratio.
 *
 *   bun run bench/pusher.ts [--n=200] [--messages=2000] [--window=32]
 *
 * A Pusher subscriber's frame is made once per message (the chat frame wrapped as the `chat`
 * event of the channel, src/pusher) and published once on Bun's `p:<room>` topic, so the
 * extra cost should be one encode per message, not per subscriber.
 */
import { cpuSeconds, startServer } from './lib/proc'

const arg = (k: string, d: string) => process.argv.find((a) => a.startsWith(`--${k}=`))?.split('=')[1] ?? d
const N = Number(arg('n', '200'))
const MESSAGES = Number(arg('messages', '2000'))
const WINDOW = Number(arg('window', '32'))
const ROOM = 'pusher-bench'
const KEY = 'bench-key'

interface Receiver {
  ws: WebSocket
  got: number
}

function open(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url)
    ws.onerror = () => reject(new Error(`could not connect to ${url}`))
    ws.onopen = () => resolve(ws)
  })
}

/** A chat-server client in the room; counts chat frames once joined. */
async function chatReceiver(port: number, i: number): Promise<Receiver> {
  const ws = await open(`ws://127.0.0.1:${port}/ws?user=c${i}`)
  const r: Receiver = { ws, got: 0 }
  await new Promise<void>((resolve) => {
    ws.onmessage = (e) => {
      const t = e.data as string
      if (t.startsWith('{"type":"joined"') && t.includes(ROOM)) resolve()
      else if (t.startsWith('{"type":"chat"')) r.got++
    }
    ws.send(JSON.stringify({ type: 'join', room: ROOM }))
  })
  return r
}

/** A Pusher client (the protocol as pusher-js speaks it) subscribed to the channel; counts `chat` events. */
async function pusherReceiver(port: number): Promise<Receiver> {
  const ws = await open(`ws://127.0.0.1:${port}/app/${KEY}?protocol=7&client=js&version=8.6.0`)
  const r: Receiver = { ws, got: 0 }
  await new Promise<void>((resolve) => {
    ws.onmessage = (e) => {
      const t = e.data as string
      if (t.startsWith('{"event":"chat"')) r.got++
      else if (t.startsWith('{"event":"pusher:connection_established"'))
        ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: ROOM } }))
      else if (t.startsWith('{"event":"pusher_internal:subscription_succeeded"')) resolve()
    }
  })
  return r
}

async function flood(sender: WebSocket, count: number, tag: string) {
  await new Promise<void>((resolve) => {
    let sent = 0
    let acked = 0
    const send = () =>
      sender.send(JSON.stringify({ type: 'chat', room: ROOM, body: `bench message ${tag} ${sent}`, id: `${tag}-${sent++}` }))
    sender.onmessage = (e) => {
      if (!(e.data as string).startsWith('{"type":"ack"')) return
      acked++
      if (sent < count) send()
      else if (acked === count) resolve()
    }
    for (let i = 0; i < Math.min(WINDOW, count); i++) send()
  })
}

async function phase(name: string, chatN: number, pusherN: number) {
  const started = await startServer('chat', {
    RATE_LIMIT_PER_SEC: '0',
    LOG_LEVEL: 'info',
    ENABLE_DEMO: 'false',
    MAX_BUFFERED_BYTES: String(256 << 20),
    PUSHER_APP_ID: 'bench',
    PUSHER_KEY: KEY,
    PUSHER_SECRET: 'bench-secret-0123456789',
  })
  if (!started.ok) throw new Error(`server did not start: ${started.stderr}`)
  const { server } = started
  try {
    const chat: Receiver[] = []
    const pusher: Receiver[] = []
    for (let i = 0; i < chatN; i++) chat.push(await chatReceiver(server.port, i))
    for (let i = 0; i < pusherN; i++) pusher.push(await pusherReceiver(server.port))
    const sender = await open(`ws://127.0.0.1:${server.port}/ws?user=sender`)
    await new Promise<void>((resolve) => {
      sender.onmessage = (e) => (e.data as string).startsWith('{"type":"joined"') && resolve()
      sender.send(JSON.stringify({ type: 'join', room: ROOM }))
    })
    const total = () => [chat.reduce((n, r) => n + r.got, 0), pusher.reduce((n, r) => n + r.got, 0)] as const
    // Warm-up (not measured): the JIT's first work would land on whichever face comes first.
    await flood(sender, Math.min(500, MESSAGES), 'warm')
    const want = (chatN + pusherN) * Math.min(500, MESSAGES)
    for (let i = 0; i < 300 && total()[0] + total()[1] < want; i++) await Bun.sleep(10)
    const [c0, p0] = total()
    const cpu0 = cpuSeconds(server.pid)
    const t0 = performance.now()
    await flood(sender, MESSAGES, 'run')
    const target = (chatN + pusherN) * MESSAGES
    for (let i = 0; i < 1000 && total()[0] - c0 + total()[1] - p0 < target; i++) await Bun.sleep(5)
    const seconds = (performance.now() - t0) / 1000
    const cpu = cpuSeconds(server.pid) - cpu0
    const [c1, p1] = total()
    for (const r of [...chat, ...pusher]) r.ws.close()
    sender.close()
    return { name, chatN, pusherN, seconds, cpu, chat: c1 - c0, pusher: p1 - p0, expected: target }
  } finally {
    await server.stop()
  }
}

const rows = [await phase('chat-server only', N, 0), await phase('Pusher only', 0, N), await phase('both', N, N)]
console.log(`\n${MESSAGES} chat messages into one room, ${N} receivers per face (server CPU per delivery)\n`)
console.log('| phase | chat-server deliveries | Pusher deliveries | deliveries/s | server CPU µs/delivery |')
console.log('|---|---:|---:|---:|---:|')
for (const r of rows) {
  const d = r.chat + r.pusher
  console.log(`| ${r.name} | ${r.chat} | ${r.pusher} | ${Math.round(d / r.seconds)} | ${((r.cpu / d) * 1e6).toFixed(2)} |`)
}
const [chatOnly, pusherOnly, both] = rows as [(typeof rows)[0], (typeof rows)[0], (typeof rows)[0]]
const per = (r: typeof chatOnly) => r.cpu / (r.chat + r.pusher)
console.log(
  `\nPusher / chat-server, CPU per delivery: ${(per(pusherOnly) / per(chatOnly)).toFixed(2)}; deliveries/s: ${(pusherOnly.pusher / pusherOnly.seconds / (chatOnly.chat / chatOnly.seconds)).toFixed(2)}`,
)
console.log(
  `both faces at once: ${both.chat} + ${both.pusher} of ${both.expected} expected, ${(per(both) / per(chatOnly)).toFixed(2)}x chat-only CPU per delivery`,
)
for (const r of rows)
  if (r.chat + r.pusher < r.expected) console.log(`warning: ${r.name}: ${r.chat + r.pusher} of ${r.expected} deliveries arrived`)
