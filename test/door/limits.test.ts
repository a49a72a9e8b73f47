import { afterAll, describe, expect, test } from 'bun:test'
import { connect as tcpConnect } from 'node:net'
import type { Socket } from 'node:net'
import { connect } from '../helpers/client'
import { startServer, until } from '../helpers/server'
import { createApp } from '../../src/app'
import { memoryBroker } from '../../src/broker/memory'
import { loadConfig } from '../../src/config'
import { memoryMembers } from '../../src/members/memory'
import { createMetrics } from '../../src/metrics'
import { configureLog } from '../../src/log'
import type { RunningServer } from '../helpers/server'

const servers: RunningServer[] = []
const start = async (env: Record<string, string>) => {
  const s = await startServer({ env })
  servers.push(s)
  return s
}
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()))
})

/** A raw WebSocket client that completes the handshake and then reads nothing. */
async function stalledClient(port: number, path = '/ws'): Promise<{ socket: Socket; closedWith: () => number | undefined }> {
  const socket = tcpConnect({ host: '127.0.0.1', port })
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  )
  let head = Buffer.alloc(0)
  await new Promise<void>((resolve) => {
    const onData = (d: Buffer) => {
      head = Buffer.concat([head, d])
      if (head.includes('\r\n\r\n')) {
        socket.off('data', onData)
        resolve()
      }
    }
    socket.on('data', onData)
  })
  socket.pause()
  return { socket, closedWith: () => undefined }
}

