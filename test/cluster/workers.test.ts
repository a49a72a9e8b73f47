import { afterAll, describe, expect } from 'bun:test'
import { connect } from '../helpers/client'
import type { TestClient } from '../helpers/client'
import { startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { freePort, needService, dropRedisPrefix } from '../helpers/services'

const test = await needService('Redis', 6379)
const prefix = `test-workers-${process.pid}-${Date.now()}:`
let sup: RunningServer | undefined

afterAll(async () => {
  await sup?.stop('SIGKILL')
  for (const pid of workerPids()) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {}
  }
  await dropRedisPrefix(prefix)
})

/** Every worker pid the supervisor has logged. */
const workerPids = () => (sup?.logs ?? []).filter((l) => l.msg === 'worker started').map((l) => l.pid as number)
const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Connects until the socket lands on a worker whose node is not in `avoid` (the kernel picks). */
async function clientOn(url: string, avoid: Set<string>, user: string): Promise<TestClient> {
  for (let i = 0; i < 60; i++) {
    const c = await connect(url, { user })
    if (!avoid.has(c.welcome.node)) return c
    c.close()
  }
  throw new Error('60 connections all landed on the same worker')
}

describe('WORKERS=2', () => {
  test('two workers share the port; clients on both chat and recover across them; a killed worker is restarted; one SIGTERM drains all', async () => {
    const port = freePort()
    sup = await startServer({
      env: {
        WORKERS: '2',
        PORT: String(port),
        REDIS_URL: 'redis://127.0.0.1:6379',
        REDIS_PREFIX: prefix,
        RATE_LIMIT_PER_SEC: '0',
        NODE_ID: 'wk',
      },
    })
    await until(() => sup!.logs.filter((l) => l.msg === 'listening').length === 2, 'both workers listening', 15_000)
    const listening = sup.logs.filter((l) => l.msg === 'listening')
    expect(listening.map((l) => l.worker).sort()).toEqual([1, 2])
    expect(listening.map((l) => l.node).sort()).toEqual(['wk-1', 'wk-2'])
    const ws = `ws://127.0.0.1:${port}/ws`

    const a = await clientOn(ws, new Set(), 'w-alice')
    const b = await clientOn(ws, new Set([a.welcome.node]), 'w-bob')
    expect(b.welcome.node).not.toBe(a.welcome.node)
    for (const c of [a, b]) expect((await c.request({ type: 'join', room: 'wr' })).type).toBe('joined')
    for (let i = 1; i <= 3; i++) await a.request({ type: 'chat', room: 'wr', body: `m${i}` })
    expect(await b.next({ type: 'chat', room: 'wr', seq: 3 })).toMatchObject({ body: 'm3' })
    const epoch = b.all('joined').find((f) => f.room === 'wr')!.epoch

    // SIGKILL bob's worker: alice's keeps serving, bob comes back and recovers what he missed.
    const bobsWorker = listening.find((l) => l.node === b.welcome.node)!.worker as number
    const pid = sup.logs.find((l) => l.msg === 'worker started' && l.worker === bobsWorker)!.pid as number
    process.kill(pid, 'SIGKILL')
    await b.closed
    for (let i = 4; i <= 5; i++) expect((await a.request({ type: 'chat', room: 'wr', body: `m${i}` })).type).toBe('ack')
    await until(
      () => sup!.logs.filter((l) => l.msg === 'worker started' && l.worker === bobsWorker).length === 2,
      'the killed worker started again',
      15_000,
    )
    expect(sup.logs.find((l) => l.msg === 'worker exited; starting it again')).toMatchObject({ worker: bobsWorker })
    await until(
      () => sup!.logs.filter((l) => l.msg === 'listening' && l.worker === bobsWorker).length === 2,
      'the new worker listening',
      15_000,
    )
    const back = await clientOn(ws, new Set([a.welcome.node]), 'w-bob')
    expect(await back.request({ type: 'join', room: 'wr', since: 3, epoch })).toMatchObject({ recovered: true, seq: 5 })
    expect(
      back
        .all('chat')
        .filter((f) => f.room === 'wr')
        .map((f) => f.body),
    ).toEqual(['m4', 'm5'])
    await a.request({ type: 'chat', room: 'wr', body: 'live' })
    expect(await back.next({ type: 'chat', room: 'wr', body: 'live' })).toMatchObject({ seq: 6 })

    // One signal to the supervisor drains every worker: sockets close with 1001, all exit.
    const pids = workerPids().filter(alive)
    expect(pids).toHaveLength(2)
    sup.proc.kill('SIGTERM')
    expect((await a.closed).code).toBe(1001)
    expect((await back.closed).code).toBe(1001)
    expect(await sup.exited).toBe(0)
    for (const p of pids) expect(alive(p)).toBe(false)
  }, 60_000)

  test('workers whose supervisor is SIGKILLed drain themselves instead of holding the port', async () => {
    const port = freePort()
    sup = await startServer({
      env: { WORKERS: '2', PORT: String(port), REDIS_URL: 'redis://127.0.0.1:6379', REDIS_PREFIX: prefix, RATE_LIMIT_PER_SEC: '0' },
    })
    await until(() => sup!.logs.filter((l) => l.msg === 'listening').length === 2, 'both workers listening', 15_000)
    const pids = workerPids().filter(alive)
    expect(pids).toHaveLength(2)
    const c = await connect(`ws://127.0.0.1:${port}/ws`)
    await sup.stop('SIGKILL')
    expect((await c.closed).code).toBe(1001)
    await until(() => pids.every((p) => !alive(p)), 'both workers gone', 10_000)
  }, 30_000)
})
