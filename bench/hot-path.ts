/**
 * The JavaScript cost of one chat frame, without sockets: what the socket's message handler
 * does (src/app.ts: the frame's JSON parse, then hub.message) on a memory broker whose
 * server.publish is a stub. Complements scenarios 1b and 1c (whose µs per message also hold
 * the native fan-out and the socket I/O) with a steadier figure. Target: ≤ 3 µs a message.
 *
 *   bun run bench/hot-path.ts [--n=200000] [--rounds=5]
 */
import { loadConfig } from '../src/config'
import { memoryBroker } from '../src/broker/memory'
import { createHub } from '../src/hub/hub'
import { configureLog } from '../src/log'
import { parseFrame } from '../src/app'
import { createMetrics } from '../src/metrics'
import { memoryMembers } from '../src/members/memory'
import { fakeSocket } from './lib/fake-socket'

const arg = (k: string, d: number) => Number(process.argv.find((a) => a.startsWith(`--${k}=`))?.split('=')[1] ?? d)
const N = arg('n', 200_000)
const ROUNDS = arg('rounds', 5)
configureLog('warn')
const config = loadConfig({ RATE_LIMIT_PER_SEC: '0', LOG_LEVEL: 'warn', ENABLE_DEMO: 'false' })
const broker = memoryBroker({ historyLimit: config.HISTORY_LIMIT })
let published = 0
const server = { publish: () => (published++, 1), subscriberCount: () => 10 }
const hub = createHub({ config, broker, metrics: createMetrics(), nodeId: 'hot', server: () => server as never, members: memoryMembers() })
await broker.start(hub.deliver, hub.reset)
const ws = fakeSocket()
const c = hub.open(ws as never, { user: { id: 'bench-s-0', name: 'bench-s-0' } }, { remote: '127.0.0.1', userAgent: '' })
await Bun.sleep(10) // the join of the default room
const text = '{"type":"chat","body":"~1795781979100000~ bench message ........"}'

const results: number[] = []
for (let r = 0; r < ROUNDS + 1; r++) {
  const t0 = performance.now()
  for (let i = 0; i < N; i++) {
    void hub.message(c, parseFrame(text))
    if ((i & 1023) === 1023) await Promise.resolve() // let the promise chains settle as a server would
  }
  await Bun.sleep(0)
  const us = ((performance.now() - t0) * 1000) / N
  if (r > 0) results.push(us) // round 0 warms up the JIT
}
results.sort((a, b) => a - b)
const median = results[results.length >> 1]!
console.log(
  `hub.message(chat), ${N} frames x ${ROUNDS} rounds: median ${median.toFixed(3)} µs/frame (min ${results[0]!.toFixed(3)}, max ${results.at(-1)!.toFixed(3)}); published ${published}`,
)
console.log(
  `server JS per chat message: ${median.toFixed(2)} µs (target ≤ 3 µs: ${median <= 3 ? 'met' : 'NOT met'}); load average ${(await Bun.file('/proc/loadavg').text()).split(' ').slice(0, 3).join(' ')}`,
)
process.exit(0)
