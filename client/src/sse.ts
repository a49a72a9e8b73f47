/**
 * The server's Server-Sent Events face (`GET /sse` + `POST /sse/:session`) as a WebSocketLike,
 * so that ChatClient's whole logic (welcome, resume, outbox, pings) runs on it unchanged.
 *
 * The stream is read with `fetch` rather than `EventSource`: fetch can send the token as an
 * `Authorization` header (kept out of URLs and logs), reads the HTTP status of a refusal, and is
 * in browsers, Bun, Deno and Node 18+ alike (EventSource is not in Bun or Node).
 */

/** What the transport needs of `fetch` (the platform's, or one passed in). */
export type FetchLike = (
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string; signal?: AbortSignal; cache?: 'no-store' },
) => Promise<{ status: number; body: ReadableStream<Uint8Array> | null; text(): Promise<string> }>

export interface SseSocketOptions {
  /** The JWT, sent as `Authorization: Bearer …` on the stream's request (never in its URL). */
  token?: string
  fetch?: FetchLike
  /** Bytes a POST may carry at most (the server's MAX_FRAME_BYTES; default 65 536). */
  maxPostBytes?: number
}

/** Client frames a POST carries at most (the contract's limit). */
export const MAX_POST_FRAMES = 100
const DEFAULT_MAX_POST_BYTES = 65_536

const CONNECTING = 0
const OPEN = 1
const CLOSED = 3

const encoder = new TextEncoder()

/**
 * One SSE session. `readyState` is OPEN once the server answered 200; frames given to `send`
 * wait until the `welcome` named the session, then go out by POST in order: what is queued
 * while a POST is in flight goes in the next one (a JSON array of at most 100 frames and
 * `maxPostBytes`), and a POST is sent only once the one before it was answered, so that the
 * server handles them in the order they were sent. A POST the server refuses (404: the session
 * ended) or that fails ends the session, as a broken WebSocket would: the client reconnects
 * and its outbox sends again what had no answer.
 */
export class SseSocket {
  readyState: number = CONNECTING
  onopen: ((ev: unknown) => void) | null = null
  onmessage: ((ev: { data: unknown }) => void) | null = null
  onclose: ((ev: { code: number; reason: string }) => void) | null = null
  onerror: ((ev: unknown) => void) | null = null
  readonly #url: string
  readonly #opts: SseSocketOptions
  readonly #fetch: FetchLike
  readonly #abort = new AbortController()
  #session?: string
  #queue: string[] = []
  #posting = false
  /** The server's `{"type":"close"}` event, when it ended the stream itself. */
  #closeFrame?: { code: number; reason: string }

  /** `url`: the stream's URL with its query (`user`, `name`); POSTs go to `<path>/<session>`. */
  constructor(url: string, opts: SseSocketOptions = {}) {
    this.#url = url
    this.#opts = opts
    const platform = (globalThis as { fetch?: FetchLike }).fetch
    if (!opts.fetch && !platform) throw new Error('no fetch implementation: pass options.fetch')
    // Not `this.#fetch = fetch`: a browser's fetch called as another object's method throws "Illegal invocation".
    this.#fetch = opts.fetch ?? ((url, init) => platform!.call(globalThis, url, init))
    void this.#read()
  }

  /** The session the server named in `welcome` (undefined until then). */
  get session(): string | undefined {
    return this.#session
  }

  send(data: string): void {
    if (this.readyState === CLOSED) return
    this.#queue.push(data)
    void this.#pump()
  }

  close(code = 1000, reason = ''): void {
    this.#end(code, reason)
  }

