/**
 * A minimal WebSocket client for the load generator, on raw TCP (Bun.connect, or node:net when
 * a source address is needed). Why not Bun's WebSocket client: it dispatches one MessageEvent
 * (a JS object and a string) per frame, so 1 000 receivers would measure the generator rather
 * than the server. Here a TCP chunk holding many frames costs one callback, and a frame costs
 * a header parse; payloads are only looked at when a scenario needs them.
 *
 * Client frames are masked with the all-zero key (RFC 6455 allows any key), so the payload
 * goes out as-is.
 */
import net from 'node:net'

export const OP_TEXT = 1
export const OP_CLOSE = 8
export const OP_PING = 9
export const OP_PONG = 10

const enc = new TextEncoder()

export function handshake(host: string, port: number, path: string): Uint8Array {
  return enc.encode(
    `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nUser-Agent: chat-server-bench\r\n\r\n`,
  )
}

/** One masked (zero key) client frame. */
export function encodeFrame(payload: Uint8Array | string, opcode = OP_TEXT): Uint8Array {
  const body = typeof payload === 'string' ? enc.encode(payload) : payload
  const n = body.length
  const hdr = n < 126 ? 6 : n < 65536 ? 8 : 14
  const out = new Uint8Array(hdr + n)
  out[0] = 0x80 | opcode
  if (n < 126) out[1] = 0x80 | n
  else if (n < 65536) {
    out[1] = 0x80 | 126
    out[2] = n >> 8
    out[3] = n & 0xff
  } else {
    out[1] = 0x80 | 127
    new DataView(out.buffer).setBigUint64(2, BigInt(n))
  }
  // mask key: 4 zero bytes, already zero
  out.set(body, hdr)
  return out
}

export type FrameHandler = (opcode: number, buf: Uint8Array, start: number, end: number) => void

/**
 * Parses the server's byte stream: first the HTTP 101 answer, then unmasked frames.
 * Keeps a partial frame between chunks.
 */
export class WsStream {
  upgraded = false
  failed: string | undefined
  private rest: Uint8Array | undefined

  constructor(
    private readonly onFrame: FrameHandler,
    private readonly onUpgrade: () => void,
  ) {}

  push(chunk: Uint8Array) {
    let buf = chunk
    if (this.rest) {
      const joined = new Uint8Array(this.rest.length + chunk.length)
      joined.set(this.rest)
      joined.set(chunk, this.rest.length)
      buf = joined
      this.rest = undefined
    }
    let i = 0
    if (!this.upgraded) {
      const end = indexOfCrlfCrlf(buf)
      if (end < 0) {
        this.rest = buf
        return
      }
      const status = String.fromCharCode(...buf.subarray(0, Math.min(end, 64)))
      if (!status.startsWith('HTTP/1.1 101')) {
        this.failed = new TextDecoder().decode(buf.subarray(0, Math.min(buf.length, 300)))
        return
      }
      this.upgraded = true
      i = end + 4
      this.onUpgrade()
    }
    const n = buf.length
    while (i + 2 <= n) {
      const b0 = buf[i]!
      let len = buf[i + 1]! & 0x7f
      let p = i + 2
      if (len === 126) {
        if (p + 2 > n) break
        len = (buf[p]! << 8) | buf[p + 1]!
        p += 2
      } else if (len === 127) {
        if (p + 8 > n) break
        len = Number(new DataView(buf.buffer, buf.byteOffset + p, 8).getBigUint64(0))
        p += 8
      }
      if (p + len > n) break
      this.onFrame(b0 & 0x0f, buf, p, p + len)
      i = p + len
    }
    if (i < n) this.rest = buf.slice(i)
  }
}

function indexOfCrlfCrlf(b: Uint8Array): number {
  for (let i = 0; i + 3 < b.length; i++) if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) return i
  return -1
}

/** True when the payload starts with `{"type":"chat"` (server and bare reference alike). */
export function isChat(buf: Uint8Array, start: number, end: number): boolean {
  return end - start > 14 && buf[start + 9] === 99 /* c */ && buf[start + 10] === 104 /* h */ && buf[start + 2] === 116 /* t */
}

export function startsWith(buf: Uint8Array, start: number, end: number, prefix: Uint8Array): boolean {
  if (end - start < prefix.length) return false
  for (let k = 0; k < prefix.length; k++) if (buf[start + k] !== prefix[k]) return false
  return true
}

