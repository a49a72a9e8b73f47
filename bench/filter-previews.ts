/**
 * What the word filter and link previews cost a chat message (PROTOCOL-v4).
 *
 *   bun run bench/filter-previews.ts [--chats=20000] [--senders=4] [--window=32] [--latency-chats=200]
 *
 * 1. Word filter: server CPU per chat on a server with MODERATION_WORDS_FILE (200 words and 3
 *    regex lines, mask) against one without, in the same run, for an ASCII body and an accented
 *    one (the filter's folding path), each a flood of ack'd chats into one room (a window in
 *    flight per sender). Every few bodies hold a listed word, so masking happens too.
 * 2. Link previews: a chat's ack latency (one chat at a time, its own link each, so no cache)
 *    with LINK_PREVIEWS on and every link a page that answers after 3 s, against previews off:
 *    the ack must not wait for the page.
 * Prints Markdown tables and writes nothing else.
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Histogram } from './lib/histogram'
import { cpuSeconds, startServer } from './lib/proc'

const arg = (k: string, d: string) => process.argv.find((a) => a.startsWith(`--${k}=`))?.split('=')[1] ?? d
const CHATS = Number(arg('chats', '20000'))
const SENDERS = Number(arg('senders', '4'))
const WINDOW = Number(arg('window', '32'))
const LATENCY_CHATS = Number(arg('latency-chats', '200'))
const ROOM = 'filter-bench'

interface Sock {
  ws: WebSocket
  onAnswer?: (f: { id: string; type: string; code?: string; message?: string }) => void
}

function open(url: string): Promise<Sock> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url)
    const s: Sock = { ws }
    ws.onmessage = (e) => {
      const text = e.data as string
      if (text.startsWith('{"type":"ack"') || text.startsWith('{"type":"error"') || text.startsWith('{"type":"joined"'))
        s.onAnswer?.(JSON.parse(text))
    }
    ws.onerror = () => reject(new Error(`could not connect to ${url}`))
    ws.onopen = () => resolve(s)
  })
}

function request(s: Sock, frame: Record<string, unknown>): Promise<void> {
  return new Promise((resolve, reject) => {
    s.onAnswer = (f) => {
      if (f.id !== frame.id) return
      if (f.type === 'error') reject(new Error(`${f.code}: ${f.message}`))
      else resolve()
    }
    s.ws.send(JSON.stringify(frame))
  })
}

/** `count` chats with at most WINDOW unanswered. */
function flood(s: Sock, phase: string, count: number, body: (i: number) => string): Promise<void> {
  return new Promise((resolve, reject) => {
    let next = 0
    let done = 0
    const send = () => {
      const i = next++
      s.ws.send(JSON.stringify({ type: 'chat', room: ROOM, body: body(i), id: `${phase}-${i}` }))
    }
    s.onAnswer = (f) => {
      if (f.type === 'error') return reject(new Error(`${f.code}: ${f.message}`))
      done++
      if (next < count) send()
      else if (done === count) resolve()
    }
    for (let i = 0; i < Math.min(WINDOW, count); i++) send()
  })
}

/** 200 made-up words (never in the bodies except where placed) and three regex lines. */
function wordList(): string {
  const words = Array.from({ length: 200 }, (_, i) => `badword${i.toString(36)}x`)
  return [...words, '/fr[o0]+g+y/i', '/\\b\\d{4}-\\d{4}-\\d{4}-\\d{4}\\b/', '/sp[a4]m+ers?/i'].join('\n')
}

const ASCII = (i: number) =>
  i % 10 === 0
    ? `message ${i}: this one says badword1x in the middle of a sentence`
    : `message ${i}: an ordinary sentence of a chat, nothing in it`
const ACCENTED = (i: number) =>
  i % 10 === 0
    ? `message ${i}: ça dit bädwörd1x au milieu d'une phrase, voilà`
    : `message ${i}: une phrase ordinaire, rien à signaler, déjà vu`

