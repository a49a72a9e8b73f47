import { createHmac, timingSafeEqual } from 'node:crypto'

export interface Received {
  /** The raw body, exactly as signed. */
  body: string
  signature: string
  userAgent: string
  events: Record<string, any>[]
  /** What this receiver answered (0: held and never answered). */
  status: number
}

export type Mode = 'ok' | 'fail' | 'hold'

/** Verifies `Chat-Signature: t=..,v1=..` as docs/webhooks.md tells an application to. */
export function verifySignature(secret: string, header: string, body: string, toleranceS = 300): boolean {
  const parts = Object.fromEntries(header.split(',').map((p) => p.split('=') as [string, string]))
  const t = Number(parts.t)
  if (!Number.isInteger(t) || Math.abs(Date.now() / 1000 - t) > toleranceS) return false
  const expected = createHmac('sha256', secret).update(`${parts.t}.${body}`).digest()
  const given = Buffer.from(parts.v1 ?? '', 'hex')
  return given.length === expected.length && timingSafeEqual(given, expected)
}

/**
 * A webhook endpoint in the test process: records every request; `mode` decides the answer
 * (`fail`: 500; `hold`: no answer until `release()`). `stop()`/`restart()` take it off the port
 * and back (connection refused meanwhile).
 */
export function webhookReceiver(opts: { port?: number; answer?: (body: any) => Response | Promise<Response> } = {}) {
  const received: Received[] = []
  let mode: Mode = 'ok'
  let held: (() => void)[] = []
  const handler = async (req: Request) => {
    const body = await req.text()
    const r: Received = {
      body,
      signature: req.headers.get('chat-signature') ?? '',
      userAgent: req.headers.get('user-agent') ?? '',
      events: [],
      status: 0,
    }
    let parsed: any
    try {
      parsed = JSON.parse(body)
      r.events = Array.isArray(parsed?.events) ? parsed.events : []
    } catch {}
    received.push(r)
    if (opts.answer) {
      const res = await opts.answer(parsed)
      r.status = res.status
      return res
    }
    if (mode === 'hold') await new Promise<void>((resolve) => held.push(resolve))
    r.status = mode === 'fail' ? 500 : 200
    return new Response(mode === 'fail' ? 'down' : 'ok', { status: r.status })
  }
  const serve = (port: number) => Bun.serve({ hostname: '127.0.0.1', port, idleTimeout: 0, fetch: handler })
  let server = serve(opts.port ?? 0)
  const port = server.port!
  return {
    port,
    url: `http://127.0.0.1:${port}/hook`,
    received,
    set mode(m: Mode) {
      mode = m
    },
    get mode() {
      return mode
    },
    /** Answers every held request (with the mode in force then). */
    release() {
      const h = held
      held = []
      for (const r of h) r()
    },
    /** Events of the requests answered 2xx. */
    delivered(): Record<string, any>[] {
      return received.filter((r) => r.status >= 200 && r.status < 300).flatMap((r) => r.events)
    },
    stop() {
      server.stop(true)
    },
    restart() {
      server = serve(port)
    },
    close() {
      this.release()
      server.stop(true)
    },
  }
}

export type Receiver = ReturnType<typeof webhookReceiver>
