/** A test WebSocket client: every frame kept in order, with waits for the next matching one. */
export type Frame = Record<string, any>

export interface TestClient {
  ws: WebSocket
  frames: Frame[]
  welcome: Frame
  send: (frame: unknown) => void
  sendRaw: (text: string) => void
  /** Resolves with the first frame, at or after the cursor, that matches; moves the cursor past it. */
  next: (match?: Partial<Frame> | ((f: Frame) => boolean), ms?: number) => Promise<Frame>
  /** Sends a frame with an `id` and resolves with the `ack`/answer/error carrying that id. */
  request: (frame: Frame, ms?: number) => Promise<Frame>
  /** All frames of a type received so far. */
  all: (type: string) => Frame[]
  closed: Promise<{ code: number; reason: string }>
  close: () => void
}

let counter = 0
const ANSWERS = new Set([
  'ack',
  'error',
  'joined',
  'left',
  'history',
  'presence',
  'pong',
  'rooms',
  'pins',
  'search',
  'threads',
  'scheduled',
])

const matches = (f: Frame, m?: Partial<Frame> | ((f: Frame) => boolean)) =>
  !m ? true : typeof m === 'function' ? m(f) : Object.entries(m).every(([k, v]) => f[k] === v)

export async function connect(
  url: string,
  query: Record<string, string> = {},
  init?: { headers?: Record<string, string> },
): Promise<TestClient> {
  const qs = new URLSearchParams(query).toString()
  const ws = new WebSocket(qs ? `${url}?${qs}` : url, init as never)
  const frames: Frame[] = []
  let cursor = 0
  const waiters = new Set<() => void>()
  let resolveClosed!: (v: { code: number; reason: string }) => void
  const closed = new Promise<{ code: number; reason: string }>((r) => (resolveClosed = r))
  ws.onmessage = (e) => {
    frames.push(JSON.parse(String(e.data)))
    for (const w of waiters) w()
  }
  ws.onclose = (e) => {
    resolveClosed({ code: e.code, reason: e.reason })
    for (const w of waiters) w()
  }
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve()
    ws.onerror = () => reject(new Error(`could not connect to ${url}`))
  })

  const next = (match?: Partial<Frame> | ((f: Frame) => boolean), ms = 3000) =>
    new Promise<Frame>((resolve, reject) => {
      const check = () => {
        for (let i = cursor; i < frames.length; i++) {
          if (matches(frames[i]!, match)) {
            cursor = i + 1
            done()
            resolve(frames[i]!)
            return true
          }
        }
        if (ws.readyState === WebSocket.CLOSED) {
          done()
          reject(new Error(`socket closed while waiting for ${JSON.stringify(match)}; got ${JSON.stringify(frames.slice(cursor))}`))
          return true
        }
        return false
      }
      const timer = setTimeout(() => {
        done()
        reject(
          new Error(
            `timed out waiting for ${typeof match === 'function' ? 'a frame' : JSON.stringify(match)}; got ${JSON.stringify(frames.slice(cursor)).slice(0, 2000)}`,
          ),
        )
      }, ms)
      const done = () => {
        clearTimeout(timer)
        waiters.delete(waiter)
      }
      const waiter = () => void check()
      if (!check()) waiters.add(waiter)
    })

  const client: TestClient = {
    ws,
    frames,
    welcome: undefined as never,
    send: (f) => ws.send(JSON.stringify(f)),
    sendRaw: (t) => ws.send(t),
    next,
    async request(frame, ms) {
      const id = frame.id ?? `req-${++counter}`
      ws.send(JSON.stringify({ ...frame, id }))
      // Answers are searched from the start: an ack may come before frames we already passed.
      const saved = cursor
      cursor = 0
      try {
        return await next((f) => f.id === id && ANSWERS.has(f.type), ms)
      } finally {
        cursor = Math.max(saved, 0)
      }
    },
    all: (type) => frames.filter((f) => f.type === type),
    closed,
    close: () => ws.close(),
  }
  client.welcome = await next({ type: 'welcome' })
  return client
}
