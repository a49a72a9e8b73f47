/**
 * What Server-Sent Events with POST cost next to /ws, on the same server build in one run:
 *
 * 1. Fan-out: one room of N members (/ws only, SSE only, half and half), one /ws sender
 *    flooding chat messages (a window of acks in flight): deliveries/s and server CPU per delivery.
 * 2. Idle memory: K idle sessions of each face on a fresh server: RSS per session.
 * 3. The POST path: one SSE client sending chat frames, one frame a POST (waiting for each 202)
 *    and batches of B frames a POST, next to one /ws client's frames: server CPU per client frame.
 *
 *   bun run bench/sse.ts [--n=1000] [--messages=500] [--window=32] [--idle=2000] [--frames=2000] [--batch=50]
 *
 * The generator reads SSE streams with fetch; Bun's fetch runs at most 256 requests at once
 * unless BUN_CONFIG_MAX_HTTP_REQUESTS says more, so this file starts itself again with it set.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { cpuSeconds, ROOT, rssBytes, startServer } from './lib/proc'
import type { Server } from './lib/proc'

if (!process.env.BUN_CONFIG_MAX_HTTP_REQUESTS) {
  const p = Bun.spawn([process.execPath, import.meta.path, ...process.argv.slice(2)], {
    env: { ...process.env, BUN_CONFIG_MAX_HTTP_REQUESTS: '65336' },
    stdout: 'inherit',
    stderr: 'inherit',
  })
  process.exit(await p.exited)
}

const arg = (k: string, d: string) => process.argv.find((a) => a.startsWith(`--${k}=`))?.split('=')[1] ?? d
const N = Number(arg('n', '1000'))
const MESSAGES = Number(arg('messages', '500'))
const WINDOW = Number(arg('window', '32'))
const IDLE = Number(arg('idle', '2000'))
const FRAMES = Number(arg('frames', '2000'))
const BATCH = Math.min(100, Math.max(1, Number(arg('batch', '50'))))
const OUT = arg('out', join(ROOT, 'bench/results/sse.json'))
const ROOM = 'sse-bench'
const CHAT = '{"type":"chat"'

const ENV = { RATE_LIMIT_PER_SEC: '0', LOG_LEVEL: 'info', ENABLE_DEMO: 'false', MAX_BUFFERED_BYTES: String(256 << 20) }

async function fresh(): Promise<Server> {
  const started = await startServer('chat', ENV)
  if (!started.ok) throw new Error(`server did not start: ${started.stderr}`)
  return started.server
}

interface Receiver {
  got: number
  close(): void
}

function openWs(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url)
    ws.onerror = () => reject(new Error(`could not connect to ${url}`))
    ws.onopen = () => resolve(ws)
  })
}

/** A /ws member of the room; counts chat frames once joined. */
async function wsReceiver(port: number, user: string, join = true): Promise<Receiver> {
  const ws = await openWs(`ws://127.0.0.1:${port}/ws?user=${user}`)
  const r: Receiver = { got: 0, close: () => ws.close() }
  if (!join) return r
  await new Promise<void>((resolve) => {
    ws.onmessage = (e) => {
      const t = e.data as string
      if (t.startsWith('{"type":"joined"')) resolve()
      else if (t.startsWith(CHAT)) r.got++
    }
    ws.send(JSON.stringify({ type: 'join', room: ROOM }))
  })
  return r
}

/** An SSE session: its stream read with fetch (chat events counted, across chunk edges), frames POSTed. */
async function sseSession(port: number, user: string) {
  const base = `http://127.0.0.1:${port}`
  const abort = new AbortController()
  const res = await fetch(`${base}/sse?user=${user}`, { signal: abort.signal })
  if (res.status !== 200 || !res.body) throw new Error(`sse refused: ${res.status}`)
  const reader = res.body.getReader()
  const decoder = new TextDecoder()
  const s = {
    got: 0,
    session: '',
    /** Set while waiting for a frame that contains this text. */
    waiting: undefined as { text: string; resolve: () => void } | undefined,
    close: () => abort.abort(),
  }
  let carry = ''
  let head = ''
  void (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read()
        if (done) return
        const text = carry + decoder.decode(value, { stream: true })
        if (!s.session) {
          head += text
          const m = /"session":"([^"]+)"/.exec(head)
          if (m) s.session = m[1]!
        }
        for (let i = text.indexOf(CHAT); i >= 0; i = text.indexOf(CHAT, i + 1)) s.got++
        if (s.waiting && text.includes(s.waiting.text)) {
          const w = s.waiting
          s.waiting = undefined
          w.resolve()
        }
        carry = text.slice(-(CHAT.length - 1))
      }
    } catch {}
  })()
  for (let i = 0; i < 500 && !s.session; i++) await Bun.sleep(5)
  if (!s.session) throw new Error('no welcome')
  const post = (body: string) =>
    fetch(`${base}/sse/${s.session}`, { method: 'POST', body }).then(async (r) => {
      await r.arrayBuffer()
      if (r.status !== 202) throw new Error(`post refused: ${r.status}`)
    })
  const until = (text: string) => new Promise<void>((resolve) => (s.waiting = { text, resolve }))
  return { s, post, until }
}