  async #read() {
    let res: Awaited<ReturnType<FetchLike>>
    try {
      res = await this.#fetch(this.#url, {
        headers: { accept: 'text/event-stream', ...(this.#opts.token ? { authorization: `Bearer ${this.#opts.token}` } : {}) },
        signal: this.#abort.signal,
        cache: 'no-store',
      })
    } catch (err) {
      return this.#end(1006, `stream could not open: ${(err as Error)?.message ?? err}`)
    }
    if (res.status !== 200 || !res.body) {
      // The refusal /ws would give before an upgrade (401, 403, 429, 503), visible here.
      const text = await res.text().catch(() => '')
      return this.#end(1006, `stream refused: HTTP ${res.status} ${text.slice(0, 200)}`.trim())
    }
    if (this.readyState === CLOSED) return
    this.readyState = OPEN
    this.onopen?.({})
    const reader = res.body.getReader()
    const decoder = new TextDecoder()
    let buf = ''
    try {
      for (;;) {
        const { done, value } = await reader.read()
        if (done) break
        // The server ends lines with `\n`; a proxy may have made them `\r\n`.
        buf = (buf + decoder.decode(value, { stream: true })).replace(/\r\n/g, '\n')
        let i: number
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const event = buf.slice(0, i)
          buf = buf.slice(i + 2)
          this.#event(event)
          if (this.readyState === CLOSED) return
        }
      }
    } catch {
      // Aborted by close(), or the connection broke: handled below.
    }
    const c = this.#closeFrame
    this.#end(c?.code ?? 1006, c?.reason ?? 'stream ended')
  }

  /** One event: its `data:` lines joined (comments, the keepalive, are skipped). */
  #event(event: string) {
    let data: string | undefined
    for (const line of event.split('\n')) {
      if (!line.startsWith('data:')) continue
      const value = line.slice(line.startsWith('data: ') ? 6 : 5)
      data = data === undefined ? value : `${data}\n${value}`
    }
    if (data === undefined) return
    // Only two frames matter to the transport; every other frame is the client's to parse.
    if (data.startsWith('{"type":"welcome"') || data.startsWith('{"type":"close"')) {
      let f: { type?: string; session?: unknown; code?: unknown; reason?: unknown }
      try {
        f = JSON.parse(data)
      } catch {
        return
      }
      if (f.type === 'close') {
        this.#closeFrame = { code: typeof f.code === 'number' ? f.code : 1006, reason: typeof f.reason === 'string' ? f.reason : '' }
        return
      }
      if (f.type === 'welcome' && typeof f.session === 'string') this.#session = f.session
    }
    this.onmessage?.({ data })
    if (this.#session) void this.#pump()
  }

  /** The next POST: what is queued, in order, within the frame and byte limits. */
  async #pump() {
    if (this.#posting || !this.#session || this.#queue.length === 0 || this.readyState !== OPEN) return
    const max = this.#opts.maxPostBytes ?? DEFAULT_MAX_POST_BYTES
    const batch: string[] = []
    let bytes = 2
    while (batch.length < MAX_POST_FRAMES && this.#queue.length > 0) {
      const n = encoder.encode(this.#queue[0]!).byteLength + 1
      // A frame too big for any POST still goes alone: the server answers 413 (as /ws closes with 1009).
      if (batch.length > 0 && bytes + n > max) break
      batch.push(this.#queue.shift()!)
      bytes += n
    }
    this.#posting = true
    const url = `${this.#url.split('?')[0]}/${encodeURIComponent(this.#session)}`
    let status: number
    try {
      const res = await this.#fetch(url, {
        method: 'POST',
        // text/plain keeps the POST a "simple" request: no CORS preflight round trip per batch
        // across origins (the server parses the body as JSON whatever its type).
        headers: { 'content-type': 'text/plain;charset=UTF-8' },
        body: batch.length === 1 ? batch[0]! : `[${batch.join(',')}]`,
        signal: this.#abort.signal,
      })
      status = res.status
      void res.text().catch(() => {})
    } catch {
      status = 0
    }
    this.#posting = false
    // close() may have come while the POST was out (TypeScript narrows across the await).
    if ((this.readyState as number) === CLOSED) return
    if (status !== 202) {
      // The frames may not have arrived: end as a broken socket does; the outbox sends again.
      const why = status === 404 ? 'session ended' : status === 0 ? 'post failed' : `post refused: HTTP ${status}`
      return this.#end(status === 413 ? 1009 : 1006, why)
    }
    void this.#pump()
  }

  #end(code: number, reason: string) {
    if (this.readyState === CLOSED) return
    this.readyState = CLOSED
    this.#queue = []
    this.#abort.abort()
    // After the current call, as a WebSocket's close event comes.
    queueMicrotask(() => this.onclose?.({ code, reason }))
  }
}
