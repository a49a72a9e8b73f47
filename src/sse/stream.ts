import type { Server, ServerWebSocket } from 'bun'
import { heard } from '../hub/admission'
import type { Ticket } from '../hub/admission'
import type { Conn } from '../hub/connection'

/**
 * One SSE stream: the response body of a `GET /sse`, and the socket the hub sees. The hub's
 * session logic (welcome, rooms, dispatch, rate limit, errors, sweep, drain) works on a Conn
 * whose `ws` is a ServerWebSocket; `SseSocket` is the part of that interface the hub uses,
 * written on a ReadableStream's controller, so the session logic is reused unchanged. Topics
 * are the per-topic sets of the SSE fan-out (fanout.ts), since Bun's topics carry WebSockets only.
 */

const encoder = new TextEncoder()

/** An event's bytes: `data: <frame>\n\n` (frames are one-line JSON). Made once per frame, whoever gets it. */
export const eventBytes = (frame: string): Uint8Array => encoder.encode(`data: ${frame}\n\n`)

/** A comment line: the server's keepalive, and the answer to the sweep's ping. */
export const COMMENT = encoder.encode(':\n\n')

/** Where the stream's subscriptions live (fanout.ts) and what ends it (index.ts). */
export interface StreamHost {
  subscribe(topic: string, s: SseStream): void
  unsubscribe(topic: string, s: SseStream): void
  /** Bun's server, for `publish` (a frame to every WebSocket of a topic when this stream is the one skipped). */
  server(): Server<unknown>
  /** After the stream ended (closed by the server or the client): its ticket, session and Conn go. */
  ended(s: SseStream, code: number, reason: string): void
}

/** The subset of Bun's ServerWebSocket the hub calls (session.ts, welcome.ts, rooms.ts, delivery.ts, upkeep.ts). */
export interface SseSocket {
  send(frame: string): number
  subscribe(topic: string): void
  unsubscribe(topic: string): void
  isSubscribed(topic: string): boolean
  publish(topic: string, frame: string): number
  cork<T>(fn: () => T): T
  close(code?: number, reason?: string): void
  ping(): void
  getBufferedAmount(): number
  readonly data: unknown
  readonly remoteAddress: string
}

/**
 * A stream and its admission ticket in one record (as /ws keeps them in its Socket). `write`
 * returns the bytes queued, 0 when they would take the stream past `maxBuffered` (not queued:
 * the hub then closes it as a slow consumer, 4008, as /ws), -1 once the stream ended.
 */
export class SseStream implements Ticket, SseSocket {
  // Ticket (hub/admission.ts)
  ip = ''
  countedUser: string | undefined = undefined
  opened = false
  released = false
  timer: Ticket['timer'] = undefined

  conn: Conn | undefined = undefined
  readonly topics = new Set<string>()
  /** The client frames being handled, in order (index.ts `dispatch`); undefined when none waits. */
  pending: Promise<void> | undefined = undefined
  /** True once the stream ended: nothing more is written to it. */
  done = false
  private controller!: ReadableStreamDefaultController<Uint8Array>
  private welcomed = false
  readonly body: ReadableStream<Uint8Array>

  constructor(
    readonly session: string,
    readonly remoteAddress: string,
    private readonly maxBuffered: number,
    private readonly host: StreamHost,
  ) {
    this.body = new ReadableStream<Uint8Array>(
      {
        start: (c) => {
          this.controller = c
        },
        // The client went away (or the connection broke): the stream ends as a /ws socket
        // that closed without a close frame.
        cancel: () => this.end(1006, 'stream ended by the client'),
      },
      // Queued bytes are the stream's buffered amount (see getBufferedAmount).
      { highWaterMark: maxBuffered, size: (chunk) => chunk?.byteLength ?? 0 },
    )
  }

  get data(): unknown {
    return this
  }

  /** Bytes queued in the stream and not yet taken by the connection. */
  getBufferedAmount(): number {
    return this.done ? 0 : this.maxBuffered - (this.controller.desiredSize ?? this.maxBuffered)
  }

  write(bytes: Uint8Array): number {
    // An ended stream takes nothing; -1 (not 0) so that the hub does not count it a slow consumer too.
    if (this.done) return -1
    if (this.getBufferedAmount() + bytes.byteLength > this.maxBuffered) return 0
    try {
      this.controller.enqueue(bytes)
    } catch {
      // The stream errored or closed under us: it is over.
      this.end(1006, 'stream broken')
      return 0
    }
    return bytes.byteLength
  }

  send(frame: string): number {
    if (!this.welcomed && frame.startsWith('{"type":"welcome",')) {
      // The first frame is `welcome`; here it carries the session a POST names.
      this.welcomed = true
      frame = `{"type":"welcome","session":${JSON.stringify(this.session)},${frame.slice(18)}`
    }
    return this.write(eventBytes(frame))
  }

  subscribe(topic: string) {
    if (this.done || this.topics.has(topic)) return
    this.topics.add(topic)
    this.host.subscribe(topic, this)
  }

  unsubscribe(topic: string) {
    if (this.topics.delete(topic)) this.host.unsubscribe(topic, this)
  }

  isSubscribed(topic: string) {
    return this.topics.has(topic)
  }

  /** Everyone but this stream: its WebSocket peers through Bun; the SSE fan-out skips `except` itself. */
  publish(topic: string, frame: string): number {
    return this.host.server().publish(topic, frame)
  }

  cork<T>(fn: () => T): T {
    return fn()
  }

  /**
   * The sweep's ping after IDLE_TIMEOUT_S/2 without a POST. A stream cannot be answered, so a
   * client that only listens is alive as long as its stream takes what is written: the ping is
   * a comment, and it counts as answered when nothing is left queued. A stream whose bytes stay
   * queued is not answered and is closed at the idle timeout (1000), as a silent /ws socket.
   */
  ping() {
    if (this.done || !this.conn) return
    if (this.getBufferedAmount() === 0) heard(this.conn)
    this.write(COMMENT)
  }

  /** The server ends the stream: `{"type":"close",code,reason}` first (the close code /ws would use). */
  close(code = 1000, reason = '') {
    if (this.done) return
    try {
      // Past the buffer limit too: a slow consumer is told why before its stream ends.
      this.controller.enqueue(eventBytes(`{"type":"close","code":${code},"reason":${JSON.stringify(reason)}}`))
      this.controller.close()
    } catch {}
    this.end(code, reason)
  }

  private end(code: number, reason: string) {
    if (this.done) return
    this.done = true
    for (const topic of this.topics) this.host.unsubscribe(topic, this)
    this.topics.clear()
    // As Bun calls a socket's close handler: after the current call, never inside the hub's own loop.
    queueMicrotask(() => this.host.ended(this, code, reason))
  }
}

/** The stream as the hub takes a socket. */
export const asSocket = (s: SseStream) => s as unknown as ServerWebSocket<unknown>
