/**
 * The hub's own CPU per reconnect (no sockets, no kernel): N users open into the default room,
 * then in rounds a slice of them closes and reopens, each resuming with `join {since, epoch}`
 * as the connections scenario's storm does. A fake socket stands for Bun's. Written to compare
 * checkouts and to profile the JS half of a resume (`bun --cpu-prof bench/resume-cpu.ts`).
 *
 *   bun run bench/resume-cpu.ts [--n=19000] [--slice=2000] [--rounds=7]
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
const N = arg('n', 19_000)
const SLICE = arg('slice', 2_000)
const ROUNDS = arg('rounds', 7)
configureLog((process.env.LOG_LEVEL as 'info') ?? 'info')
const config = loadConfig({ RATE_LIMIT_PER_SEC: '0', ENABLE_DEMO: 'false' })
const broker = memoryBroker({ historyLimit: config.HISTORY_LIMIT })
const server = { publish: () => 1, subscriberCount: () => 10 }
const metrics = createMetrics()
const hub = createHub({ config, broker, metrics, nodeId: 'resume', server: () => server as never, members: memoryMembers() })
await broker.start(hub.deliver, hub.reset)

let sent = 0
let lastFrame = ''
const fakeWs = () =>
  fakeSocket((f) => {
    lastFrame = f
    sent++
  })
type C = ReturnType<typeof hub.open>
const conns: C[] = new Array(N)
const meta = { remote: '127.0.0.1', userAgent: 'bench' }
const open = (i: number) => hub.open(fakeWs() as never, { user: { id: `c${i}`, name: `c${i}` } }, meta)
for (let i = 0; i < N; i++) {
  conns[i] = open(i)
  if ((i & 255) === 255) await Promise.all(conns.slice(i - 255, i + 1).map((c) => c.loading))
}
await Bun.sleep(50)
const epoch = /"epoch":"([^"]+)"/.exec(lastFrame)?.[1] ?? ''
const cpu = () => {
  const u = process.cpuUsage()
  return u.user + u.system
}
const sender = conns[0]!
const results: number[] = []
/** Per round: µs per socket to close (and 5 chats), to open until welcome, to resume with join. */
const phases: number[][] = []
let at = 1
for (let r = 0; r < ROUNDS + 1; r++) {
  if (at + SLICE > N) at = 1
  const from = at
  at += SLICE
  const t0 = cpu()
  for (let i = from; i < from + SLICE; i++) hub.close(conns[i]!, 1006, '')
  // A few chats while they are away: each resume replays them.
  for (let k = 0; k < 5; k++) await hub.message(sender, parseFrame(`{"type":"chat","body":"while away ${r}.${k}"}`))
  const since = (await broker.position(config.DEFAULT_ROOM)).seq - 5
  const t1 = cpu()
  const waits: Promise<unknown>[] = []
  for (let i = from; i < from + SLICE; i++) {
    const c = open(i)
    conns[i] = c
    waits.push(c.loading ?? Promise.resolve())
  }
  await Promise.all(waits)
  const t2 = cpu()
  const joins: Promise<unknown>[] = []
  for (let i = from; i < from + SLICE; i++)
    joins.push(
      hub.message(conns[i]!, parseFrame(`{"type":"join","room":"${config.DEFAULT_ROOM}","since":${since},"epoch":"${epoch}","id":"j"}`)) ??
        Promise.resolve(),
    )
  await Promise.all(joins)
  await Bun.sleep(0)
  const t3 = cpu()
  const us = (t3 - t0) / SLICE
  if (r > 0) {
    results.push(us)
    phases.push([(t1 - t0) / SLICE, (t2 - t1) / SLICE, (t3 - t2) / SLICE])
  }
}
results.sort((a, b) => a - b)
console.log(
  JSON.stringify({
    root: import.meta.dir,
    n: N,
    slice: SLICE,
    medianCpuUsPerResume: +results[results.length >> 1]!.toFixed(1),
    medianPhasesUs: [0, 1, 2].map(
      (k) =>
        +phases
          .map((p) => p[k]!)
          .sort((a, b) => a - b)
          [phases.length >> 1]!.toFixed(1),
    ),
    min: +results[0]!.toFixed(1),
    sent,
  }),
)
process.exit(0)
