import { afterAll, describe, expect, test } from 'bun:test'
import { connect as tcp } from 'node:net'
import { connect } from '../helpers/client'
import { startServer, until } from '../helpers/server'
import type { RunningServer } from '../helpers/server'
import { openSse } from '../helpers/sse'

const servers: RunningServer[] = []
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop('SIGKILL')))
})

describe('a stream that cannot be pinged', () => {
  test('a client that reads but never POSTs stays past IDLE_TIMEOUT_S; comment lines keep the stream alive', async () => {
    const s = await startServer({ env: { RATE_LIMIT_PER_SEC: '0', IDLE_TIMEOUT_S: '2' } })
    servers.push(s)
    const e = await openSse(s.url, { user: 'live-listener' })
    await e.next({ type: 'joined' })
    // Five idle timeouts, and past one keepalive period (10 s).
    await Bun.sleep(11_000)
    expect(e.all('close')).toEqual([])
    expect(e.comments).toBeGreaterThanOrEqual(1)
    expect(await e.request({ type: 'ping' })).toMatchObject({ type: 'pong' })
    e.close()
  }, 30_000)

  test('a stream whose reader stopped is cut as a slow consumer (4008), and the room goes on for the others', async () => {
    const s = await startServer({ env: { RATE_LIMIT_PER_SEC: '0', MAX_BUFFERED_BYTES: '65536', MAX_BODY_CHARS: '60000' } })
    servers.push(s)
    // A raw client that sends its GET and then reads nothing: the server's writes pile up.
    const sock = tcp({ host: '127.0.0.1', port: s.port })
    await new Promise<void>((r) => sock.once('connect', () => r()))
    sock.write(`GET /sse?user=slow-reader HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n`)
    let head = ''
    await new Promise<void>((r) =>
      sock.on('data', (d) => {
        head += d.toString()
        if (head.includes('"type":"joined"')) r()
      }),
    )
    sock.pause()
    const w = await connect(s.ws, { user: 'slow-writer' })
    await w.next({ type: 'joined' })
    const body = 'y'.repeat(50_000)
    // Bounded: at most 2 000 messages of 50 kB (100 MB), stopped as soon as the cut is logged.
    const cut = () => s.logs.some((l) => l.msg === 'slow consumer closed' && l.transport === 'sse')
    for (let i = 0; i < 2000 && !cut(); i++) {
      await w.request({ type: 'chat', body: `${i}${body}` })
    }
    await until(cut, 'the slow SSE reader is cut', 20_000)
    // The writer is unaffected.
    expect(await w.request({ type: 'chat', body: 'after the cut' })).toMatchObject({ type: 'ack' })
    // What the reader finally reads ends with the close event of a slow consumer.
    let rest = ''
    sock.removeAllListeners('data')
    sock.on('data', (d) => (rest += d.toString()))
    sock.resume()
    await until(() => rest.includes('"type":"close"'), 'the close event', 20_000)
    expect(rest).toContain('data: {"type":"close","code":4008,"reason":"slow consumer"}')
    sock.destroy()
    w.close()
  }, 90_000)
})
