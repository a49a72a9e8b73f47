import { connect as tcpConnect } from 'node:net'
import type { Socket } from 'node:net'

/** A server frame as read off the wire: its opcode (1 text, 8 close, 9 ping, 10 pong) and payload. */
export interface WireFrame {
  opcode: number
  payload: Buffer
}

/**
 * A WebSocket client on a bare TCP socket, from a chosen loopback source address (127.0.0.2…:
 * one machine, several client addresses). It answers nothing by itself, pings included, so it
 * is the client that stopped answering; it records the HTTP answer and every server frame.
 */
export async function rawWs(port: number, path: string, opts: { localAddress?: string; headers?: Record<string, string> } = {}) {
  const socket: Socket = tcpConnect({ host: '127.0.0.1', port, localAddress: opts.localAddress })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve())
    socket.once('error', reject)
  })
  const extra = Object.entries(opts.headers ?? {})
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`,
  )
  let buf = Buffer.alloc(0)
  let head: string | undefined
  const frames: WireFrame[] = []
  let closed = false
  const waiters = new Set<() => void>()
  const wake = () => {
    for (const w of [...waiters]) w()
  }
  socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d])
    if (head === undefined) {
      const end = buf.indexOf('\r\n\r\n')
      if (end < 0) return
      head = buf.subarray(0, end).toString()
      buf = buf.subarray(end + 4)
    }
    for (;;) {
      if (!head.startsWith('HTTP/1.1 101') || buf.length < 2) break
      let len = buf[1]! & 0x7f
      let at = 2
      if (len === 126) {
        if (buf.length < 4) break
        len = buf.readUInt16BE(2)
        at = 4
      } else if (len === 127) {
        if (buf.length < 10) break
        len = Number(buf.readBigUInt64BE(2))
        at = 10
      }
      if (buf.length < at + len) break
      frames.push({ opcode: buf[0]! & 0x0f, payload: buf.subarray(at, at + len) })
      buf = buf.subarray(at + len)
    }
    wake()
  })
  socket.on('close', () => {
    closed = true
    wake()
  })
  const wait = (cond: () => boolean, what: string, ms: number) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (!cond()) return
        waiters.delete(check)
        clearTimeout(t)
        resolve()
      }
      const t = setTimeout(() => {
        waiters.delete(check)
        reject(new Error(`raw socket: no ${what} in ${ms} ms; head ${JSON.stringify(head)}; ${frames.length} frames`))
      }, ms)
      waiters.add(check)
      check()
    })
  await wait(() => head !== undefined || closed, 'HTTP answer', 5000)
  const status = Number(/^HTTP\/1\.1 (\d+)/.exec(head ?? '')?.[1] ?? 0)
  return {
    status,
    head: head ?? '',
    /** The body of a refusal (HTTP answer), once the server sent it. */
    body: async () => (await wait(() => buf.length > 0 || closed, 'body', 3000), buf.toString()),
    frames,
    texts: () => frames.filter((f) => f.opcode === 1).map((f) => JSON.parse(f.payload.toString())),
    /** Resolves once the server closed the TCP connection, with the code of its close frame (undefined without one). */
    closed: async (ms = 15_000) => {
      await wait(() => closed, 'close', ms)
      const c = frames.find((f) => f.opcode === 8)
      return c && c.payload.length >= 2 ? c.payload.readUInt16BE(0) : undefined
    },
    until: (cond: () => boolean, what: string, ms = 5000) => wait(cond, what, ms),
    isClosed: () => closed,
    destroy: () => socket.destroy(),
  }
}