async function filterCost(withFilter: boolean) {
  const env: Record<string, string> = { RATE_LIMIT_PER_SEC: '0', LOG_LEVEL: 'info', ENABLE_DEMO: 'false', HISTORY_LIMIT: '1000' }
  if (withFilter) {
    const dir = mkdtempSync(join(tmpdir(), 'filter-bench-'))
    writeFileSync(join(dir, 'words.txt'), wordList())
    env.MODERATION_WORDS_FILE = join(dir, 'words.txt')
  }
  const started = await startServer('chat', env)
  if (!started.ok) throw new Error(`server did not start: ${started.stderr}`)
  const { server } = started
  try {
    const senders = await Promise.all(Array.from({ length: SENDERS }, (_, i) => open(`ws://127.0.0.1:${server.port}/ws?user=s${i}`)))
    for (const [i, s] of senders.entries()) await request(s, { type: 'join', room: ROOM, id: `j${i}` })
    const per = Math.floor(CHATS / SENDERS)
    // Warm-up with both bodies (not measured), then each body twice, alternating: a phase's
    // place in the run (the JIT, the room's first thousand messages) is not its cost.
    await Promise.all(senders.map((s, k) => flood(s, `warm-a${k}`, Math.min(per, 3000), ASCII)))
    await Promise.all(senders.map((s, k) => flood(s, `warm-b${k}`, Math.min(per, 3000), ACCENTED)))
    const sums = new Map<string, { cpu: number; seconds: number; n: number }>()
    for (const round of [1, 2])
      for (const [name, body] of [
        ['ascii', ASCII],
        ['accented', ACCENTED],
      ] as const) {
        const cpu0 = cpuSeconds(server.pid)
        const t0 = performance.now()
        await Promise.all(senders.map((s, k) => flood(s, `${name}${round}-${k}`, per, body)))
        const sum = sums.get(name) ?? { cpu: 0, seconds: 0, n: 0 }
        sum.seconds += (performance.now() - t0) / 1000
        sum.cpu += cpuSeconds(server.pid) - cpu0
        sum.n += per * SENDERS
        sums.set(name, sum)
      }
    const rows = [...sums].map(([body, s]) => ({ body, cpuUs: (s.cpu / s.n) * 1e6, perS: s.n / s.seconds }))
    for (const s of senders) s.ws.close()
    return rows
  } finally {
    await server.stop()
  }
}

async function previewLatency(previews: boolean, pagePort: number) {
  const env: Record<string, string> = { RATE_LIMIT_PER_SEC: '0', LOG_LEVEL: 'info', ENABLE_DEMO: 'false' }
  if (previews) Object.assign(env, { LINK_PREVIEWS: 'true', OUTBOUND_ALLOW: '127.0.0.1' })
  const started = await startServer('chat', env)
  if (!started.ok) throw new Error(`server did not start: ${started.stderr}`)
  const { server } = started
  try {
    const s = await open(`ws://127.0.0.1:${server.port}/ws?user=lat`)
    await request(s, { type: 'join', room: ROOM, id: 'j' })
    for (let i = 0; i < 50; i++) await request(s, { type: 'chat', room: ROOM, body: `warm ${i}`, id: `w${i}` })
    const h = new Histogram()
    for (let i = 0; i < LATENCY_CHATS; i++) {
      const t0 = performance.now()
      await request(s, { type: 'chat', room: ROOM, body: `read http://127.0.0.1:${pagePort}/slow/${previews}-${i}`, id: `l${i}` })
      h.record((performance.now() - t0) * 1000)
    }
    s.ws.close()
    return h.summary()
  } finally {
    await server.stop()
  }
}

const load = async () => (await Bun.file('/proc/loadavg').text()).split(' ').slice(0, 3).join(' ')
const out: string[] = []
out.push(`## Word filter: ${CHATS} chats per phase, ${SENDERS} senders (window ${WINDOW}), one room; load ${await load()}`, '')
out.push('| server | body | chats/s | server CPU µs per chat | vs plain |', '|---|---|---:|---:|---:|')
const plain = await filterCost(false)
const filtered = await filterCost(true)
for (const [name, rows] of [
  ['plain', plain],
  ['filter (200 words + 3 regexes, mask)', filtered],
] as const)
  for (const [i, r] of rows.entries())
    out.push(
      `| ${name} | ${r.body} | ${Math.round(r.perS).toLocaleString('en')} | ${r.cpuUs.toFixed(1)} | ${(r.cpuUs / plain[i]!.cpuUs).toFixed(2)} |`,
    )

// The filter alone, in this process: what `filterText` costs a body, without the server around it.
{
  const { compileWords, maskWords } = await import('../src/core/word-filter')
  const list = compileWords(wordList())
  out.push('', '`maskWords` alone (this process, 200 000 calls each):', '', '| body | µs per call |', '|---|---:|')
  for (const [name, body] of [
    ['ascii', ASCII],
    ['accented', ACCENTED],
  ] as const) {
    for (let i = 0; i < 20_000; i++) maskWords(list, body(i))
    const t0 = performance.now()
    for (let i = 0; i < 200_000; i++) maskWords(list, body(i))
    out.push(`| ${name} | ${(((performance.now() - t0) * 1000) / 200_000).toFixed(2)} |`)
  }
}

let requested = 0
const pages = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  idleTimeout: 30,
  async fetch() {
    requested++
    await Bun.sleep(3000)
    return new Response('<title>slow</title>', { headers: { 'content-type': 'text/html' } })
  },
})
out.push(
  '',
  `## Link previews: ack latency of ${LATENCY_CHATS} chats one at a time, each its own link to a page answering after 3 s; load ${await load()}`,
  '',
)
out.push('| previews | p50 ms | p99 ms | max ms | page requests |', '|---|---:|---:|---:|---:|')
for (const on of [false, true]) {
  const before = requested
  const l = await previewLatency(on, pages.port!)
  out.push(`| ${on ? 'on' : 'off'} | ${l.p50.toFixed(2)} | ${l.p99.toFixed(2)} | ${l.max.toFixed(2)} | ${requested - before} |`)
}
pages.stop(true)
console.log(out.join('\n'))
process.exit(0)