async function sseReceiver(port: number, user: string): Promise<Receiver> {
  const { s, post, until } = await sseSession(port, user)
  const joined = until('{"type":"joined"')
  await post(JSON.stringify({ type: 'join', room: ROOM }))
  await joined
  s.got = 0
  return s
}

/** Chat messages from a /ws sender, `window` acks in flight. */
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

async function inBatches<T>(n: number, make: (i: number) => Promise<T>, batch = 100): Promise<T[]> {
  const out: T[] = []
  for (let i = 0; i < n; i += batch) out.push(...(await Promise.all(Array.from({ length: Math.min(batch, n - i) }, (_, k) => make(i + k)))))
  return out
}

async function fanout(name: string, wsN: number, sseN: number) {
  const server = await fresh()
  try {
    const ws = await inBatches(wsN, (i) => wsReceiver(server.port, `w${i}`))
    const sse = await inBatches(sseN, (i) => sseReceiver(server.port, `s${i}`))
    const sender = await openWs(`ws://127.0.0.1:${server.port}/ws?user=sender`)
    await new Promise<void>((resolve) => {
      sender.onmessage = (e) => (e.data as string).startsWith('{"type":"joined"') && resolve()
      sender.send(JSON.stringify({ type: 'join', room: ROOM }))
    })
    const total = () => [ws.reduce((n, r) => n + r.got, 0), sse.reduce((n, r) => n + r.got, 0)] as const
    const members = wsN + sseN
    // Warm-up (not measured): the JIT's first work would land on whichever face comes first.
    const warm = Math.min(200, MESSAGES)
    await flood(sender, warm, 'warm')
    for (let i = 0; i < 1000 && total()[0] + total()[1] < members * warm; i++) await Bun.sleep(10)
    const [w0, s0] = total()
    const cpu0 = cpuSeconds(server.pid)
    const t0 = performance.now()
    await flood(sender, MESSAGES, 'run')
    const target = members * MESSAGES
    for (let i = 0; i < 6000 && total()[0] - w0 + total()[1] - s0 < target; i++) await Bun.sleep(5)
    const seconds = (performance.now() - t0) / 1000
    const cpu = cpuSeconds(server.pid) - cpu0
    const [w1, s1] = total()
    for (const r of [...ws, ...sse]) r.close()
    sender.close()
    const delivered = w1 - w0 + (s1 - s0)
    return {
      name,
      wsN,
      sseN,
      seconds,
      cpu,
      ws: w1 - w0,
      sse: s1 - s0,
      expected: target,
      perSec: delivered / seconds,
      cpuUsPerDelivery: (cpu / delivered) * 1e6,
    }
  } finally {
    await server.stop()
  }
}

async function idle(face: 'ws' | 'sse') {
  const server = await fresh()
  try {
    await Bun.sleep(1500)
    const before = rssBytes(server.pid)
    const open = await inBatches(IDLE, (i) =>
      face === 'ws' ? wsReceiver(server.port, `i${i}`, false) : sseSession(server.port, `i${i}`).then((x) => x.s),
    )
    await Bun.sleep(3000)
    const after = rssBytes(server.pid)
    for (const r of open) r.close()
    return { face, sessions: IDLE, rssBefore: before, rssAfter: after, bytesPerSession: (after - before) / IDLE }
  } finally {
    await server.stop()
  }
}

