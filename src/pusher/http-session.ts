import type { Server } from 'bun'
import type { PusherHttpSocket, PusherWire } from './socket'

/**
 * One session of pusher-js's HTTP fallbacks (xhr_streaming, xhr_polling), as the wire its
 * Pusher socket is carried on. pusher-js speaks SockJS's framing (core/http/http_socket.ts in
 * pusher-js): newline-ended lines, `o` the open frame, `a[…]` an array of frames (each a JSON
 * string), `h` a heartbeat, `c[code,"reason"]` the close. Its client frames come in by
 * xhr_send (http-transports.ts). The session outlives its HTTP requests: a stream that
 * pusher-js renews (its 256 KiB buffer) or the next poll picks up what was queued meanwhile.
 */

const encoder = new TextEncoder()

/** The open frame: the session exists. Sent once, on its first request: pusher-js takes a second one for a lost session. */
export const OPEN = 'o\n'
/** A heartbeat line: a stream's keepalive (pusher-js answers it with an empty xhr_send), a poll's answer when nothing came. */
export const HEARTBEAT = 'h\n'
/** What a stream starts with, as SockJS servers do: 2 KiB before the first frame, past what some browsers buffer before they show a response's text. */
export const PRELUDE = encoder.encode(`${'h'.repeat(2048)}\n`)

/**
 * pusher-js renews a stream once its response text passes this many characters and it has read
 * it all (core/http/http_request.ts, MAX_BUFFER_LENGTH): frames written after that would be lost
 * with the old response, so a stream takes none past it; they wait for the renewed one.
 */
export const STREAM_RENEWED_AFTER = 256 * 1024

/** A line of frames, each already a JSON string (`JSON.stringify(frame)`, made once per frame for every session). */
export const framesLine = (escaped: string[]) => `a[${escaped.join(',')}]\n`
export const lineBytes = (escaped: string) => encoder.encode(`a[${escaped}]\n`)
const closeLine = (code: number, reason: string) => `c[${code},${JSON.stringify(reason)}]\n`

/**
 * Where a session's lines go: the response of an xhr_streaming request (stays open), or a held
 * poll (answered once). A remote one is the request another node holds (http-transports.ts).
 */
export interface Receiver {
  readonly streaming: boolean
  /** When it was attached, or (a stream) last written to: the sweep's heartbeats go by it. */
  readonly at: number
  /** A stream past STREAM_RENEWED_AFTER characters: the client renews it, nothing more is written to it. */
  readonly full: boolean
  /** Bytes queued and not yet taken by the client. */
  buffered(): number
  /** Lines to the client (`chars`: their length as text, for a stream's STREAM_RENEWED_AFTER): the bytes written, 0 when over the limit (not written); a poll is answered by it. */
  write(chunk: string | Uint8Array, chars?: number): number
  /** The response ends (after `last`, written whatever the limit). */
  end(last?: string): void
}

/** What a session needs from the transports that hold it. */
export interface SessionHost {
  subscribe(topic: string, s: HttpSession): void
  unsubscribe(topic: string, s: HttpSession): void
  server(): Server<unknown>
  /** The Pusher socket on it ended (closed by the server or after the client left). */
  ended(s: HttpSession): void
}

export class HttpSession implements PusherWire {
  socket: PusherHttpSocket | undefined = undefined
  readonly topics = new Set<string>()
  /** Frames waiting for a receiver, each a JSON string; `queued` their bytes. */
  private queue: string[] = []
  private queued = 0
  receiver: Receiver | undefined = undefined
  /** The open frame went out (on the first request). */
  opened = false
  /** When the session last had no receiver (performance.now()); 0 while one is attached. */
  detachedAt = performance.now()
  /** The client left its last request (aborted it), rather than being answered: it has less time for the next. */
  left = false
  /** The close line, once the server ended the session: given to the next request, if none was attached. */
  closing: string | undefined = undefined
  /** The close line went out to a request: nothing is left for the client. */
  delivered = false
  private flushing = false

  constructor(
    /** `<server>/<session>` of the URL: chosen by the client. */
    readonly id: string,
    /** The address of the request that opened it: only requests from it reach the session. */
    readonly remote: string,
    private readonly maxBuffered: number,
    private readonly host: SessionHost,
  ) {}

