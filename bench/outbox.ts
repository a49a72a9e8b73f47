/**
 * The transactional outbox (docs/outbox.md): the time from an application's COMMIT to the chat
 * frame at a member, and rows delivered per second from a backlog.
 *
 *   npm run bench -- --only=outbox [--rows=10000] [--paced=300] [--rooms=20] [--configs=memory,redis-2]
 *
 * Each config: a fresh table on the test database (postgres://postgres@127.0.0.1:5432/test), one
 * member (on node 1) in every room. Paced: `--paced` one-row transactions, one every 10 ms, each
 * timed from its COMMIT resolving to its frame (LISTEN wakes the nodes; OUTBOX_POLL_MS is left at
 * its default). Flood: `--rows` rows over `--rooms` rooms in transactions of 500, written as fast
 * as they go; rows/s from the first COMMIT to the last frame, and commit-to-delivery percentiles.
 * `redis-2`: two nodes on the machine's Redis (127.0.0.1:6379) sharing the table.
 */
import postgres from 'postgres'
import { startServer } from '../test/helpers/server'
import type { RunningServer } from '../test/helpers/server'

const arg = (k: string, d: string) => process.argv.find((a) => a.startsWith(`--${k}=`))?.split('=')[1] ?? d
const ROWS = Number(arg('rows', '10000'))
const PACED = Number(arg('paced', '300'))
const ROOMS = Number(arg('rooms', '20'))
const CONFIGS = arg('configs', 'memory,redis-2').split(',')
const DSN = 'postgres://postgres@127.0.0.1:5432/test'
const sql = postgres(DSN, { max: 8, onnotice: () => {} })

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN
const ms = (x: number) => Math.round(x * 10) / 10

async function member(s: RunningServer, rooms: string[], onChat: (body: string) => void): Promise<WebSocket> {
  const ws = new WebSocket(`${s.ws}?user=bench-member`)
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve()
    ws.onerror = () => reject(new Error('could not connect'))
  })
  let joined = 0
  await new Promise<void>((resolve) => {
    ws.onmessage = (e) => {
      const text = String(e.data)
      if (text.startsWith('{"type":"joined"') && ++joined === rooms.length) resolve()
      else if (text.startsWith('{"type":"chat"')) onChat(JSON.parse(text).body)
    }
    for (const room of rooms) ws.send(JSON.stringify({ type: 'join', room }))
  })
  return ws
}

async function run(config: string) {
  const table = `outbox_bench_${process.pid}_${config.replace(/\W/g, '_')}`
  const rooms = Array.from({ length: ROOMS }, (_, i) => `ob-${process.pid}-${config}-${i}`)
  const env: Record<string, string> = { OUTBOX_DSN: DSN, OUTBOX_TABLE: table, RATE_LIMIT_PER_SEC: '0', LOG_LEVEL: 'warn' }
  const count = config === 'redis-2' ? 2 : 1
  if (config === 'redis-2') Object.assign(env, { REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: `outbox-bench-${process.pid}:` })
  const nodes: RunningServer[] = []
  try {
    for (let i = 0; i < count; i++) nodes.push(await startServer({ env: { ...env, LOG_LEVEL: 'info' } }))
    const arrived = new Map<string, number>()
    const ws = await member(nodes[0]!, rooms, (body) => arrived.set(body, performance.now()))
    const committed = new Map<string, number>()

    // Paced: one row per transaction, every 10 ms.
    for (let i = 0; i < PACED; i++) {
      const body = `p${i}`
      await sql.unsafe(`insert into ${table} (room, body) values ($1, $2)`, [rooms[i % ROOMS]!, body])
      committed.set(body, performance.now())
      await Bun.sleep(10)
    }
    const waitFor = async (n: number, what: string) => {
      const end = Date.now() + 120_000
      while (arrived.size < n) {
        if (Date.now() > end) throw new Error(`${config}: ${what}: ${arrived.size} of ${n} arrived`)
        await Bun.sleep(5)
      }
    }
    await waitFor(PACED, 'paced')
    const paced = [...committed].map(([b, t]) => arrived.get(b)! - t).sort((a, b) => a - b)

    // Flood: the backlog as fast as the application can write it, 500 rows a transaction.
    committed.clear()
    arrived.clear()
    const start = performance.now()
    const writers = 4
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        for (let from = w * 500; from < ROWS; from += writers * 500) {
          const to = Math.min(ROWS, from + 500) - 1
          await sql.unsafe(
            `insert into ${table} (room, body) select ($1::text[])[1 + (i % $2)], 'f' || i from generate_series($3::int, $4::int) i`,
            [rooms, ROOMS, from, to] as never[],
          )
          const t = performance.now()
          for (let i = from; i <= to; i++) committed.set(`f${i}`, t)
        }
      }),
    )
    const written = performance.now() - start
    await waitFor(ROWS, 'flood')
    const last = Math.max(...arrived.values())
    const flood = [...committed].map(([b, t]) => arrived.get(b)! - t).sort((a, b) => a - b)
    ws.close()
    return {
      config,
      paced: { rows: PACED, p50: ms(pct(paced, 50)), p99: ms(pct(paced, 99)), max: ms(paced.at(-1)!) },
      flood: {
        rows: ROWS,
        writtenMs: Math.round(written),
        rowsPerSec: Math.round(ROWS / ((last - start) / 1000)),
        p50: ms(pct(flood, 50)),
        p99: ms(pct(flood, 99)),
      },
    }
  } finally {
    await Promise.all(nodes.map((s) => s.stop('SIGTERM')))
    await sql.unsafe(`drop table if exists ${table}, ${table}_failed cascade`)
    await sql.unsafe(`drop function if exists ${table}_notify() cascade`)
  }
}

const results = []
for (const c of CONFIGS) {
  const r = await run(c)
  console.log(
    `outbox ${r.config}: commit→delivery paced (${r.paced.rows} one-row transactions, 100/s) p50 ${r.paced.p50} ms p99 ${r.paced.p99} ms max ${r.paced.max} ms; ` +
      `flood ${r.flood.rows} rows (written in ${r.flood.writtenMs} ms): ${r.flood.rowsPerSec} rows/s, p50 ${r.flood.p50} ms p99 ${r.flood.p99} ms`,
  )
  results.push(r)
}
console.log(JSON.stringify({ date: new Date().toISOString(), results }))
await sql.end({ timeout: 1 })
process.exit(0)
