// A join the engine cannot answer (Redis saturated or away) is refused `unavailable`, whether the
// connection is new to the room or already live in it (a resume of the default room after a
// reconnect is the latter). Seen in a reconnect storm: the second kind was answered `internal`.
import { afterAll, describe, expect, test } from 'bun:test'
import { connect } from '../helpers/client'
import { createApp } from '../../src/app'
import { memoryBroker } from '../../src/broker/memory'
import type { Broker } from '../../src/broker/types'
import { loadConfig } from '../../src/config'
import { memoryMembers } from '../../src/members/memory'
import { createMetrics } from '../../src/metrics'
import { configureLog } from '../../src/log'

configureLog('silent')
let failing = false
const inner = memoryBroker({ historyLimit: 10 })
const broker: Broker = {
  ...inner,
  since: (room, since) => (failing ? Promise.reject(new Error('Command timed out')) : inner.since(room, since)),
}
/** Redis answering too late (ioredis's commandTimeout): what a saturated engine looks like to a frame. */
let slowMembers = false
const innerMembers = memoryMembers()
const members = {
  ...innerMembers,
  standing: (room: string, user: string) =>
    slowMembers ? Promise.reject(new Error('Command timed out')) : innerMembers.standing(room, user),
}
const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent' })
const { app, hub } = createApp({ config, broker, metrics: createMetrics(), nodeId: 'join-unavailable', members })
app.listen({ hostname: '127.0.0.1', port: 0 })
await broker.start(hub.deliver)
const ws = `ws://127.0.0.1:${app.server!.port}/ws`
afterAll(() => app.server!.stop(true))

describe('a join whose past cannot be read', () => {
  test('is refused unavailable for a room the connection is live in, and for a new one; the next try works', async () => {
    const c = await connect(ws, { user: 'alice' })
    const first = await c.request({ type: 'join', room: 'live' })
    expect(first.type).toBe('joined')
    failing = true
    const again = await c.request({ type: 'join', room: 'live', since: 0, epoch: first.epoch })
    expect(again).toMatchObject({ type: 'error', code: 'unavailable' })
    const fresh = await c.request({ type: 'join', room: 'other', since: 0 })
    expect(fresh).toMatchObject({ type: 'error', code: 'unavailable' })
    failing = false
    expect((await c.request({ type: 'join', room: 'live', since: 0, epoch: first.epoch })).type).toBe('joined')
    c.close()
  })

  test('a frame whose engine answers too late is refused unavailable, not internal', async () => {
    const c = await connect(ws, { user: 'bob' })
    slowMembers = true
    const r = await c.request({ type: 'join', room: 'late-standing' })
    slowMembers = false
    expect(r).toMatchObject({ type: 'error', code: 'unavailable' })
    expect(r.message).toContain('timed out')
    expect((await c.request({ type: 'join', room: 'late-standing' })).type).toBe('joined')
    c.close()
  })
})
