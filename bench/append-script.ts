/**
 * The append script alone (issue 34): Redis's CPU per plain chat for `append.lua` as it is here
 * and as it was at another commit, alternated, on a PRIVATE redis-server, with and without a
 * retry key. No chat-server in between: `INFO cpu` per `EVALSHA`, pipelined 64 at a time, one
 * subscriber on the channel. Prints the runs and their medians.
 *
 *   npx bun run bench/append-script.ts [--before=<git rev>] [--messages=40000] [--runs=5] [--batch=16]
 *
 * The arguments follow each version's own header (ARGV[13], the retry field, is new in 763a597;
 * before it, a retry key was a sixth KEY; since the group commit, a call carries shared
 * arguments and 7 per event). With the batched layout, one more variant sends `--batch` events
 * per call (N must be a multiple of 64 × batch).
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import Redis from 'ioredis'
import { ROOT } from './lib/proc'
import { privateRedis, redisCpu } from './lib/rooms'

const arg = (k: string, d: string) => process.argv.find((a) => a.startsWith(`--${k}=`))?.split('=')[1] ?? d
const BEFORE = arg('before', '3eb3db5')
const N = Number(arg('messages', '40000'))
const RUNS = Number(arg('runs', '5'))
const B = 64
/** Events per call of the batched layout's extra variant (a busy room's node sends what waits together). */
const BATCH = Number(arg('batch', '16'))

const now = readFileSync(join(ROOT, 'src/broker/lua/append.lua'), 'utf8')
const old = Bun.spawnSync(['git', 'show', `${BEFORE}:src/broker/lua/append.lua`], { cwd: ROOT })
if (old.exitCode !== 0) throw new Error(`git show ${BEFORE}: ${old.stderr.toString()}`)
const then = old.stdout.toString()

const redis = await privateRedis()
const port = redis.ports[0]!
const r = new Redis(port, '127.0.0.1')
const sub = new Redis(port, '127.0.0.1')
let published = 0
await sub.subscribe('ch')
sub.on('message', () => published++)

const shaNow = (await r.script('LOAD', now)) as string
const shaThen = (await r.script('LOAD', then)) as string
const cpu = () => redisCpu(port)
const head = '{"type":"chat","room":"r","seq":'
const tail =
  ',"id":"019af0a0-0000-7000-8000-000000000000","from":{"id":"u1","name":"User one"},"body":"message 1234 of sender 3","ts":"2026-12-06T07:00:00.000Z"}'
const keys = (room: string) => [`{${room}}:state`, `{${room}}:log`, `{${room}}:msgs`, `{${room}}:order`, `{${room}}:pins`]
const retryKey = (i: number) => JSON.stringify(['chat', 'r', 'u1', `s${i}`])
/** The layouts of append.lua's arguments over time: one event per call (the retry key a sixth KEY before 763a597, ARGV[13] after), or shared + 7 per event. */
type Layout = 'keyed' | 'single' | 'batched'
const layoutOf = (lua: string): Layout => (lua.includes('7 per event') ? 'batched' : lua.includes('ARGV[13]') ? 'single' : 'keyed')
/** The calls for events i … i + n − 1 of a room (n > 1 only for the batched layout). */
function calls(sha: string, layout: Layout, room: string, i: number, n: number, keyed: boolean): [string, string[], (string | number)[]] {
  const k = keys(room)
  if (layout === 'batched') {
    const own = Array.from({ length: n }, (_, j) => [
      head,
      tail,
      `m${i + j}`,
      '',
      'cu1',
      '"u1"',
      keyed ? `~d:${retryKey(i + j)}` : '',
    ]).flat()
    return [sha, k, [1000, 'ch', 120000, 3600000, room, 2000, ...own]]
  }
  const common = [head, tail, 1000, 'ch', `m${i}`, 120000, '', 3600000, room, 'cu1', 2000, '"u1"']
  if (layout === 'keyed') return [sha, keyed ? [...k, `{${room}}:dedupe:${retryKey(i)}`] : k, common]
  return [sha, k, [...common, keyed ? `~d:${retryKey(i)}` : '']]
}
const [layoutThen, layoutNow] = [layoutOf(then), layoutOf(now)]
type Variant = { sha: string; layout: Layout; keyed: boolean; per: number }
const variants: Record<string, Variant> = {
  'before, retry key': { sha: shaThen, layout: layoutThen, keyed: true, per: 1 },
  'after, retry key': { sha: shaNow, layout: layoutNow, keyed: true, per: 1 },
  'before, no key': { sha: shaThen, layout: layoutThen, keyed: false, per: 1 },
  'after, no key': { sha: shaNow, layout: layoutNow, keyed: false, per: 1 },
}
if (layoutNow === 'batched' && BATCH > 1)
  variants[`after, retry key, ${BATCH} a call`] = { sha: shaNow, layout: layoutNow, keyed: true, per: BATCH }

/** Every event's answer, whatever the layout: 1 = appended. */
const answers = (v: unknown): number[] => (Array.isArray((v as unknown[])[0]) ? (v as number[][]).map((x) => x[0]!) : [(v as number[])[0]!])

const results: Record<string, number[]> = {}
for (let run = 0; run < RUNS; run++) {
  for (const [name, v] of Object.entries(variants)) {
    const room = `${name.replace(/\W/g, '')}-${run}`
    await r.hset(`{${room}}:state`, 'seq', 0, 'epoch', 'e', 'tx', Date.now())
    const c0 = await cpu()
    for (let i = 0; i < N; i += B * v.per) {
      const p = r.pipeline()
      for (let j = i; j < i + B * v.per; j += v.per) {
        const [sha, k, a] = calls(v.sha, v.layout, room, j, v.per, v.keyed)
        p.evalsha(sha, k.length, ...k, ...a)
      }
      const res = (await p.exec())!
      const bad = res.find(([err, v]) => err || answers(v).some((x) => x !== 1))
      if (bad) throw new Error(`${name}: ${JSON.stringify(bad)}`)
    }
    ;(results[name] ??= []).push((((await cpu()) - c0) * 1e6) / N)
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!
console.log(`append.lua alone: ${N} plain chats per run, ${RUNS} runs alternated; before = ${BEFORE}; ${published} frames published`)
console.log('\n| variant | Redis CPU µs per chat, median | runs |\n|---|---:|---|')
for (const [name, xs] of Object.entries(results))
  console.log(`| ${name} | ${median(xs).toFixed(1)} | ${xs.map((x) => x.toFixed(1)).join(', ')} |`)
r.disconnect()
sub.disconnect()
await redis.stop()