  get done() {
    return this.closing !== undefined
  }

  getBufferedAmount() {
    return this.queued + (this.receiver?.buffered() ?? 0)
  }

  /** A frame for this session alone. */
  send(frame: string): number {
    return this.push(JSON.stringify(frame))
  }

  /**
   * A frame already a JSON string (`line` its stream line, made once per frame by the fan-out):
   * straight down a stream, else queued for the next poll. 0: past MAX_BUFFERED_BYTES (a slow consumer).
   */
  push(escaped: string, line?: () => Uint8Array): number {
    if (this.done) return -1
    const r = this.receiver
    if (r?.streaming && !r.full && this.queue.length === 0) return r.write(line ? line() : lineBytes(escaped), escaped.length + 3)
    if (this.getBufferedAmount() + escaped.length > this.maxBuffered) return 0
    this.queue.push(escaped)
    this.queued += escaped.length
    // A poll held open gets what came within this tick in one answer.
    if (r && !this.flushing) {
      this.flushing = true
      queueMicrotask(() => {
        this.flushing = false
        this.flush()
      })
    }
    return escaped.length
  }

  /** The queue's frames to the receiver, as one line; a poll is answered by them. */
  flush() {
    const r = this.receiver
    if (!r || r.full || this.queue.length === 0) return
    const line = framesLine(this.queue)
    this.queue = []
    this.queued = 0
    if (r.streaming) r.write(line)
    else {
      this.detach(r)
      r.end(line)
    }
  }

  /**
   * A request of the client's takes the session's lines: the open frame on the first, then what
   * was queued. A poll with nothing to say is held (the sweep answers it with a heartbeat).
   * A receiver that was still attached (a renewed stream seen before the old one's end) is let go.
   */
  attach(r: Receiver) {
    const old = this.receiver
    if (old) {
      this.receiver = undefined
      old.end(old.streaming ? undefined : HEARTBEAT)
    }
    this.left = false
    if (this.closing !== undefined) {
      const last = this.queue.length ? framesLine(this.queue) + this.closing : this.closing
      this.queue = []
      this.queued = 0
      this.delivered = true
      return r.end(this.opened ? last : OPEN + last)
    }
    let head = ''
    if (!this.opened) {
      this.opened = true
      head = OPEN
    }
    if (!r.streaming) {
      if (head || this.queue.length) {
        const body = this.queue.length ? head + framesLine(this.queue) : head
        this.queue = []
        this.queued = 0
        return r.end(body)
      }
      this.receiver = r
      this.detachedAt = 0
      return
    }
    this.receiver = r
    this.detachedAt = 0
    if (head) r.write(head)
    this.flush()
  }

  /** The receiver went (a poll answered, a request the client left): the session waits for the next. */
  detach(r: Receiver, left = false) {
    if (this.receiver !== r) return
    this.receiver = undefined
    this.detachedAt = performance.now()
    this.left = left
  }

  subscribe(topic: string) {
    if (this.done || this.topics.has(topic)) return
    this.topics.add(topic)
    this.host.subscribe(topic, this)
  }

  unsubscribe(topic: string) {
    if (this.topics.delete(topic)) this.host.unsubscribe(topic, this)
  }

  /** Every WebSocket subscriber through Bun; the HTTP sessions' fan-out skips the sender itself. */
  publish(topic: string, frame: string): number {
    return this.host.server().publish(topic, frame)
  }

  /**
   * The server ends the session: what was queued and the close line go to the receiver (past the
   * limit too: a slow consumer learns why), or wait for the client's next request.
   */
  close(code = 1000, reason = '') {
    if (this.done) return
    this.closing = closeLine(code, reason)
    for (const topic of this.topics) this.host.unsubscribe(topic, this)
    this.topics.clear()
    const r = this.receiver
    if (r) {
      const last = this.queue.length ? framesLine(this.queue) + this.closing : this.closing
      this.queue = []
      this.queued = 0
      this.delivered = true
      this.detach(r)
      r.end(last)
    }
    // As Bun calls a socket's close handler: after the current call, never inside the caller's loop.
    queueMicrotask(() => this.host.ended(this))
  }
}