/** Server CPU per client frame: chat frames with nobody else in the room (each comes back once, to its sender). */
async function postPath() {
  const server = await fresh()
  try {
    const rows: { path: string; frames: number; posts: number; cpuUsPerFrame: number; seconds: number }[] = []
    const chat = (tag: string, i: number) => JSON.stringify({ type: 'chat', room: ROOM, body: `post path ${tag} ${i}`, id: `${tag}-${i}` })
    const { s, post, until } = await sseSession(server.port, 'poster')
    const joined = until('{"type":"joined"')
    await post(JSON.stringify({ type: 'join', room: ROOM }))
    await joined
    const run = async (tag: string, per: number, count: number) => {
      const last = until(`"id":"${tag}-${count - 1}"`)
      const cpu0 = cpuSeconds(server.pid)
      const t0 = performance.now()
      let posts = 0
      for (let i = 0; i < count; i += per) {
        const frames = Array.from({ length: Math.min(per, count - i) }, (_, k) => chat(tag, i + k))
        await post(frames.length === 1 ? frames[0]! : `[${frames.join(',')}]`)
        posts++
      }
      await last
      return { frames: count, posts, cpu: cpuSeconds(server.pid) - cpu0, seconds: (performance.now() - t0) / 1000 }
    }
    await run('warm1', 1, Math.min(300, FRAMES))
    await run('warmB', BATCH, Math.min(300, FRAMES))
    for (const [path, per] of [
      ['SSE, 1 frame a POST', 1],
      [`SSE, ${BATCH} frames a POST`, BATCH],
    ] as const) {
      const r = await run(`p${per}`, per, FRAMES)
      rows.push({ path, frames: r.frames, posts: r.posts, cpuUsPerFrame: (r.cpu / r.frames) * 1e6, seconds: r.seconds })
    }
    s.close()
    // The same frames over /ws, WINDOW acks in flight.
    const ws = await openWs(`ws://127.0.0.1:${server.port}/ws?user=wsposter`)
    await new Promise<void>((resolve) => {
      ws.onmessage = (e) => (e.data as string).startsWith('{"type":"joined"') && resolve()
      ws.send(JSON.stringify({ type: 'join', room: ROOM }))
    })
    await flood(ws, Math.min(300, FRAMES), 'wswarm')
    const cpu0 = cpuSeconds(server.pid)
    const t0 = performance.now()
    await flood(ws, FRAMES, 'ws')
    rows.push({
      path: `/ws, ${WINDOW} frames in flight`,
      frames: FRAMES,
      posts: 0,
      cpuUsPerFrame: ((cpuSeconds(server.pid) - cpu0) / FRAMES) * 1e6,
      seconds: (performance.now() - t0) / 1000,
    })
    ws.close()
    return rows
  } finally {
    await server.stop()
  }
}

const fan = [await fanout('/ws only', N, 0), await fanout('SSE only', 0, N), await fanout('half and half', N >> 1, N - (N >> 1))]
const idles = [await idle('ws'), await idle('sse')]
const posts = await postPath()

console.log(`\nFan-out: ${MESSAGES} chat messages into one room of ${N} members (server CPU per delivery)\n`)
console.log('| members | /ws deliveries | SSE deliveries | deliveries/s | server CPU µs/delivery |')
console.log('|---|---:|---:|---:|---:|')
for (const r of fan) console.log(`| ${r.name} | ${r.ws} | ${r.sse} | ${Math.round(r.perSec)} | ${r.cpuUsPerDelivery.toFixed(2)} |`)
const [wsOnly, sseOnly] = fan as [(typeof fan)[0], (typeof fan)[0]]
console.log(`\nSSE / /ws, CPU per delivery: ${(sseOnly.cpuUsPerDelivery / wsOnly.cpuUsPerDelivery).toFixed(2)}`)
console.log(`\nIdle sessions: ${IDLE} of each face on a fresh server\n`)
console.log('| face | RSS before | RSS after | bytes per session |')
console.log('|---|---:|---:|---:|')
for (const r of idles)
  console.log(
    `| ${r.face} | ${(r.rssBefore / 2 ** 20).toFixed(1)} MiB | ${(r.rssAfter / 2 ** 20).toFixed(1)} MiB | ${Math.round(r.bytesPerSession)} |`,
  )
console.log(`\nClient frames: ${FRAMES} chat frames from one client, alone in its room (server CPU per frame)\n`)
console.log('| path | POSTs | server CPU µs/frame |')
console.log('|---|---:|---:|')
for (const r of posts) console.log(`| ${r.path} | ${r.posts || '–'} | ${r.cpuUsPerFrame.toFixed(1)} |`)
for (const r of fan) if (r.ws + r.sse < r.expected) console.log(`warning: ${r.name}: ${r.ws + r.sse} of ${r.expected} deliveries arrived`)
writeFileSync(
  OUT,
  `${JSON.stringify({ date: new Date().toISOString(), options: { N, MESSAGES, WINDOW, IDLE, FRAMES, BATCH }, fanout: fan, idle: idles, post: posts }, null, 2)}\n`,
)
console.log(`\nwrote ${OUT}`)
