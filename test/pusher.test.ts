import { afterAll, describe, expect, test } from 'bun:test'
import { connect } from './helpers/client'
import { startServer, until } from './helpers/server'
import type { RunningServer } from './helpers/server'
import { APP, authEndpoint, pusherClient, pusherEnv, rawPusher, sdk } from './helpers/pusher'

let s: RunningServer
const auth = authEndpoint()
let n = 0
const uid = (what: string) => `${what}-${process.pid}-${++n}`

describe('pusher protocol on one node', () => {
  test('start', async () => {
    s = await startServer({ env: { ...pusherEnv, RATE_LIMIT_PER_SEC: '0' } })
  })
  afterAll(() => s?.stop('SIGKILL'))

  test('pusher-js connects: connection_established with a socket id and activity_timeout', async () => {
    const raw = await rawPusher(s)
    expect(raw.first.event).toBe('pusher:connection_established')
    expect(raw.socketId).toMatch(/^\d+\.\d+$/)
    expect(raw.first.data.activity_timeout).toBeGreaterThan(0)
    raw.send({ event: 'pusher:ping', data: {} })
    expect((await raw.next((f) => f.event === 'pusher:pong')).event).toBe('pusher:pong')
    const c = await pusherClient(s, auth)
    expect(c.socketId).toMatch(/^\d+\.\d+$/)
    expect(c.pusher.connection.state).toBe('connected')
  })

  test('a public channel gets an event triggered with the server SDK', async () => {
    const c = await pusherClient(s, auth)
    const ch = await c.subscribe(uid('news'))
    const got = c.next(ch, 'breaking')
    await sdk(s).trigger(ch.name, 'breaking', { headline: 'hi' })
    expect(await got).toEqual({ headline: 'hi' })
  })
})