describe('limits', () => {
  test('a frame over MAX_FRAME_BYTES closes the socket with 1009', async () => {
    const s = await start({ MAX_FRAME_BYTES: '1024' })
    const c = await connect(s.ws)
    c.sendRaw(JSON.stringify({ type: 'chat', body: 'x'.repeat(2000) }))
    expect((await c.closed).code).toBe(1009)
    const ok = await connect(s.ws) // the server goes on
    expect((await ok.request({ type: 'ping' })).type).toBe('pong')
    ok.close()
  })

  test('rate limit: rate_limited errors, then 1008 for a client that keeps flooding', async () => {
    const s = await start({ RATE_LIMIT_PER_SEC: '2', RATE_LIMIT_BURST: '5' })
    const c = await connect(s.ws)
    const other = await connect(s.ws)
    for (let i = 0; i < 12; i++) c.send({ type: 'ping', id: `p${i}` })
    const closed = await c.closed
    expect(closed.code).toBe(1008)
    expect(c.all('pong')).toHaveLength(5)
    const limited = c.all('error').filter((e) => e.code === 'rate_limited')
    expect(limited).toHaveLength(3)
    expect(limited[0]!.id).toBe('p5')
    // the other connection has its own bucket
    expect((await other.request({ type: 'ping' })).type).toBe('pong')
    const metrics = await (await fetch(`${s.url}/metrics`)).text()
    expect(metrics).toMatch(/chat_rate_limited_total [1-9]/)
    other.close()
  })

  test('a client that slows down after a warning is not closed', async () => {
    const s = await start({ RATE_LIMIT_PER_SEC: '20', RATE_LIMIT_BURST: '2' })
    const c = await connect(s.ws)
    for (let i = 0; i < 3; i++) c.send({ type: 'ping' })
    expect((await c.next({ type: 'error' })).code).toBe('rate_limited')
    await Bun.sleep(200)
    expect((await c.request({ type: 'ping' })).type).toBe('pong')
    c.close()
  })

  test('ALLOWED_ORIGINS refuses other origins with 403 before upgrade', async () => {
    const s = await start({ ALLOWED_ORIGINS: 'https://app.example' })
    const headers = {
      upgrade: 'websocket',
      connection: 'Upgrade',
      'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
      'sec-websocket-version': '13',
    }
    const refused = await fetch(`${s.url}/ws`, { headers: { ...headers, origin: 'https://evil.example' } })
    expect(refused.status).toBe(403)
    expect(await refused.json()).toEqual({ error: 'forbidden', reason: 'origin_not_allowed' })
    const allowed = await connect(s.ws, {}, { headers: { origin: 'https://app.example' } })
    expect(allowed.welcome.type).toBe('welcome')
    allowed.close()
  })

  test('/ws without an upgrade is a 400 with a JSON reason, and gives its connection slot back; other methods are 404', async () => {
    const s = await start({ MAX_CONNECTIONS: '1' })
    const plain = await fetch(`${s.url}/ws`)
    expect(plain.status).toBe(400)
    expect(await plain.json()).toEqual({ error: 'bad_request', reason: 'expected a WebSocket upgrade' })
    const post = await fetch(`${s.url}/ws`, { method: 'POST', body: '{}' })
    expect(post.status).toBe(404)
    expect(await post.json()).toEqual({ error: 'not_found' })
    // MAX_CONNECTIONS=1: the refused request did not keep the only slot.
    const c = await connect(s.ws)
    expect(c.welcome.type).toBe('welcome')
    c.close()
  })

  test('a consumer that stops reading is closed with 4008 and never stalls the room', async () => {
    const s = await start({ MAX_BUFFERED_BYTES: '65536', RATE_LIMIT_PER_SEC: '0' })
    const stalled = await stalledClient(s.port)
    const reader = await connect(s.ws)
    const sender = await connect(s.ws)
    const body = 'x'.repeat(3900)
    // Enough to fill the kernel's socket buffers and then Bun's: bounded in count and time.
    // Paced by the reader (at most 12 frames, 47 KB, ahead of it), so that on a loaded machine
    // the reader is never the slow consumer: only the stalled socket is.
    let sent = 0
    const deadline = Date.now() + 40_000
    for (let i = 0; i < 6000 && !s.logs.some((l) => l.msg === 'slow consumer closed'); i++) {
      sender.send({ type: 'chat', body })
      sent++
      if (i % 12 === 11) while (reader.all('chat').length < sent && Date.now() < deadline) await Bun.sleep(1)
    }
    await until(() => s.logs.some((l) => l.msg === 'slow consumer closed'), 'the slow consumer to be closed', 10_000)
    expect(s.logs.filter((l) => l.msg === 'slow consumer closed')).toHaveLength(1)
    // The reader got every message, in order: the room did not stall.
    await until(() => reader.all('chat').length >= sent, `reader to get all ${sent} messages`, 10_000)
    const seqs = reader.all('chat').map((f) => f.seq)
    seqs.forEach((q, i) => i > 0 && expect(q).toBe(seqs[i - 1]! + 1))
    // The stalled socket, once read, ends with a close frame carrying 4008.
    stalled.socket.resume()
    const chunks: Buffer[] = []
    stalled.socket.on('data', (d: Buffer) => chunks.push(d))
    await new Promise((r) => stalled.socket.once('close', r))
    const all = Buffer.concat(chunks)
    // The last frame is a close frame: 0x88, length, code (big endian).
    const i = all.lastIndexOf(0x88)
    const closeFrame = all.subarray(i)
    expect(closeFrame.readUInt16BE(2)).toBe(4008)
    const metrics = await (await fetch(`${s.url}/metrics`)).text()
    expect(metrics).toMatch(/chat_slow_consumer_closes_total 1/)
    reader.close()
    sender.close()
  }, 90_000)

  test('a client silent for IDLE_TIMEOUT_S is closed', async () => {
    const s = await start({ IDLE_TIMEOUT_S: '5' })
    const silent = await stalledClient(s.port)
    silent.socket.resume() // reads, but never answers a ping
    silent.socket.on('data', () => {})
    const started = Date.now()
    await new Promise((r) => silent.socket.once('close', r))
    expect(Date.now() - started).toBeGreaterThan(3000)
    await until(() => s.logs.some((l) => l.msg === 'disconnected'), 'the disconnect to be logged')
  }, 15_000)

  test('SIGTERM: readyz 503, new upgrades refused, sockets closed with 1001, exit 0', async () => {
    const s = await start({ SHUTDOWN_GRACE_S: '3' })
    const clients = await Promise.all([0, 1, 2].map(() => connect(s.ws)))
    s.proc.kill('SIGTERM')
    const codes = await Promise.all(clients.map((c) => c.closed.then((x) => x.code)))
    expect(codes).toEqual([1001, 1001, 1001])
    expect(await s.exited).toBe(0)
    expect(s.logs.some((l) => l.msg === 'draining')).toBe(true)
    expect(s.logs.some((l) => l.msg === 'stopped')).toBe(true)
  })

  test('while draining, readyz is 503 and upgrades get 503', async () => {
    // In-process: a real drain closes sockets at once, so the window is too short to hit from outside.
    const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent' })
    configureLog('silent')
    const broker = memoryBroker({ historyLimit: 10 })
    const { app, hub } = createApp({ config, broker, metrics: createMetrics(), nodeId: 'drain-test', members: memoryMembers() })
    await broker.start(hub.deliver)
    app.listen({ hostname: '127.0.0.1', port: 0 })
    const url = `http://127.0.0.1:${app.server!.port}`
    try {
      const c = await connect(`ws://127.0.0.1:${app.server!.port}/ws`)
      expect((await fetch(`${url}/readyz`)).status).toBe(200)
      expect(await hub.drain(1000)).toBe(0)
      expect((await c.closed).code).toBe(1001)
      const ready = await fetch(`${url}/readyz`)
      expect(ready.status).toBe(503)
      expect(await ready.json()).toEqual({ status: 'unready', checks: { broker: 'ok', node: 'draining' } })
      const up = await fetch(`${url}/ws`, {
        headers: {
          upgrade: 'websocket',
          connection: 'Upgrade',
          'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
          'sec-websocket-version': '13',
        },
      })
      expect(up.status).toBe(503)
    } finally {
      app.server!.stop(true)
    }
  })
})
