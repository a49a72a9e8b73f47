/**
 * A /ws connection starts before its upgrade (Session.start): the 101, `welcome` and the default
 * room's `joined` leave in one write, and a request that cannot become a socket starts nothing.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { connect as tcpConnect } from 'node:net'
import { connect } from '../helpers/client'
import { startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { memoryBroker } from '../../src/broker/memory'
import { loadConfig } from '../../src/config'
import { createHub } from '../../src/hub/hub'
import { configureLog } from '../../src/log'
import { memoryMembers } from '../../src/members/memory'
import { createMetrics } from '../../src/metrics'

let s: RunningServer
beforeAll(async () => {
  s = await startServer({ env: { DEFAULT_ROOM: 'lobby', API_KEY: 'connect-write-api-key-01' } })
})
afterAll(() => s.stop())

/** Sends an upgrade request on a bare TCP socket; resolves with the bytes of its first read. */
function firstRead(path: string, upgradeHeaders = true): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host: '127.0.0.1', port: s.port })
    socket.once('error', reject)
    socket.once('data', (chunk) => {
      resolve(chunk.toString('latin1'))
      socket.destroy()
    })
    const upgrade = upgradeHeaders
      ? 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n'
      : ''
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${upgrade}\r\n`)
  })
}

describe('the write of a connect', () => {
  test('the 101, `welcome` and the default room`s `joined` come in one read', async () => {
    const first = await firstRead('/ws?user=cw-one&name=One')
    expect(first.startsWith('HTTP/1.1 101')).toBe(true)
    const welcomeAt = first.indexOf('{"type":"welcome"')
    const joinedAt = first.indexOf('{"type":"joined","room":"lobby"')
    expect(welcomeAt).toBeGreaterThan(0)
    expect(joinedAt).toBeGreaterThan(welcomeAt)
  })

  test('a GET /ws without an upgrade is 400 and starts no connection (no log line, no membership)', async () => {
    const answer = await firstRead('/ws?user=cw-plain&name=Plain', false)
    expect(answer.startsWith('HTTP/1.1 400')).toBe(true)
    expect(answer).toContain('expected a WebSocket upgrade')
    // A connect after it is logged and a member; the plain GET's user is neither.
    const c = await connect(s.ws, { user: 'cw-after', name: 'After' })
    await until(() => s.logs.some((l) => l.msg === 'connected' && l.user === 'cw-after'), 'the later connect logged')
    expect(s.logs.some((l) => l.msg === 'connected' && l.user === 'cw-plain')).toBe(false)
    const members = await fetch(`${s.url}/api/rooms/lobby/members`, { headers: { authorization: 'Bearer connect-write-api-key-01' } })
    expect(members.status).toBe(200)
    const body = JSON.stringify(await members.json())
    expect(body).toContain('cw-after')
    expect(body).not.toContain('cw-plain')
    c.close()
  })

  test('a client gone before its 101 leaves nothing behind: its connection is closed and counted out', async () => {
    // Many upgrades whose sockets close at once: each either never opens or closes right after.
    const sockets = Array.from({ length: 50 }, (_, i) => {
      const socket = tcpConnect({ host: '127.0.0.1', port: s.port })
      socket.on('error', () => {})
      socket.write(
        `GET /ws?user=cw-gone-${i}&name=Gone HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        () => socket.destroy(),
      )
      return socket
    })
    await until(() => sockets.every((x) => x.destroyed), 'all closed')
    const metric = async () => {
      const text = await (await fetch(`${s.url}/metrics`)).text()
      return Number(/^chat_connections(?:\{[^}]*\})? (\d+)/m.exec(text)?.[1] ?? Number.NaN)
    }
    await until(async () => (await metric()) === 0, `no connection left open (${await metric()})`, 5000)
    const opened = s.logs.filter((l) => l.msg === 'connected' && String(l.user).startsWith('cw-gone-')).length
    const closed = s.logs.filter((l) => l.msg === 'disconnected' && String(l.user).startsWith('cw-gone-')).length
    expect(closed).toBe(opened)
  }, 15_000)
})

/** A hub on the memory engine, in-process, with sockets that record what is done to them. */
async function inProcess() {
  configureLog('silent')
  const config = loadConfig({ LOG_LEVEL: 'silent', DEFAULT_ROOM: 'lobby', RATE_LIMIT_PER_SEC: '0' })
  const broker = memoryBroker({ historyLimit: 100 })
  const server = { publish: () => 1, subscriberCount: () => 0 }
  const hub = createHub({ config, broker, metrics: createMetrics(), nodeId: 'cw', server: () => server as never, members: memoryMembers() })
  await broker.start(hub.deliver, hub.reset)
  const socket = () => {
    const s = {
      sent: [] as Record<string, unknown>[],
      closed: undefined as [number, string] | undefined,
      subscribed: new Set<string>(),
      send: (f: string) => (s.sent.push(JSON.parse(f)), f.length),
      cork: (f: () => void) => f(),
      subscribe: (t: string) => void s.subscribed.add(t),
      unsubscribe: (t: string) => void s.subscribed.delete(t),
      publish: () => 1,
      ping: () => 1,
      getBufferedAmount: () => 0,
      close: (code: number, reason: string) => void (s.closed = [code, reason]),
    }
    return s
  }
  const meta = { remote: '127.0.0.1', userAgent: 'test' }
  return { hub, broker, socket, meta }
}

describe('a connection started before its socket (Session.start)', () => {
  test('a message published between the start and the socket reaches it once, after `welcome` and `joined`', async () => {
    const { hub, socket, meta } = await inProcess()
    const started = await hub.start({ user: { id: 'early', name: 'Early' } }, meta)
    await hub.publish('lobby', { id: 'server', name: 'server' }, 'while the 101 was on its way', undefined)
    const ws = socket()
    started.attach(ws as never)
    expect(ws.sent.map((f) => f.type)).toEqual(['welcome', 'joined', 'chat'])
    const joined = ws.sent[1]!
    const chat = ws.sent[2]!
    expect(chat.body).toBe('while the 101 was on its way')
    expect(chat.seq as number).toBeGreaterThan(joined.seq as number)
    expect(ws.subscribed.has('r:lobby')).toBe(true)
    expect(started.conn.loading).toBeUndefined()
  })

  test('abandoned (the upgrade failed): the connection is gone, never present, and sends nothing', async () => {
    const { hub, broker, meta } = await inProcess()
    const started = await hub.start({ user: { id: 'never', name: 'Never' } }, meta)
    expect(hub.size).toBe(1)
    started.abandon()
    expect(hub.size).toBe(0)
    await Bun.sleep(10)
    expect(await broker.presence.count('lobby')).toBe(0)
  })

  test('closed while it had no socket (a drain): the socket is closed with that code at once, and gets no `welcome`', async () => {
    const { hub, socket, meta } = await inProcess()
    const started = await hub.start({ user: { id: 'drained', name: 'Drained' } }, meta)
    const draining = hub.drain(1000)
    const ws = socket()
    started.attach(ws as never)
    expect(ws.closed?.[0]).toBe(1001)
    expect(ws.sent.some((f) => f.type === 'welcome')).toBe(false)
    // Bun's close event follows the close.
    hub.close(started.conn, 1001, '')
    expect(await draining).toBe(0)
  })
})