/** Wall clock in microseconds, sub-millisecond, comparable between processes of one machine. */
export const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000)

/** Reads the `~<microseconds>~` stamp a sender put in the body; -1 when there is none. */
export function stampOf(buf: Uint8Array, start: number, end: number): number {
  let i = buf.indexOf(126, start)
  if (i < 0 || i >= end) return -1
  let v = 0
  for (i++; i < end; i++) {
    const c = buf[i]!
    if (c === 126) return v
    v = v * 10 + (c - 48)
  }
  return -1
}

/** A connected client socket, whatever the transport. */
export interface Conn {
  write(data: Uint8Array): void
  /** Bytes this side still holds because the kernel would not take them yet. */
  pending(): number
  close(): void
  open: boolean
}

export interface ConnectOptions {
  host: string
  port: number
  path: string
  /** Source address (node:net transport); Bun.connect cannot bind one. */
  localAddress?: string
  onFrame: FrameHandler
  onUpgrade: (c: Conn) => void
  onClose: (why: string) => void
  onDrain?: () => void
}

/** Opens a TCP connection, sends the upgrade and feeds a WsStream. Pings are answered. */
export function connectWs(o: ConnectOptions): Conn {
  let conn!: Conn
  const onFrame: FrameHandler = (op, buf, s, e) => {
    if (op === OP_PING) conn.write(encodeFrame(buf.slice(s, e), OP_PONG))
    o.onFrame(op, buf, s, e)
  }
  const stream = new WsStream(onFrame, () => o.onUpgrade(conn))
  const hs = handshake(o.host, o.port, o.path)
  let closed = false
  const closeOnce = (why: string) => {
    if (closed) return
    closed = true
    conn.open = false
    o.onClose(why)
  }
  const feed = (chunk: Uint8Array) => {
    stream.push(chunk)
    if (stream.failed) {
      closeOnce(`upgrade refused: ${stream.failed.split('\r\n')[0]}`)
      conn.close()
    }
  }

  if (o.localAddress) {
    const s = net.connect({ host: o.host, port: o.port, localAddress: o.localAddress })
    s.setNoDelay(true)
    conn = {
      open: false,
      write: (d) => void s.write(d),
      pending: () => s.writableLength,
      close: () => s.destroy(),
    }
    s.on('connect', () => {
      conn.open = true
      s.write(hs)
    })
    s.on('data', (d: Buffer) => feed(d))
    s.on('drain', () => o.onDrain?.())
    s.on('error', (e) => closeOnce(`error: ${e.message}`))
    s.on('close', () => closeOnce('closed'))
    return conn
  }

  let sock: import('bun').Socket<undefined> | undefined
  let queue: Uint8Array[] = []
  let queued = 0
  const flush = () => {
    while (sock && queue.length) {
      const head = queue[0]!
      const n = sock.write(head)
      if (n === head.length) {
        queue.shift()
        queued -= n
      } else {
        if (n > 0) {
          queue[0] = head.subarray(n)
          queued -= n
        }
        return
      }
    }
  }
  conn = {
    open: false,
    write(d) {
      if (!sock) {
        queue.push(d)
        queued += d.length
        return
      }
      if (queue.length) {
        queue.push(d)
        queued += d.length
        return flush()
      }
      const n = sock.write(d)
      if (n < d.length) {
        queue.push(d.subarray(Math.max(0, n)))
        queued += d.length - Math.max(0, n)
      }
    },
    pending: () => queued,
    close: () => sock?.end(),
  }
  Bun.connect({
    hostname: o.host,
    port: o.port,
    socket: {
      open(s) {
        sock = s
        s.setNoDelay(true)
        conn.open = true
        const q = queue
        queue = []
        queued = 0
        conn.write(hs)
        for (const d of q) conn.write(d)
      },
      data: (_s, d) => feed(d),
      drain() {
        flush()
        if (queue.length === 0) o.onDrain?.()
      },
      close: () => closeOnce('closed'),
      error: (_s, e) => closeOnce(`error: ${e.message}`),
      connectError: (_s, e) => closeOnce(`connect error: ${e.message}`),
    },
  }).catch((e: Error) => closeOnce(`connect error: ${e.message}`))
  return conn
}
