/**
 * Connect with many memberships: how long from the socket's open to its `welcome` (which
 * carries the total unread) and to the last `joined`, for a user with N memberships, each room
 * holding a few messages from someone else (so every unread count has work to do).
 *
 *   bun run bench/welcome.ts [--memberships=500] [--connects=20] [--engines=memory,redis,postgres]
 *
 * Engines: memory (one node), redis (REDIS_URL=redis://127.0.0.1:6379, a fresh prefix),
 * postgres (a fresh database on 127.0.0.1:5432; no Redis). Prints one line per engine.
 */
import postgres from 'postgres'
import { startServer } from './lib/proc'

const arg = (k: string, d: string) => process.argv.find((a) => a.startsWith(`--${k}=`))?.split('=')[1] ?? d
const MEMBERSHIPS = Number(arg('memberships', '500'))
const CONNECTS = Number(arg('connects', '20'))
const ENGINES = arg('engines', 'memory,redis,postgres').split(',')
const PER_ROOM = 3

type Frame = Record<string, any>

type Conn = { ws: WebSocket; frames: Frame[]; answers: Map<string, () => void>; wait: (pred: (f: Frame) => boolean) => Promise<void> }

function open(url: string): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url)
    const frames: Frame[] = []
    const answers = new Map<string, () => void>()
    const waiters = new Set<() => void>()
    ws.onmessage = (e) => {
      const f = JSON.parse(String(e.data))
      if (typeof f.id === 'string' && answers.has(f.id) && (f.type === 'ack' || f.type === 'joined' || f.type === 'error')) {
        answers.get(f.id)!()
        answers.delete(f.id)
        return
      }
      frames.push(f)
      for (const w of waiters) w()
    }
    ws.onerror = () => reject(new Error(`could not connect to ${url}`))
    const wait = (pred: (f: Frame) => boolean) =>
      new Promise<void>((res, rej) => {
        const t = setTimeout(() => rej(new Error('timed out')), 30_000)
        const check = () => {
          if (frames.some(pred)) {
            clearTimeout(t)
            waiters.delete(check)
            res()
          }
        }
        waiters.add(check)
        check()
      })
    ws.onopen = () => resolve({ ws, frames, answers, wait })
  })
}

async function measure(engine: string, env: Record<string, string>) {
  const started = await startServer('chat', {
    RATE_LIMIT_PER_SEC: '0',
    LOG_LEVEL: 'info',
    ENABLE_DEMO: 'false',
    MAX_MEMBERSHIPS: String(MEMBERSHIPS),
    ...env,
  })
  if (!started.ok) throw new Error(`${engine}: server did not start: ${started.stderr}`)
  const server = started.server
  const url = `ws://127.0.0.1:${server.port}/ws`
  const user = `wb-${Date.now().toString(36)}`
  try {
    // the member joins N-1 rooms (the default room is the Nth); a poster writes in each
    const member = await open(`${url}?user=${user}`)
    await member.wait((f) => f.type === 'welcome')
    const poster = await open(`${url}?user=${user}-poster`)
    await poster.wait((f) => f.type === 'welcome')
    let id = 0
    const request = (c: Conn, f: Frame) =>
      new Promise<void>((resolve) => {
        const rid = `r${++id}`
        c.answers.set(rid, resolve)
        c.ws.send(JSON.stringify({ ...f, id: rid }))
      })
    const rooms = Array.from({ length: MEMBERSHIPS - 1 }, (_, i) => `wb-${i + 1}`)
    await Promise.all(rooms.map((room) => request(member, { type: 'join', room, member: true })))
    await Promise.all(rooms.map((room) => request(poster, { type: 'join', room })))
    await Promise.all(
      Array.from({ length: MEMBERSHIPS - 1 }, (_, i) =>
        Array.from({ length: PER_ROOM }, (_, k) => request(poster, { type: 'chat', room: `wb-${i + 1}`, body: `m${k}` })),
      ).flat(),
    )
    member.ws.close()
    poster.ws.close()

    const toWelcome: number[] = []
    const toJoined: number[] = []
    let unread = 0
    for (let i = 0; i < CONNECTS; i++) {
      const t0 = performance.now()
      const c = await open(`${url}?user=${user}`)
      await c.wait((f) => f.type === 'welcome')
      toWelcome.push(performance.now() - t0)
      await c.wait((f) => f.type === 'joined' && f.room === c.frames[0]!.rooms.at(-1))
      toJoined.push(performance.now() - t0)
      unread = c.frames[0]!.unread
      const joined = c.frames.filter((f) => f.type === 'joined').length
      if (joined !== MEMBERSHIPS) throw new Error(`${engine}: ${joined} joined frames, expected ${MEMBERSHIPS}`)
      c.ws.close()
      await Bun.sleep(50)
    }
    const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!
    console.log(
      `${engine.padEnd(9)} ${MEMBERSHIPS} memberships, unread ${unread}: open→welcome p50 ${q(toWelcome, 0.5).toFixed(1)} ms p90 ${q(toWelcome, 0.9).toFixed(1)} ms max ${Math.max(...toWelcome).toFixed(1)} ms; open→last joined p50 ${q(toJoined, 0.5).toFixed(1)} ms max ${Math.max(...toJoined).toFixed(1)} ms (${CONNECTS} connects)`,
    )
    return {
      engine,
      memberships: MEMBERSHIPS,
      unread,
      welcomeMs: { p50: q(toWelcome, 0.5), p90: q(toWelcome, 0.9), max: Math.max(...toWelcome) },
      lastJoinedMs: { p50: q(toJoined, 0.5), max: Math.max(...toJoined) },
    }
  } finally {
    await server.stop()
  }
}

export async function welcomeBench() {
  const out = []
  for (const engine of ENGINES) {
    if (engine === 'memory') out.push(await measure(engine, {}))
    else if (engine === 'redis')
      out.push(await measure(engine, { REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: `wb-${Date.now().toString(36)}:` }))
    else if (engine === 'postgres') {
      const name = `chat_welcome_${Date.now().toString(36)}`
      const admin = postgres('postgres://postgres@127.0.0.1:5432/test', { max: 1, onnotice: () => {} })
      await admin.unsafe(`create database ${name}`)
      try {
        out.push(await measure(engine, { POSTGRES_DSN: `postgres://postgres@127.0.0.1:5432/${name}` }))
      } finally {
        await admin.unsafe(`drop database if exists ${name} with (force)`)
        await admin.end()
      }
    } else throw new Error(`--engines: unknown engine ${engine}`)
  }
  return out
}

if (import.meta.main) await welcomeBench()
