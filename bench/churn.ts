/**
 * Room churn: rounds of connections that each join a fresh room, send one message and leave.
 * Prints the server's RSS after each round (after a pause for the engine's sweep and Bun's
 * GC), once with room retention off and once on, so a leak per room shows as a slope.
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
      } else if (f.type === 'joined' && f.id === 'j') ws.send(JSON.stringify({ type: 'chat', room, body: 'one message', id: 'c' }))
      else if (f.type === 'ack' && f.id === 'c') ws.send(JSON.stringify({ type: 'leave', room, id: 'l' }))
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
  const rss = [rssBytes(server.pid)]
  let next = 0
  for (let round = 0; round < ROUNDS; round++) {
    const end = next + ROOMS
    const worker = async () => {
      while (next < end) await visit(url, `churn-${next++}`)
    }
    await Promise.all(Array.from({ length: PARALLEL }, worker))
    await Bun.sleep(3000) // the sweep (HISTORY_TTL_S=1) and a GC cycle
    rss.push(rssBytes(server.pid))
  }
  await server.stop()
  const mib = rss.map((b) => (b / 1048576).toFixed(1))
  const perRound = (rss.at(-1)! - rss[1]!) / (ROUNDS - 1) / 1048576
  console.log(`${label.padEnd(34)} RSS MiB at start then after each round of ${ROOMS} rooms: ${mib.join(' → ')}  (growth per round after the first: ${perRound.toFixed(2)} MiB)`)
  return { label, rssMiB: mib.map(Number), growthPerRoundMiB: perRound }
}

export async function churnBench() {
  return [
    await run('retention off (HISTORY_TTL_S=0)', { HISTORY_TTL_S: '0', MAX_ROOMS: '100000000' }),
    await run('retention on (HISTORY_TTL_S=1)', { HISTORY_TTL_S: '1' }),
    await run('MAX_ROOMS=1000', { HISTORY_TTL_S: '0', MAX_ROOMS: '1000' }),
  ]
}

if (import.meta.main) await churnBench()
