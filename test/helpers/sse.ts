import type { Frame } from './client'

/** A test SSE client: fetch's body read as events (`data:` lines), POSTs of client frames to any node. */
export interface SseClient {
  res: Response
  session: string
  frames: Frame[]
  welcome: Frame
  /** Comment lines seen so far (the keepalive). */
  comments: number
  /** Resolves with the first frame, at or after the cursor, that matches; moves the cursor past it. */
  next: (match?: Partial<Frame> | ((f: Frame) => boolean), ms?: number) => Promise<Frame>
  /** POSTs one frame or an array of them, to `base` (default: the node of the stream); resolves with the response. */
  post: (body: unknown, base?: string) => Promise<Response>
  /** POSTs a frame with an `id` and resolves with the answer carrying that id. */
  request: (frame: Frame, ms?: number, base?: string) => Promise<Frame>
  all: (type: string) => Frame[]
  /** Resolves when the stream ended (the server closed it or the connection broke). */
  ended: Promise<void>
  close: () => void
}

let counter = 0
const ANSWERS = new Set(['ack', 'error', 'joined', 'left', 'history', 'presence', 'pong', 'rooms', 'pins', 'search'])
const matches = (f: Frame, m?: Partial<Frame> | ((f: Frame) => boolean)) =>
  !m ? true : typeof m === 'function' ? m(f) : Object.entries(m).every(([k, v]) => f[k] === v)

/** Opens `GET <base>/sse?query`; throws with the status and body when it is refused. */
export async function openSse(base: string, query: Record<string, string> = {}, headers: Record<string, string> = {}): Promise<SseClient> {
  const abort = new AbortController()
  const qs = new URLSearchParams(query).toString()
  const res = await fetch(`${base}/sse${qs ? `?${qs}` : ''}`, { headers, signal: abort.signal })
  if (res.status !== 200) throw Object.assign(new Error(`sse refused: ${res.status} ${await res.text()}`), { status: res.status })
  const frames: Frame[] = []
  let cursor = 0
  let comments = 0
  let over = false
  const waiters = new Set<() => void>()
  const wake = () => {
    for (const w of waiters) w()
  }
  const ended = (async () => {
    const decoder = new TextDecoder()
    let buf = ''
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(chunk, { stream: true })
        let i: number
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const event = buf.slice(0, i)
          buf = buf.slice(i + 2)
          for (const line of event.split('\n')) {
            if (line.startsWith('data: ')) frames.push(JSON.parse(line.slice(6)))
            else if (line.startsWith(':')) comments++
          }
        }
        wake()
      }
    } catch {}
    over = true
    wake()
  })()
  const next = (match?: Partial<Frame> | ((f: Frame) => boolean), ms = 10_000) =>
    new Promise<Frame>((resolve, reject) => {
      const check = () => {
        for (let i = cursor; i < frames.length; i++) {
          if (matches(frames[i]!, match)) {
            cursor = i + 1
            waiters.delete(check)
            clearTimeout(timer)
            resolve(frames[i]!)
            return
          }
        }
        if (over) {
          waiters.delete(check)
          clearTimeout(timer)
          reject(new Error(`stream ended while waiting for ${JSON.stringify(match)}`))
        }
      }
      const timer = setTimeout(() => {
        waiters.delete(check)
        reject(new Error(`timed out waiting for ${typeof match === 'function' ? 'a frame' : JSON.stringify(match)}`))
      }, ms)
      waiters.add(check)
      check()
    })
  const welcome = await next({ type: 'welcome' })
  const session = welcome.session as string
  const post = (body: unknown, to = base) =>
    fetch(`${to}/sse/${session}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return {
    res,
    session,
    frames,
    welcome,
    get comments() {
      return comments
    },
    next,
    post,
    async request(frame, ms = 10_000, to = base) {
      const id = `s${++counter}`
      const from = frames.length
      const r = await post({ ...frame, id }, to)
      if (r.status !== 202) throw new Error(`post refused: ${r.status} ${await r.text()}`)
      const deadline = Date.now() + ms
      while (Date.now() < deadline) {
        const f = frames.slice(from).find((x) => x.id === id && ANSWERS.has(x.type))
        if (f) return f
        await Bun.sleep(5)
      }
      throw new Error(`no answer to ${id}`)
    },
    all: (type) => frames.filter((f) => f.type === type),
    ended,
    close: () => abort.abort(),
  }
}
