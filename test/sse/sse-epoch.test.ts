import { afterAll, expect } from 'bun:test'
import { connect } from '../helpers/client'
import type { Frame, TestClient } from '../helpers/client'
import { startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { needService, privateRedis } from '../helpers/services'
import { openSse } from '../helpers/sse'

// Redis restarted without its data: the room goes on under a new epoch, and its members are
// told with a `joined` at the new epoch. The hub hands that frame to Bun's topic directly, not
// through the broker: a stream must get it too.

const test = await needService('Redis', 6379)
const servers: RunningServer[] = []
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop('SIGKILL')))
})

/** Sends chat `body` until it is acknowledged (Redis may be away), the frame id reused; bounded. */
async function sendUntilAcked(c: TestClient, room: string, body: string): Promise<Frame> {
  const answered = () => c.frames.filter((f) => f.id === body && (f.type === 'ack' || f.type === 'error'))
  for (let attempt = 0; attempt < 150; attempt++) {
    const before = answered().length
    c.send({ type: 'chat', room, body, id: body })
    for (let i = 0; i < 500 && answered().length === before; i++) await Bun.sleep(10)
    if (answered()[before]?.type === 'ack') return answered()[before]!
    await Bun.sleep(100)
  }
  throw new Error(`${body} was never acknowledged`)
}

test('Redis restarted empty: a stream gets the `joined` of the new epoch, as a /ws member does, then the new messages', async () => {
  const redis = await privateRedis({ keepData: false })
  try {
    const s = await startServer({ env: { RATE_LIMIT_PER_SEC: '0', REDIS_URL: redis.url, REDIS_PREFIX: `sse-epoch-${Date.now()}:` } })
    servers.push(s)
    const room = `sse-epoch-${Date.now().toString(36)}`
    const e = await openSse(s.url, { user: 'epoch-sse' })
    const w = await connect(s.ws, { user: 'epoch-ws' })
    const first = await e.request({ type: 'join', room })
    expect((await w.request({ type: 'join', room })).type).toBe('joined')
    await sendUntilAcked(w, room, 'old-1')
    await e.next({ type: 'chat', body: 'old-1' })
    await redis.kill()
    await redis.restart()
    await sendUntilAcked(w, room, 'new-1')
    const resetOf = (frames: Frame[]) => frames.find((f) => f.type === 'joined' && f.room === room && f.id === undefined)
    await until(() => resetOf(w.frames) !== undefined, 'the /ws member told of the new epoch', 20_000)
    await until(() => resetOf(e.frames) !== undefined, 'the stream told of the new epoch', 20_000)
    const reset = resetOf(e.frames)!
    expect(reset.epoch).not.toBe(first.epoch)
    expect([reset.epoch, reset.seq]).toEqual([resetOf(w.frames)!.epoch, resetOf(w.frames)!.seq])
    await e.next({ type: 'chat', body: 'new-1' }, 20_000)
    e.close()
    w.close()
  } finally {
    await redis.kill()
  }
}, 90_000)
