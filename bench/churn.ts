/**
 * Room churn: rounds of connections that each join a fresh room, send one message and leave.
 * Prints the server's RSS and JS heap after each round (after the engine's sweep and a full GC,
 * which SIGUSR2 asks of the server), with room retention off and on, so a leak per room shows
 * as a slope.
 *
 *   bun run bench/churn.ts [--rooms=5000] [--rounds=4] [--parallel=200]
 */
import { rssBytes, startServer } from './lib/proc'

const arg = (k: string, d: string) => process.argv.find((a) => a.startsWith(`--${k}=`))?.split('=')[1] ?? d
const ROOMS = Number(arg('rooms', '5000'))
const ROUNDS = Number(arg('rounds', '4'))
const PARALLEL = Number(arg('parallel', '200'))

async function visit(url: string, room: string) {
  const ws = new WebSocket(url)
  await new Promise<void>((resolve, reject) => {
    let step = 0
    ws.onmessage = (e) => {
      const f = JSON.parse(String(e.data))
      if (f.type === 'welcome' && step === 0) {
        step = 1
        ws.send(JSON.stringify({ type: 'join', room, id: 'j' }))
        // no id: a retry key would live DEDUPE_WINDOW_MS (2 min) and blur what rooms cost
      } else if (f.type === 'joined' && f.id === 'j') ws.send(JSON.stringify({ type: 'chat', room, body: 'one message' }))
      else if (f.type === 'chat' && f.room === room) ws.send(JSON.stringify({ type: 'leave', room, id: 'l' }))
      else if (f.type === 'left' && f.id === 'l') {
        ws.close()
        resolve()
      }
    }
    ws.onerror = () => reject(new Error('connect failed'))
  })
}

async function run(label: string, env: Record<string, string>) {
  const started = await startServer('chat', { RATE_LIMIT_PER_SEC: '0', LOG_LEVEL: 'info', ENABLE_DEMO: 'false', ...env })
  if (!started.ok) throw new Error(`server did not start: ${started.stderr}`)
  const { server } = started
  const url = `ws://127.0.0.1:${server.port}/ws`
  await Bun.sleep(500)
  /** After a full GC: the JS heap in use and the rooms the engine forgot so far, from the server's own /metrics. */
  const scrape = async () => {
    server.proc.kill('SIGUSR2') // a full GC in the server (src/main.ts), then read
    await Bun.sleep(300)
    const text = await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text()
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? NaN)
    return { heap: value('nodejs_heap_size_used_bytes'), evicted: value('chat_rooms_evicted_total') }
  }
  const heap = [(await scrape()).heap]
  const rss = [rssBytes(server.pid)]
  let evicted = 0
  let next = 0
  for (let round = 0; round < ROUNDS; round++) {
    const end = next + ROOMS
    const worker = async () => {
      while (next < end) await visit(url, `churn-${next++}`)
    }
    await Promise.all(Array.from({ length: PARALLEL }, worker))
    await Bun.sleep(2000) // the sweep of HISTORY_TTL_S=1
    const m = await scrape()
    rss.push(rssBytes(server.pid))
    heap.push(m.heap)
    evicted = m.evicted
  }
  await server.stop()
  const mib = (xs: number[]) => xs.map((b) => (b / 1048576).toFixed(1))
  const perRound = (xs: number[]) => (xs.at(-1)! - xs[1]!) / (ROUNDS - 1) / 1048576
  console.log(
    `${label.padEnd(34)} after each round of ${ROOMS} rooms: RSS MiB ${mib(rss).join(' → ')} (${perRound(rss).toFixed(2)}/round after the first); JS heap MiB ${mib(heap).join(' → ')} (${perRound(heap).toFixed(2)}/round); rooms evicted ${evicted}`,
  )
  return {
    label,
    rssMiB: mib(rss).map(Number),
    heapMiB: mib(heap).map(Number),
    rssGrowthPerRoundMiB: perRound(rss),
    heapGrowthPerRoundMiB: perRound(heap),
    evicted,
  }
}

export async function churnBench() {
  return [
    await run('retention off (HISTORY_TTL_S=0)', { HISTORY_TTL_S: '0', MAX_ROOMS: '100000000' }),
    await run('retention on (HISTORY_TTL_S=1)', { HISTORY_TTL_S: '1' }),
    await run('MAX_ROOMS=1000', { HISTORY_TTL_S: '0', MAX_ROOMS: '1000' }),
  ]
}

if (import.meta.main) await churnBench()
