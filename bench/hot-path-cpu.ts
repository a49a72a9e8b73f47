/**
 * bench/hot-path.ts timed in CPU (process.cpuUsage), not wall time, so that other processes on a
 * shared machine weigh less; the SSE face's delivery hook is registered as app.ts does when the
 * checkout has one. Written to compare checkouts: copy it (and bench/lib/fake-socket.ts) into an
 * export's bench/ and run it there.
 *
 *   bun run bench/hot-path-cpu.ts [--n=200000] [--rounds=7]     (NOHOOK=1: without the SSE hook)
 */
import { loadConfig } from '../src/config'
import { memoryBroker } from '../src/broker/memory'
import { createHub } from '../src/hub/hub'
import { configureLog } from '../src/log'
import { parseFrame } from '../src/app'
import { createMetrics } from '../src/metrics'
import { memoryMembers } from '../src/members/memory'
import { existsSync } from 'node:fs'
import { fakeSocket } from './lib/fake-socket'

const arg = (k: string, d: number) => Number(process.argv.find((a) => a.startsWith(`--${k}=`))?.split('=')[1] ?? d)
const N = arg('n', 200_000)
const ROUNDS = arg('rounds', 7)
configureLog('warn')
const config = loadConfig({ RATE_LIMIT_PER_SEC: '0', LOG_LEVEL: 'warn', ENABLE_DEMO: 'false' })
const broker = memoryBroker({ historyLimit: config.HISTORY_LIMIT })
let published = 0
const server = { publish: () => (published++, 1), subscriberCount: () => 10 }
const metrics = createMetrics()
const hub = createHub({ config, broker, metrics, nodeId: 'hot', server: () => server as never, members: memoryMembers() })
let hooked = 'none'
/** Older checkouts have no hooks: the same script runs on them. */
const hooks = hub as unknown as { onDeliver?: (hook: unknown) => void }
if (!process.env.NOHOOK && hooks.onDeliver && existsSync(`${import.meta.dir}/../src/sse/fanout.ts`)) {
  const { sseFanOut } = await import(`${'../src/sse/fanout'}`)
  hooks.onDeliver(sseFanOut({ metrics, posted() {}, cut() {} }).hook)
  hooked = 'sse'
}
await broker.start(hub.deliver, hub.reset)
const ws = fakeSocket()
const c = hub.open(ws as never, { user: { id: 'bench-s-0', name: 'bench-s-0' } }, { remote: '127.0.0.1', userAgent: '' })
await Bun.sleep(10)
const text = '{"type":"chat","body":"~1795781979100000~ bench message ........"}'
const cpu = () => {
  const u = process.cpuUsage()
  return u.user + u.system
}
const results: number[] = []
for (let r = 0; r < ROUNDS + 1; r++) {
  const t0 = cpu()
  for (let i = 0; i < N; i++) {
    void hub.message(c, parseFrame(text))
    if ((i & 1023) === 1023) await Promise.resolve()
  }
  await Bun.sleep(0)
  const us = (cpu() - t0) / N
  if (r > 0) results.push(us)
}
results.sort((a, b) => a - b)
console.log(
  JSON.stringify({
    root: import.meta.dir,
    hooked,
    medianCpuUs: +results[results.length >> 1]!.toFixed(3),
    min: +results[0]!.toFixed(3),
    published,
  }),
)
process.exit(0)
