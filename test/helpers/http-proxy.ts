import type { ServerWebSocket } from 'bun'

/**
 * An HTTP proxy in front of a server, as the networks that break WebSockets have: it answers
 * `403` to every `Upgrade: websocket` (unless `allowWebSocket(true)`: then it passes the
 * WebSocket through) and forwards every other request, streaming responses unbuffered (an SSE
 * stream goes through event by event). `hold(true)` answers 503 to everything until
 * `hold(false)`, so a client stays away while the test acts; `dropStreams()` breaks every
 * response in flight, as a lost connection would.
 */
export interface HttpProxy {
  port: number
  url: string
  ws: string
  /** Every request seen, as `METHOD /path` (no query), in order. */
  seen: string[]
  /** WebSocket upgrades refused so far. */
  readonly refused: number
  allowWebSocket(on: boolean): void
  hold(on: boolean): void
  dropStreams(): void
  close(): void
}

interface Piped {
  target: string
  up?: WebSocket
  queue: (string | Buffer)[]
}

/** Request headers that belong to one hop, never forwarded. */
const HOP = ['host', 'connection', 'keep-alive', 'upgrade', 'proxy-connection', 'transfer-encoding', 'content-length', 'te']

export function startHttpProxy(targetPort: number): HttpProxy {
  const seen: string[] = []
  let refused = 0
  let allowWs = false
  let held = false
  const inFlight = new Set<AbortController>()
  const sockets = new Set<ServerWebSocket<Piped>>()
  const server = Bun.serve<Piped>({
    hostname: '127.0.0.1',
    port: 0,
    // A stream is quiet between keepalives: Bun's idle timeout must not cut it here either.
    idleTimeout: 0,
    async fetch(req, srv) {
      const u = new URL(req.url)
      seen.push(`${req.method} ${u.pathname}`)
      if (req.headers.get('upgrade')?.toLowerCase() === 'websocket') {
        if (!allowWs) {
          refused++
          return new Response('WebSockets are blocked on this network', { status: 403 })
        }
        if (srv.upgrade(req, { data: { target: `ws://127.0.0.1:${targetPort}${u.pathname}${u.search}`, queue: [] } })) return undefined
        return new Response('upgrade failed', { status: 400 })
      }
      if (held) return new Response('held by the test', { status: 503 })
      const headers = new Headers(req.headers)
      for (const h of HOP) headers.delete(h)
      const abort = new AbortController()
      inFlight.add(abort)
      req.signal.addEventListener('abort', () => abort.abort(), { once: true })
      let res: Response
      try {
        res = await fetch(`http://127.0.0.1:${targetPort}${u.pathname}${u.search}`, {
          method: req.method,
          headers,
          body: req.method === 'GET' || req.method === 'HEAD' ? undefined : await req.arrayBuffer(),
          signal: abort.signal,
          redirect: 'manual',
        })
      } catch {
        inFlight.delete(abort)
        return new Response('bad gateway', { status: 502 })
      }
      const out = new Headers(res.headers)
      for (const h of ['content-length', 'transfer-encoding', 'connection', 'content-encoding']) out.delete(h)
      if (!res.body) {
        inFlight.delete(abort)
        return new Response(null, { status: res.status, headers: out })
      }
      // Chunk by chunk as they come (no buffering), until the upstream ends or the test drops it.
      const reader = res.body.getReader()
      const body = new ReadableStream<Uint8Array>({
        async pull(c) {
          try {
            const { done, value } = await reader.read()
            if (done) {
              inFlight.delete(abort)
              c.close()
            } else c.enqueue(value)
          } catch (err) {
            inFlight.delete(abort)
            // Dropped by the test: the response ends (an error here would only be logged by Bun).
            if (abort.signal.aborted) c.close()
            else c.error(err)
          }
        },
        cancel() {
          inFlight.delete(abort)
          abort.abort()
        },
      })
      return new Response(body, { status: res.status, headers: out })
    },
    websocket: {
      open(ws) {
        sockets.add(ws)
        const up = new WebSocket(ws.data.target)
        ws.data.up = up
        up.binaryType = 'arraybuffer'
        up.onopen = () => {
          for (const m of ws.data.queue.splice(0)) up.send(m)
        }
        up.onmessage = (e) => ws.send(typeof e.data === 'string' ? e.data : new Uint8Array(e.data as ArrayBuffer))
        up.onclose = (e) => ws.close(e.code === 1005 || e.code === 1006 ? 1000 : e.code, e.reason)
      },
      message(ws, m) {
        const up = ws.data.up
        if (up?.readyState === WebSocket.OPEN) up.send(m)
        else ws.data.queue.push(m)
      },
      close(ws) {
        sockets.delete(ws)
        ws.data.up?.close()
      },
    },
  })
  const port = server.port as number
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}/ws`,
    seen,
    get refused() {
      return refused
    },
    allowWebSocket: (on) => void (allowWs = on),
    hold: (on) => void (held = on),
    dropStreams() {
      for (const a of [...inFlight]) a.abort()
      inFlight.clear()
      for (const s of [...sockets]) s.terminate()
    },
    close() {
      for (const a of inFlight) a.abort()
      server.stop(true)
    },
  }
}
